"""Model construction, initialization rate and parameter accounting against known answers."""

from __future__ import annotations

import pytest
import torch

from models.accounting import count_params
from models.init import apply_init
from models.lm import build_lm
from sweeps.grid import ModelShape


@pytest.mark.parametrize(("rate", "expected"), [(0.5, 0.05), (1.0, 0.0025)])
def test_init_rate_std_of_a_400_wide_linear_layer(rate: float, expected: float) -> None:
    model = build_lm(ModelShape("llama", 1, 400, 100, 16), 300)
    apply_init(model, d_model=400, rate=rate, std=None, seed=0)
    q = model.model.layers[0].self_attn.q_proj.weight  # 400 × 400, fan-in 400
    assert q.std().item() == pytest.approx(expected, rel=0.02)
    down = model.model.layers[0].mlp.down_proj.weight  # fan-in = MLP width
    assert down.std().item() == pytest.approx(down.shape[1] ** -rate, rel=0.02)
    emb = model.get_input_embeddings().weight
    assert emb.std().item() == pytest.approx(400**-rate, rel=0.02)


def test_fixed_std_leaves_norms_and_biases_alone() -> None:
    model = build_lm(ModelShape("gpt2", 2, 64, 32, 32), 100)
    apply_init(model, d_model=64, rate=None, std=0.02, seed=1)
    block = model.transformer.h[0]
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.all(block.ln_1.weight == 1) and torch.all(block.attn.c_attn.bias == 0)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, drawn once


def test_init_is_reproducible_from_the_seed() -> None:
    shape = ModelShape("llama", 2, 64, 32, 32)
    a, b = build_lm(shape, 100), build_lm(shape, 100)
    apply_init(a, d_model=64, rate=0.5, std=None, seed=3)
    apply_init(b, d_model=64, rate=0.5, std=None, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_grouped_param_counts_sum_to_numel(arch: str) -> None:
    d, L, V, T = 64, 3, 500, 48
    model = build_lm(ModelShape(arch, L, d, d // 4, T), V)
    counts = count_params(model)
    assert counts.embedding + counts.non_embedding == counts.total == sum(p.numel() for p in model.parameters())
    assert counts.head_matmul == V * d  # the head multiplies by a d × V matrix, tied or not
    if arch == "llama":  # untied: input and output embeddings
        assert counts.embedding == 2 * V * d and counts.head == V * d
        mlp = 16 * -(-8 * d // 3 // 16)
        per_block = 4 * d * d + 3 * d * mlp + 2 * d
        assert counts.non_embedding == L * per_block + d
    else:  # tied head + learned positions
        assert counts.embedding == V * d + T * d and counts.head == 0
        per_block = 12 * d * d + 13 * d
        assert counts.non_embedding == L * per_block + 2 * d


def test_meta_device_counts_match_real() -> None:
    shape = ModelShape("llama", 2, 96, 32, 64)
    with torch.device("meta"):
        meta = count_params(build_lm(shape, 1024))
    assert meta == count_params(build_lm(shape, 1024))

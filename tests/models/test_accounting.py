"""The closed-form parameter counts (`sweeps.accounting.shape_counts`) against the real models `build_lm` builds.

Known answer: `count_params` of the built model, which counts its actual parameters (tied weights once). The closed
form must equal it exactly, group by group, for every size of every ready-made study and for a spread of shapes of
both architectures the project builds (llama with an untied head, gpt2 with a tied one; no spec option unties or
ties them) at vocabulary sizes from 2 to GPT-2's. Models are built on the ``meta`` device: the same parameters,
no memory (tests/models/test_lm.py holds meta counts to real ones).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from models.accounting import count_params
from models.lm import ARCHITECTURES, build_lm
from sweeps.accounting import Counts, ModelShape, budget_tokens, flops_per_token, shape_counts, training_flops
from sweeps.spec import LMStudyBody
from sweeps.studies import builtin_spec_path, load_spec


def _lm_body(name: str) -> LMStudyBody | None:
    """The language-model part of a ready-made study: a ``kind: lm`` spec itself, a spikes study's ``lm`` part."""
    spec = load_spec(builtin_spec_path(name))
    return spec if isinstance(spec, LMStudyBody) else getattr(spec, "lm", None)


LM_STUDIES = sorted(p.stem for p in builtin_spec_path("smoke").parent.glob("*.yaml") if _lm_body(p.stem) is not None)


def _built(shape: ModelShape, vocab_size: int) -> Counts:
    with torch.device("meta"):
        return count_params(build_lm(shape, vocab_size))


@pytest.mark.parametrize("name", LM_STUDIES)
def test_every_size_of_every_ready_made_study_counts_exactly(name: str) -> None:
    body = _lm_body(name)
    assert body is not None
    vocab = body.data.vocab_size
    assert vocab is not None  # every ready-made study fixes its vocabulary in the spec
    for size in body.model.sizes:
        shape = body.model.shape(size)
        assert shape_counts(shape, vocab) == _built(shape, vocab), shape


@pytest.mark.parametrize(("architecture", "vocab_size"), list(itertools.product(ARCHITECTURES, [2, 257, 1024, 50257])))
def test_a_spread_of_shapes_counts_exactly(architecture: str, vocab_size: int) -> None:
    # widths that are and are not multiples of 48 (the llama MLP's round-up to 16 of 8/3·d), odd sequence lengths
    shapes = [
        ModelShape(architecture, n_layer, d_model, head_dim, seq_len)
        for n_layer, d_model, head_dim, seq_len in [
            (1, 8, 8, 1),
            (1, 16, 8, 128),
            (2, 40, 8, 17),
            (3, 96, 32, 64),
            (5, 200, 40, 33),
            (12, 768, 64, 1024),
        ]
    ]
    for shape in shapes:
        assert shape_counts(shape, vocab_size) == _built(shape, vocab_size), shape


def test_an_architecture_without_a_formula_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'mamba'"):
        shape_counts(ModelShape("mamba", 1, 16, 8, 16), 64)


def test_flops_count_the_head_and_a_budget_inverts_them() -> None:
    """C = 6·(N_non_embedding + d·V)·D, per token plus 6·L·T·d for attention; a budget's D spends exactly C."""
    shape, vocab = ModelShape("gpt2", 2, 64, 16, 32), 500
    counts = shape_counts(shape, vocab)
    blocks = 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64
    assert counts.compute == blocks + 64 * 500  # the tied head multiplies like an untied one
    assert training_flops(counts, 1000) == 6 * (blocks + 64 * 500) * 1000
    per_token = flops_per_token(counts, n_layer=2, seq_len=32, d_model=64)
    assert per_token == 6 * (blocks + 64 * 500) + 6 * 2 * 32 * 64
    assert training_flops(counts, budget_tokens(counts, flops=6e12)) == pytest.approx(6e12, rel=1e-12)
    assert budget_tokens(counts, tokens_per_param=20) == 20 * counts.compute
    with pytest.raises(ValueError, match="exactly one"):
        budget_tokens(counts, flops=1e12, tokens_per_param=20)

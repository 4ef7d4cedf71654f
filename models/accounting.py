"""Parameter and FLOP accounting with explicit conventions, so analysis can choose N.

Like nanochat's ``num_scaling_params``, the counts are grouped.

Groups sum exactly to ``sum(p.numel())`` over unique parameters (tied weights once):

* ``embedding``: token embeddings, learned position embeddings, and an untied LM head (an output embedding);
* ``non_embedding``: everything else (attention, MLP, norms, biases) — Kaplan et al.'s N;
* ``total``.

Compute: C = 6·N·D with N = non-embedding parameters (Kaplan's convention, column ``flops``); per token, Kaplan's
forward+backward estimate adds the attention score term 6·n_layer·seq_len·d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamCounts:
    embedding: int
    non_embedding: int
    total: int


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    modules += [m for name, m in model.named_modules() if name.endswith("wpe")]  # GPT-2 learned positions
    return [m for m in modules if m is not None]


def count_params(model: nn.Module) -> ParamCounts:
    unique = {id(p): p for p in model.parameters()}
    embedding_ids = {id(p) for m in _embedding_modules(model) for p in m.parameters()}
    embedding = sum(p.numel() for i, p in unique.items() if i in embedding_ids)
    total = sum(p.numel() for p in unique.values())
    return ParamCounts(embedding=embedding, non_embedding=total - embedding, total=total)


def flops_per_token(params_non_embedding: int, *, n_layer: int, seq_len: int, d_model: int) -> float:
    """Training FLOPs per token: 6·N_non_embedding + 6·n_layer·seq_len·d_model (Kaplan et al. 2020, Table 1)."""
    return 6.0 * params_non_embedding + 6.0 * n_layer * seq_len * d_model


def training_flops(params_non_embedding: int, tokens: int) -> float:
    """C = 6·N·D, N = non-embedding parameters."""
    return 6.0 * params_non_embedding * tokens

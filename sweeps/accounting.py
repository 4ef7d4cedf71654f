"""The shape of a language model and its exact parameter and FLOP counts in closed form, without building it.

A grid designed by compute (``grid.flops``) or by tokens per parameter (``grid.tokens_per_param``) needs each
size's N before anything is built, and so does ``scalesweep recommend`` for shapes no trial trained; both run
where there is no torch. So the counts of the two architectures `models.lm.build_lm` builds are written out here
as formulas, and `models.accounting.count_params` (which counts a real module) returns the same type; a test builds
the real models and checks that the two agree exactly.

Groups, like nanochat's ``num_scaling_params``, sum to the total (tied weights counted once):

* ``embedding``: token embeddings, learned position embeddings, and an untied LM head (an output embedding);
* ``non_embedding``: everything else (attention, MLP, norms, biases) — Kaplan et al.'s N;
* ``total``.

``head`` is the part of ``embedding`` that is an untied LM head (0 when the head is tied to the input embedding).

Compute counts every matrix multiply a token goes through, the LM head included: C = 6·(N_non_embedding + N_head)·D
(the trials' ``flops`` column, and the C of a ``grid.flops`` budget), and per token Kaplan's forward+backward
estimate adds the attention score term 6·n_layer·seq_len·d_model (the ``flops_per_token`` column). An input
embedding is a lookup, not a multiply, so it costs no FLOPs; a tied head is a multiply by the embedding matrix and
costs d_model·vocab_size per token in the forward like an untied one. Porian et al. (2024) trace part of the
Kaplan–Chinchilla disagreement to leaving the head out of C: at small scale it is a large part of the compute (130%
of N_non_embedding for a 1x64 llama at vocabulary 1024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The shape of a language model, all that `models.lm.build_lm` needs besides the vocabulary size."""

    architecture: str
    n_layer: int
    d_model: int
    head_dim: int
    seq_len: int

    @property
    def n_head(self) -> int:
        return self.d_model // self.head_dim

    @property
    def label(self) -> str:
        return f"{self.n_layer}x{self.d_model}"


@dataclass(frozen=True)
class Counts:
    """Parameter counts of one model, grouped (module docstring)."""

    embedding: int
    non_embedding: int
    total: int
    head: int = 0
    """Parameters of an untied LM head (part of ``embedding``); 0 for a tied head."""
    head_matmul: int = 0
    """Parameters the LM head multiplies by (d_model·vocab), tied or not: what its FLOPs count."""

    @property
    def compute(self) -> int:
        """The parameters a token's forward multiplies by: non-embedding plus the LM head."""
        return self.non_embedding + self.head_matmul


def llama_mlp_width(d_model: int) -> int:
    """The SwiGLU MLP width of a ``llama`` block: round_up(8/3·d_model, 16) (LLaMA's 2/3·4d, so the MLP costs what a
    4d GELU MLP costs)."""
    return 16 * math.ceil(8 * d_model / 3 / 16)


def shape_counts(shape: ModelShape, vocab_size: int) -> Counts:
    """The counts `models.accounting.count_params` gives for ``build_lm(shape, vocab_size)``, in closed form.

    ``llama``: per block q, k, v, o (4·d², no biases), a SwiGLU MLP (3·d·m) and two RMSNorm gains (2·d), then a final
    RMSNorm (d); untied input and output embeddings (V·d each); rotary positions have no parameters. ``gpt2``: per
    block a fused qkv and an output projection with biases (4·d² + 4·d), a 4·d MLP with biases (8·d² + 5·d) and two
    LayerNorms with biases (4·d), then a final LayerNorm (2·d); token and learned position embeddings (V·d +
    seq_len·d), the head tied to the token embedding.
    """
    d, layers, head_matmul = shape.d_model, shape.n_layer, vocab_size * shape.d_model
    if shape.architecture == "llama":
        non_embedding = layers * (4 * d * d + 3 * d * llama_mlp_width(d) + 2 * d) + d
        embedding, head = 2 * head_matmul, head_matmul
    elif shape.architecture == "gpt2":
        non_embedding = layers * (12 * d * d + 13 * d) + 2 * d
        embedding, head = head_matmul + shape.seq_len * d, 0
    else:
        raise ValueError(f"unknown architecture {shape.architecture!r}; choose llama or gpt2")
    return Counts(
        embedding=embedding,
        non_embedding=non_embedding,
        total=embedding + non_embedding,
        head=head,
        head_matmul=head_matmul,
    )


def flops_per_token(counts: Counts, *, n_layer: int, seq_len: int, d_model: int) -> float:
    """Training FLOPs per token: 6·(N_non_embedding + N_head) + 6·n_layer·seq_len·d_model (Kaplan et al. 2020,
    Table 1, with the LM head counted as the module docstring says)."""
    return 6.0 * counts.compute + 6.0 * n_layer * seq_len * d_model


def training_flops(counts: Counts, tokens: int) -> float:
    """C = 6·N·D with N = non-embedding parameters plus the LM head (the parameters a token multiplies by)."""
    return 6.0 * counts.compute * tokens


def budget_tokens(counts: Counts, *, flops: float | None = None, tokens_per_param: float | None = None) -> float:
    """The D a budget gives a model with these counts, before it is rounded to whole batches: C / (6·N) for a compute
    budget C (what spends C under ``training_flops``), r·N for r tokens per parameter; N = non-embedding parameters
    plus the LM head (``counts.compute``), in both."""
    if flops is not None and tokens_per_param is None:
        return flops / (6.0 * counts.compute)
    if tokens_per_param is not None and flops is None:
        return tokens_per_param * counts.compute
    raise ValueError("give exactly one of flops or tokens_per_param")

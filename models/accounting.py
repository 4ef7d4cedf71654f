"""Parameter and FLOP accounting with explicit conventions, so analysis can choose N.

Like nanochat's ``num_scaling_params``, the counts are grouped.

Groups sum exactly to ``sum(p.numel())`` over unique parameters (tied weights once):

* ``embedding``: token embeddings, learned position embeddings, and an untied LM head (an output embedding);
* ``non_embedding``: everything else (attention, MLP, norms, biases) — Kaplan et al.'s N;
* ``total``.

``head`` is the part of ``embedding`` that is an untied LM head (0 when the head is tied to the input embedding).

Compute counts every matrix multiply a token goes through, the LM head included: C = 6·(N_non_embedding + N_head)·D
(column ``flops``), and per token Kaplan's forward+backward estimate adds the attention score term
6·n_layer·seq_len·d_model. An input embedding is a lookup, not a multiply, so it costs no FLOPs; a tied head is a
multiply by the embedding matrix and costs d_model·vocab_size per token in the forward like an untied one. Porian et al.
(2024) trace part of the Kaplan–Chinchilla disagreement to leaving the head out of C: at small scale it is a large part
of the compute (130% of N_non_embedding for a 1x64 llama at vocabulary 1024).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamCounts:
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


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    modules += [m for name, m in model.named_modules() if name.endswith("wpe")]  # GPT-2 learned positions
    return [m for m in modules if m is not None]


def count_params(model: nn.Module) -> ParamCounts:
    unique = {id(p): p for p in model.parameters()}
    embedding_ids = {id(p) for m in _embedding_modules(model) for p in m.parameters()}
    embedding = sum(p.numel() for i, p in unique.items() if i in embedding_ids)
    total = sum(p.numel() for p in unique.values())
    input_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    output = model.get_output_embeddings()
    head_params = list(output.parameters()) if output is not None else []
    head = sum(p.numel() for p in head_params if id(p) not in input_ids)
    head_matmul = sum(p.numel() for p in head_params)
    return ParamCounts(
        embedding=embedding, non_embedding=total - embedding, total=total, head=head, head_matmul=head_matmul
    )


def flops_per_token(counts: ParamCounts, *, n_layer: int, seq_len: int, d_model: int) -> float:
    """Training FLOPs per token: 6·(N_non_embedding + N_head) + 6·n_layer·seq_len·d_model (Kaplan et al. 2020,
    Table 1, with the LM head counted as the module docstring says)."""
    return 6.0 * counts.compute + 6.0 * n_layer * seq_len * d_model


def training_flops(counts: ParamCounts, tokens: int) -> float:
    """C = 6·N·D with N = non-embedding parameters plus the LM head (the parameters a token multiplies by)."""
    return 6.0 * counts.compute * tokens

"""The dry run: every cell of a study with its shape, parameter counts, tokens and compute, without training.

Parameter counts come from building each distinct model on the ``meta`` device (no memory, no time), so the numbers
are exactly the ones the trial will record. The vocabulary is the one the spec asks for; a trained BPE reaches it on
any corpus larger than a few hundred kilobytes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from models.accounting import count_params, training_flops
from models.lm import LMShape, build_lm
from models.train import plan_steps
from sweeps.grid import TrialConfig
from sweeps.spec import BPETokenizer, DataSpec, PretrainedTokenizer


@dataclass(frozen=True)
class PlannedTrial:
    trial: TrialConfig
    params_embedding: int
    params_non_embedding: int
    params_total: int
    tokens: int
    steps: int
    flops: float
    status: str


def planned_vocab_size(data: DataSpec) -> int:
    if isinstance(data.tokenizer, BPETokenizer):
        return data.tokenizer.vocab_size
    if isinstance(data.tokenizer, PretrainedTokenizer):
        from transformers import AutoTokenizer

        local_only = os.environ.get("SCALESWEEP_ALLOW_DOWNLOADS") != "1"
        return len(AutoTokenizer.from_pretrained(data.tokenizer.pretrained, local_files_only=local_only))
    assert data.synthetic is not None
    return data.synthetic.vocab_size


@functools.cache
def _counts(shape: LMShape) -> tuple[int, int, int]:
    with torch.device("meta"):
        counts = count_params(build_lm(shape))
    return counts.embedding, counts.non_embedding, counts.total


def plan(trials: list[TrialConfig], statuses: dict[str, str], vocab_size: int) -> list[PlannedTrial]:
    rows = []
    for t in trials:
        shape = LMShape(t.architecture, t.n_layer, t.d_model, t.n_head, t.seq_len, vocab_size)
        emb, non_emb, total = _counts(shape)
        steps = plan_steps(t)
        tokens = steps * t.train.batch_size * t.seq_len
        rows.append(
            PlannedTrial(
                t,
                emb,
                non_emb,
                total,
                tokens,
                steps,
                training_flops(non_emb, tokens),
                statuses.get(t.trial_id, "pending"),
            )
        )
    return rows


def format_plan(rows: list[PlannedTrial]) -> str:
    """A fixed-width table of the cells plus totals, for the terminal."""
    header = (
        "trial_id",
        "arch",
        "size",
        "heads",
        "N_non_emb",
        "N_total",
        "tokens",
        "steps",
        "init",
        "wd",
        "seed",
        "lr",
        "6ND FLOPs",
        "status",
    )
    lines = [header]
    for r in rows:
        t = r.trial
        lines.append(
            (
                t.trial_id,
                t.architecture,
                t.size_label,
                str(t.n_head),
                f"{r.params_non_embedding:,}",
                f"{r.params_total:,}",
                f"{r.tokens:,}",
                f"{r.steps:,}",
                t.init.label,
                f"{t.weight_decay:g}",
                str(t.seed),
                f"{t.lr:g}",
                f"{r.flops:.3g}",
                r.status,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    done = sum(r.status in ("ok", "diverged") for r in rows)
    text.append("")
    text.append(
        f"{len(rows)} trials ({done} finished, {len(rows) - done} to run) · "
        f"{sum(r.tokens for r in rows):,} training tokens · {sum(r.flops for r in rows):.3g} FLOPs (6·N_non_emb·D)"
    )
    return "\n".join(text)

"""The dry run: every cell of a study with its shape, parameter counts, tokens and compute, without training.

Parameter counts are `sweeps.accounting.shape_counts`, the closed form that equals what the trial will record. N is
the non-embedding parameters plus the LM head (the N of the trials' ``flops`` column); tokens/N shows the regime of
each cell; lr and warmup are the trial's own (``train.width_scaling`` sets them per width). A cell of a budget axis
shows the budget it was designed for (``C=…`` of ``grid.flops``, ``D/N=…`` of ``grid.tokens_per_param``) beside its
D and the 6·N·D it spends once D is whole batches. The vocabulary is the one the spec asks for; a trained BPE
reaches it on any corpus larger than a few hundred kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.data.tokenizer import load_pretrained
from sweeps.accounting import shape_counts, training_flops
from sweeps.grid import TrialConfig
from sweeps.spec import DataSpec, PretrainedTokenizer


@dataclass(frozen=True)
class PlannedTrial:
    trial: TrialConfig
    params_embedding: int
    params_non_embedding: int
    params_total: int
    params_compute: int
    """Non-embedding plus LM head: the N of the flops column."""
    tokens: int
    steps: int
    flops: float
    status: str


def planned_vocab_size(data: DataSpec) -> int:
    if data.vocab_size is not None:
        return data.vocab_size
    assert isinstance(data.tokenizer, PretrainedTokenizer)
    return load_pretrained(data.tokenizer.pretrained).vocab_size  # the loader `run` uses: same errors, offline


def plan(trials: list[TrialConfig], statuses: dict[str, str], vocab_size: int) -> list[PlannedTrial]:
    rows = []
    for t in trials:
        counts = shape_counts(t.shape, vocab_size)
        steps = t.steps
        tokens = steps * t.batch_tokens
        rows.append(
            PlannedTrial(
                t,
                counts.embedding,
                counts.non_embedding,
                counts.total,
                counts.compute,
                tokens,
                steps,
                training_flops(counts, tokens),
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
        "N",
        "N_total",
        "budget",
        "tokens",
        "steps",
        "warmup",
        "tokens/N",
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
                t.shape.architecture,
                t.shape.label,
                str(t.shape.n_head),
                f"{r.params_non_embedding:,}",
                f"{r.params_compute:,}",
                f"{r.params_total:,}",
                _budget(t),
                f"{r.tokens:,}",
                f"{r.steps:,}",
                str(t.train.warmup_steps),
                f"{r.tokens / r.params_compute:.3g}",
                t.init.label,
                f"{t.weight_decay:g}",
                str(t.seed),
                f"{t.lr:.3g}",
                f"{r.flops:.3g}",
                r.status,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    done = sum(r.status in ("ok", "diverged") for r in rows)
    text.append("")
    text.append(
        f"{len(rows)} trials ({done} finished, {len(rows) - done} to run) · {sum(r.tokens for r in rows):,} training "
        f"tokens · {sum(r.flops for r in rows):.3g} FLOPs (6·N·D; N = non-embedding parameters + LM head)"
    )
    return "\n".join(text)


def _budget(trial: TrialConfig) -> str:
    """What a cell's D was designed from: a compute budget, a tokens-per-parameter ratio, or D itself (-)."""
    if trial.flops_budget is not None:
        return f"C={trial.flops_budget:.3g}"
    if trial.tokens_per_param is not None:
        return f"D/N={trial.tokens_per_param:g}"
    return "-"

"""``scalesweep status``: what a results directory holds, read from its Parquet (never from Ray).

A trial (or function run) with a steps file but no row yet is running, or was interrupted; its last logged step is
shown.
"""

from __future__ import annotations

import pandas as pd

from analysis import load, summarize

COLUMNS = [
    "trial_id",
    "status",
    "n_layer",
    "d_model",
    "tokens",
    "init_rate",
    "init_std",
    "weight_decay",
    "seed",
    "final_eval_loss",
    "wall_s",
]


def status_text(location: str, *, strict: bool = False) -> str:
    results = load(location, strict=strict)
    lines = summarize(results).lines()
    trials = results.trials
    steps = results.steps
    ended = set(trials.trial_id) | set(results.function_runs.run_id)
    unfinished = sorted(set(steps.trial_id) - ended) if len(steps) else []
    if unfinished:
        last = steps[steps.trial_id.isin(unfinished)].groupby("trial_id").step.max()
        lines.append(
            f"{len(unfinished)} running or interrupted: "
            + ", ".join(f"{tid} (step {int(step)})" for tid, step in last.items())
        )
    if len(trials):
        table = trials[COLUMNS].sort_values(["status", "n_layer", "d_model", "tokens"])
        with pd.option_context("display.max_rows", None, "display.width", 160):
            lines += ["", table.to_string(index=False, float_format=lambda x: f"{x:.4g}")]
    return "\n".join(lines)

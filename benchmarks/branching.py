"""Cooldown branches against separate trials on the laptop grid, side by side in one run on the same machine.

Three runs of the laptop study (``sweeps/laptop.yaml``: 5 sizes × 3 D × 2 cases), each from an empty results
directory, with the same token cache:

1. ``wsd``, every cell a separate trial (``branching: false``): the tokens and wall time branching saves against;
2. ``wsd`` with cooldown branches: tokens trained (read back from the ``segments`` table) and wall time;
3. the same grid under ``cosine`` (separate trials): the loss each cell reaches with a schedule tuned to its own
   length, for the quality comparison.

It prints the tokens and wall-time ratios of (2) against (1), the exact token ratios for the same grid with 6
doubling D values (from the plan: training 6 D on a laptop takes an hour), that branches and separate ``wsd`` trials
agree cell by cell, and the distribution of the final eval loss of ``wsd`` branches over cosine trials at the same
(N, D). Run: ``python benchmarks/branching.py`` (about 12 minutes on 2 cores).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.data import prepare_tokens
from orchestrator.study import run_study
from sweeps.branching import lm_units, token_budget
from sweeps.grid import trials_of
from sweeps.spec import StudySpec, TrainSpec
from sweeps.studies import builtin_spec_path, load_spec


def variant(laptop: StudySpec, results: Path, **train: object) -> StudySpec:
    """The laptop study with these training settings (the wsd-only ones dropped for another schedule)."""
    settings = {**laptop.train.model_dump(exclude_none=True), **train}
    if settings["schedule"] != "wsd":
        settings = {k: v for k, v in settings.items() if k not in ("decay_fraction", "decay_shape", "branching")}
    return laptop.model_copy(update={"results": str(results), "train": TrainSpec.model_validate(settings)})


def timed_run(spec: StudySpec) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    result = run_study(spec, stream=io.StringIO())
    wall = time.perf_counter() - started
    assert result.failed == 0, result.summary()
    return pd.read_parquet(Path(spec.results_path) / "trials"), wall


def doubling(laptop: StudySpec, count: int) -> StudySpec:
    tokens = [laptop.grid.tokens[0] * 2**k for k in range(count)] if laptop.grid.tokens else None
    return variant(laptop, Path("unused"), schedule="wsd").model_copy(
        update={"grid": laptop.grid.model_copy(update={"tokens": tokens})}
    )


def main() -> None:
    laptop = load_spec(builtin_spec_path("laptop"))
    assert isinstance(laptop, StudySpec) and laptop.grid.tokens, "the laptop study is an lm grid with a tokens axis"
    print("preparing the token cache (not measured) ...")
    prepare_tokens(laptop.data, min_train_tokens=max(laptop.grid.tokens))
    with tempfile.TemporaryDirectory() as tmp:
        separate_spec = variant(laptop, Path(tmp) / "separate", schedule="wsd", branching=False)
        branched_spec = variant(laptop, Path(tmp) / "branched", schedule="wsd")
        separate, separate_wall = timed_run(separate_spec)
        branched, branched_wall = timed_run(branched_spec)
        cosine, _ = timed_run(variant(laptop, Path(tmp) / "cosine", schedule="cosine"))
        segments = pd.read_parquet(Path(branched_spec.results_path) / "segments")

    trained = int(segments.tokens.sum())
    separate_tokens = int(separate.tokens.sum())
    print(
        f"3 D values, {len(separate)} cells: branching trained {trained:,} tokens against {separate_tokens:,} "
        f"→ {trained / separate_tokens:.3f}× (target ≤ 0.6); wall {branched_wall:.0f}s against {separate_wall:.0f}s "
        f"→ {branched_wall / separate_wall:.3f}× (target ≤ 0.7)"
    )
    for count in (3, 6):
        spec = doubling(laptop, count)
        budget = token_budget(lm_units(spec, spec.name))
        print(
            f"{count} doubling D values (plan, decay_fraction {spec.train.decay_fraction}): {budget.branched:,} "
            f"against {budget.separate:,} tokens → {budget.branched / budget.separate:.3f}×"
        )

    same = branched.set_index("trial_id").final_eval_loss - separate.set_index("trial_id").final_eval_loss
    print(f"branches against separate wsd trials, same cells: max |Δ final eval loss| = {same.abs().max():.2e}")

    # the same (N, D, case) under both schedules: match on the columns that name a cell, not on ids
    cell = ["n_layer", "d_model", "tokens", "init_rate", "init_std", "weight_decay", "lr"]
    paired = branched.merge(cosine, on=cell, suffixes=("_wsd", "_cosine"))
    assert len(paired) == len(branched) == len(cosine), "every cell of the grid under both schedules"
    ratio = paired.final_eval_loss_wsd / paired.final_eval_loss_cosine
    q = np.quantile(ratio, [0.0, 0.25, 0.5, 0.75, 1.0])
    print(
        f"final eval loss, wsd branch / cosine trial over {len(ratio)} cells: min {q[0]:.4f} · q1 {q[1]:.4f} · "
        f"median {q[2]:.4f} · q3 {q[3]:.4f} · max {q[4]:.4f}; wsd lower in {(ratio < 1).sum()} of {len(ratio)}"
    )
    by_d = paired.assign(ratio=ratio).groupby("tokens").ratio.median()
    print("median ratio by D: " + ", ".join(f"{d:,}: {r:.4f}" for d, r in by_d.items()))
    print(f"(trials per grid: {len(trials_of(laptop, laptop.name))})")


if __name__ == "__main__":
    main()

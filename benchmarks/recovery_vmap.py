"""Recovery tasks per second with seeds batched by ``torch.func.vmap`` against one seed at a time, in one run.

For each setting below, one batch (one n, several seeds) of a ready-made study is trained twice on one torch
thread — ``run_batch(batch)`` (all seeds in one vmapped gradient call per step) and
``run_batch(batch, vectorize=False)`` (the same step function per seed, seed after seed) — and the two are printed side
by side: tasks/s each, the speed-up, and whether the runs agree (same steps taken, same recovered flags, largest
relative difference of test errors). Both include the per-run measurements (ranks, completions), which are the same
work either way. Run: ``python benchmarks/recovery_vmap.py`` (about a minute on one core).
"""

from __future__ import annotations

import argparse
import time

import torch

from models.probes.recovery import run_batch
from sweeps.recovery import RecoveryBatch, recovery_batches
from sweeps.studies import builtin_spec_path, load_spec

CASES = (("recovery-neuron", 0, 6), ("recovery-matrix", 1, 9), ("recovery-tanh", 0, 10))  # (study, setting, n)


def pick(study: str, setting: int, n: int, seeds: int, max_steps: int) -> RecoveryBatch:
    spec = load_spec(builtin_spec_path(study))
    chosen = spec.settings[setting]
    batch = next(b for b in recovery_batches(spec) if b.setting is chosen and b.n == n)
    train = batch.train.model_copy(update={"max_steps": min(batch.train.max_steps, max_steps)})
    return RecoveryBatch(**{**batch.__dict__, "seeds": tuple(range(seeds)), "train": train})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=3000, help="cap on GD steps, to keep the loop side short")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'setting':58} {'n':>3} {'vmap tasks/s':>13} {'loop tasks/s':>13} {'speed-up':>9}  same results")
    for study, setting, n in CASES:
        batch = pick(study, setting, n, args.seeds, args.max_steps)
        timings, rows = [], []
        for vectorize in (True, False):
            started = time.perf_counter()
            rows.append(run_batch(batch, vectorize=vectorize))
            timings.append(time.perf_counter() - started)
        batched, looped = rows
        same_steps = [a["steps"] for a in batched] == [b["steps"] for b in looped]
        same_flags = [a["recovered"] for a in batched] == [b["recovered"] for b in looped]
        worst = max(
            abs(a["test_error"] - b["test_error"]) / max(abs(b["test_error"]), 1e-300)
            for a, b in zip(batched, looped, strict=True)
        )
        rate = [len(batch.seeds) / t for t in timings]
        print(
            f"{batch.setting.label:58} {n:>3} {rate[0]:>13.2f} {rate[1]:>13.2f} {rate[0] / rate[1]:>8.1f}×  "
            f"steps {'=' if same_steps else '≠'}, recovered {'=' if same_flags else '≠'}, "
            f"max rel Δ test error {worst:.1e}"
        )


if __name__ == "__main__":
    main()

"""Throughput and orchestration overhead, measured side by side in one run on the same machine.

(a) Training tokens/s inside a real Ray Tune trial (the trial's own `tokens_per_s`: its whole training loop, eval
    excluded) against a bare PyTorch loop on the same model, init and batch shape (forward, backward, gradient
    clipping, AdamW step — the same arithmetic, no data pipeline, no logging, no Ray). Target ≥ 0.95.
(b) The laptop study's wall time (``run_study``: Ray start, scheduling, every trial with its evals and Parquet
    writes) against the sum of its trials' bare training times divided by the concurrency. The bare time of a trial is
    its step count times the bare loop's time per step for its model size. Target overhead ≤ 25%.

Both run with one torch thread per trial, as the laptop study does. The token cache is built first and not counted
(it is built once per machine). Run: ``python benchmarks/throughput.py`` (about 8 minutes on 2 cores), or
``--only a`` for the first measurement alone.
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from models.batches import plan_steps
from models.data import prepare_tokens
from models.init import apply_init
from models.lm import build_lm
from orchestrator.study import run_study
from sweeps.grid import TrialConfig, expand
from sweeps.spec import StudySpec
from sweeps.studies import builtin_spec_path, load_spec


def bare_seconds_per_step(trial: TrialConfig, vocab_size: int, steps: int = 30, warmup: int = 5) -> float:
    """Seconds per step of a plain PyTorch loop training this trial's model on a fixed batch."""
    torch.set_num_threads(1)
    model = build_lm(trial.shape, vocab_size)
    apply_init(model, d_model=trial.shape.d_model, rate=trial.init.rate, std=trial.init.std, seed=trial.seed)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=trial.lr, betas=trial.train.betas, eps=trial.train.eps, weight_decay=trial.weight_decay
    )
    batch = torch.randint(
        0, vocab_size, (trial.train.batch_size, trial.shape.seq_len), generator=torch.Generator().manual_seed(0)
    )
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trial.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def with_results(spec: StudySpec, results: Path, **changes: object) -> StudySpec:
    return spec.model_copy(update={"results": str(results), **changes})


def measure_trial_vs_bare(laptop: StudySpec, workdir: Path) -> float:
    grid = laptop.grid.model_copy(update={"tokens": [262144], "cases": laptop.grid.cases[:1]})  # one treatment
    model = laptop.model.model_copy(update={"sizes": [laptop.model.sizes[2]]})
    spec = with_results(laptop, workdir / "one-trial", grid=grid, model=model)
    run_study(spec, stream=io.StringIO())
    row = pd.read_parquet(Path(spec.results_path) / "trials").iloc[0]
    trial = expand(spec)[0]
    bare = trial.train.batch_size * trial.shape.seq_len / bare_seconds_per_step(trial, int(row.vocab_size), steps=40)
    ratio = row.tokens_per_s / bare
    print(
        f"(a) {trial.shape.label} model, batch {trial.train.batch_size}×{trial.shape.seq_len}: "
        f"trial {row.tokens_per_s:,.0f} tokens/s vs bare loop {bare:,.0f} tokens/s → ratio {ratio:.3f} "
        f"(target ≥ 0.95)"
    )
    return ratio


def measure_study_overhead(laptop: StudySpec, workdir: Path) -> float:
    import ray

    spec = with_results(laptop, workdir / "laptop")
    trials = expand(spec)
    vocab = prepare_tokens(spec.data).vocab_size
    per_step = {}
    for trial in trials:
        key = trial.shape
        if key not in per_step:
            per_step[key] = bare_seconds_per_step(trial, vocab)
    bare_total = sum(plan_steps(t) * per_step[t.shape] for t in trials)

    ray.shutdown()  # the study starts its own Ray, as `scalesweep run` does
    started = time.perf_counter()
    result = run_study(spec, stream=io.StringIO())
    wall = time.perf_counter() - started
    concurrency = min(len(trials), math.floor(ray.cluster_resources().get("CPU", 1) / spec.resources.cpus_per_trial))
    ideal = bare_total / concurrency
    overhead = wall / ideal - 1
    print(
        f"(b) laptop study: {result.ok} ok of {len(trials)} trials in {wall:.1f}s wall vs bare training "
        f"{bare_total:.1f}s / concurrency {concurrency} = {ideal:.1f}s → ratio {wall / ideal:.3f}, "
        f"overhead {overhead:+.1%} (target ≤ 25%)"
    )
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["a", "b"])
    args = parser.parse_args()
    laptop = load_spec(builtin_spec_path("laptop"))
    print("preparing the token cache (not measured) ...")
    prepare_tokens(laptop.data, min_train_tokens=max(t.tokens for t in expand(laptop)))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.only in (None, "a"):
            measure_trial_vs_bare(laptop, workdir)
        if args.only in (None, "b"):
            measure_study_overhead(laptop, workdir)


if __name__ == "__main__":
    main()

"""Throughput and orchestration overhead, measured side by side in one run on the same machine.

(a) Training tokens/s inside a real Ray Tune trial (the trial's own `tokens_per_s`: its whole training loop, eval
    excluded) against a bare PyTorch loop on the same model, init and batch shape (forward, backward, gradient
    clipping, AdamW step — the same arithmetic, no data pipeline, no logging, no Ray). Target ≥ 0.95.
(b) The laptop study's wall time (``run_study``: Ray start, scheduling, every trial with its evals and Parquet
    writes) against the bare time of the steps it trains divided by the concurrency: each trial's steps, or with
    cooldown branches each stable run's and each cooldown's, times the bare loop's time per step for its model size.
    Target overhead ≤ 25%.

(c) Eager against compiled training (``train.compile``: ``torch.compile`` of the training step's forward and
    backward), per step and with the compile time included, for a short trial (the laptop study's smallest D) and a
    long one (100× its steps), on the laptop's largest size and a 2x96 llama. The compile is measured cold (a fresh
    Inductor cache) and again for a second model of the same shape in the same process (what a later trial of that
    shape pays).

All run with one torch thread per trial, as the laptop study does. The token cache is built first and not counted
(it is built once per machine). Run: ``python benchmarks/throughput.py`` (about 10 minutes on 2 cores), or
``--only a`` for the first measurement alone.
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from models.data import prepare_tokens
from models.init import apply_init
from models.lm import build_lm
from models.state import lm_loss
from orchestrator.study import run_study
from sweeps.branching import StableRun, lm_units, token_budget
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


def seconds_per_step(trial: TrialConfig, vocab_size: int, *, compiled: bool, steps: int = 40) -> tuple[float, float]:
    """(seconds of the first step, which compiles when `compiled`; median seconds of the next `steps`) of the bare
    loop on a fresh model of the trial's shape."""
    torch.set_num_threads(1)
    model = build_lm(trial.shape, vocab_size)
    apply_init(model, d_model=trial.shape.d_model, rate=trial.init.rate, std=trial.init.std, seed=trial.seed)
    model.train()
    loss_of = torch.compile(partial(lm_loss, model)) if compiled else partial(lm_loss, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=trial.lr, betas=trial.train.betas, eps=trial.train.eps)
    batch = torch.randint(0, vocab_size, (trial.train.batch_size, trial.shape.seq_len))
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss_of(batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trial.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times[0], sorted(times[1:])[steps // 2]


def measure_compile(laptop: StudySpec) -> None:
    import os

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # a cold compile
    trials = expand(laptop)
    vocab = prepare_tokens(laptop.data).vocab_size
    short = min(t.steps for t in trials)
    largest = max(trials, key=lambda t: (t.shape.d_model, t.tokens))
    wider = replace(largest, shape=replace(largest.shape, n_layer=2, d_model=96))
    for trial in (largest, wider):
        _, eager = seconds_per_step(trial, vocab, compiled=False)
        first, compiled = seconds_per_step(trial, vocab, compiled=True)
        again, _ = seconds_per_step(trial, vocab, compiled=True, steps=2)
        compile_cold, compile_warm = first - compiled, again - compiled
        print(
            f"(c) {trial.shape.label}: eager {eager * 1e3:.1f} ms/step, compiled {compiled * 1e3:.1f} ms/step "
            f"→ {eager / compiled:.2f}× per step; compile {compile_cold:.1f}s cold, {compile_warm:.1f}s for a second "
            "model of the same shape"
        )
        for label, steps in (("short", short), ("long", 100 * short)):
            eager_total, compiled_total = steps * eager, compile_warm + steps * compiled
            print(
                f"    {label} trial, {steps:,} steps: eager {eager_total:.1f}s vs compiled {compiled_total:.1f}s "
                f"(warm compile included; cold: {compile_cold + steps * compiled:.1f}s) → "
                f"{eager_total / compiled_total:.2f}× faster compiled"
            )


def with_results(spec: StudySpec, results: Path, **changes: object) -> StudySpec:
    return spec.model_copy(update={"results": str(results), **changes})


def measure_trial_vs_bare(laptop: StudySpec, workdir: Path) -> float:
    grid = laptop.grid.model_copy(update={"tokens": [262144], "cases": laptop.grid.cases[:1]})  # one treatment
    model = laptop.model.model_copy(update={"sizes": [laptop.model.sizes[2]]})
    spec = with_results(laptop, workdir / "one-trial", grid=grid, model=model)
    run_study(spec, stream=io.StringIO())
    row = pd.read_parquet(Path(spec.results_path) / "trials").iloc[0]
    trial = expand(spec)[0]
    bare = trial.batch_tokens / bare_seconds_per_step(trial, int(row.vocab_size), steps=40)
    ratio = row.tokens_per_s / bare
    print(
        f"(a) {trial.shape.label} model, batch {trial.train.batch_size}×{trial.shape.seq_len}: "
        f"trial {row.tokens_per_s:,.0f} tokens/s vs bare loop {bare:,.0f} tokens/s → ratio {ratio:.3f} "
        f"(target ≥ 0.95)"
    )
    return ratio


def unit_trial(unit: TrialConfig | StableRun) -> TrialConfig:
    return unit.longest if isinstance(unit, StableRun) else unit


def trained_steps(unit: TrialConfig | StableRun) -> int:
    if isinstance(unit, StableRun):
        trial = unit.longest
        return token_budget([unit]).branched // trial.batch_tokens
    return unit.steps


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
    # the steps the study trains: each trial's, or with cooldown branches each stable run's and each cooldown's
    bare_total = sum(trained_steps(unit) * per_step[unit_trial(unit).shape] for unit in lm_units(spec, spec.name))

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
    parser.add_argument("--only", choices=["a", "b", "c"])
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
    if args.only in (None, "c"):
        measure_compile(laptop)


if __name__ == "__main__":
    main()

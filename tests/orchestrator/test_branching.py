"""Cooldown branches on a real Ray, with real faults: a killed stable run resumes from its last checkpoint, a killed
branch reruns from its fork point, a rerun skips finished cells, and a grown tokens axis trains only the stretches of
stable run it lacks; branches are probed as trials are. Known answer: every cell's row (and probe) is that of a
from-scratch ``wsd`` trial of the cell trained without Ray.

The study runs in a thread of this test process; the test watches the stable states land on disk and kills the Ray
task processes (``ray::segment_task``, ``ray::branch_task``) with SIGKILL.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from models.checkpoint import ProbeSettings, save_probe_checkpoint
from models.data import prepare_tokens
from models.probes.lm import probe_checkpoint
from models.train import train
from orchestrator.study import StudyResult, run_study
from sweeps.branching import lm_units
from sweeps.studies import parse_spec
from tests.processes import pids_of

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BATCH_TOKENS = 8 * 32


def spec_for(tiny_study, results: Path, steps: list[int]):
    raw = tiny_study(
        "branch-faults",
        results,
        grid={"tokens": [s * BATCH_TOKENS for s in steps], "init": [{"rate": 0.5}], "seed": [1]},
        train={
            "batch_size": 8,
            "lr": 0.01,
            "warmup_steps": 10,
            "eval_interval": 50,
            "checkpoint_interval": 50,
            "schedule": "wsd",
            "decay_fraction": 0.25,
        },
        resources={"retries": 2},
    )
    raw["data"]["synthetic"]["tokens"] = 150_000  # 500 steps of 8 × 32 tokens
    return parse_spec(raw)


def run_with(spec, act: Callable[[], bool]) -> tuple[StudyResult, str]:
    """Run the study in a thread, calling `act` every 20 ms until it returns True or the study ends."""
    stream = io.StringIO()
    outcome: dict[str, StudyResult] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("r", run_study(spec, stream=stream)))
    runner.start()
    deadline = time.monotonic() + 180
    while runner.is_alive() and time.monotonic() < deadline and not act():
        time.sleep(0.02)
    runner.join(timeout=300)
    return outcome["r"], stream.getvalue()


def kill_first(title: str) -> bool:
    for pid in pids_of(title)[:1]:
        os.kill(pid, signal.SIGKILL)
        return True
    return False


def assert_rows_are_from_scratch(results: Path, spec, steps: set[int]) -> None:
    rows = pd.read_parquet(results / "trials").set_index("trial_id")
    steps_rows = pd.read_parquet(results / "steps")
    (run,) = lm_units(spec, spec.name)
    for cell in (c for c in run.cells if c.steps in steps):
        scratch = train(cell, prepare_tokens(cell.data))
        row = rows.loc[cell.trial_id]
        assert row.status == "ok"
        assert abs(row.final_eval_loss - scratch.row["final_eval_loss"]) <= 1e-5
        assert abs(row.final_train_loss - scratch.row["final_train_loss"]) <= 1e-5
        mine = steps_rows[steps_rows.trial_id == cell.trial_id].step
        assert sorted(mine) == list(range(1, cell.steps + 1))  # one row per step: no gaps, no duplicates


def stretches(segments: pd.DataFrame) -> list[tuple[int, int]]:
    return sorted(zip(segments.start_step, segments.end_step, strict=True))


def test_faults_reruns_and_a_grown_axis(ray_local, tiny_study, tmp_path: Path) -> None:
    results = tmp_path / "r"
    spec = spec_for(tiny_study, results, [100, 400])  # forks at 75 and 300
    (run,) = lm_units(spec, spec.name)
    states = results / "stable-states" / run.stable_id
    killed: list[str] = []

    def kill_stable_then_branch() -> bool:
        if not killed and (states / "step-150" / "state.pt").exists() and kill_first("ray::segment_task"):
            killed.append("stable")  # after its periodic checkpoint at 150
        elif killed == ["stable"] and (states / "step-300").exists() and kill_first("ray::branch_task"):
            killed.append("branch")  # the cooldown of D = 400 steps, from 300
        return len(killed) == 2

    result, log = run_with(spec, kill_stable_then_branch)
    assert killed == ["stable", "branch"], log
    assert (result.ok, result.failed) == (2, 0), log
    assert log.count("; retrying") == 2
    segments = pd.read_parquet(results / "segments")
    stable = segments[segments.kind == "stable"]
    # the first stretch died; its retry started from the checkpoint at 150, not from scratch
    assert stretches(stable) == [(150, 300)]
    cooldowns = segments[segments.kind == "cooldown"]
    assert stretches(cooldowns) == [(75, 100), (300, 400)]
    # fork states are kept (for a grown axis); the periodic checkpoint is gone
    assert sorted(p.name for p in states.iterdir()) == ["step-300", "step-75"]
    assert_rows_are_from_scratch(results, spec, {100, 400})

    again, _ = run_with(spec, lambda: False)
    assert (again.skipped, again.ran) == (2, 0)

    # smaller D below every state (retrain the prefix), one between states (fork from 75), a larger one (go on)
    grown = spec_for(tiny_study, results, [50, 100, 200, 400, 500])
    result, log = run_with(grown, lambda: False)
    assert (result.skipped, result.ok, result.failed) == (2, 3, 0), log
    segments = pd.read_parquet(results / "segments")
    stable = segments[segments.kind == "stable"]
    assert stretches(stable) == [(0, 37), (75, 150), (150, 300), (300, 375)]
    assert_rows_are_from_scratch(results, grown, {50, 200, 500})


def test_branches_are_probed_as_separate_trials_are(ray_local, tiny_study, tmp_path: Path) -> None:
    """Probe rows at every `every`-th step of every cell, the steps up to its fork from the stable run's state; each
    equal to a direct probe of a from-scratch trial's state at that step."""
    every, batch = 8, 4
    raw = tiny_study(
        "branch-probes",
        tmp_path / "r",
        grid={"tokens": [12 * BATCH_TOKENS, 24 * BATCH_TOKENS], "init": [{"rate": 0.5}], "seed": [3]},
        train={"batch_size": 8, "lr": 0.01, "warmup_steps": 6, "eval_interval": 12, "schedule": "wsd"},
        probes={"curvature": {"every": every, "batch": batch, "top_k": 1}},
    )
    spec = parse_spec(raw)
    result, log = run_with(spec, lambda: False)
    assert (result.ok, result.failed) == (2, 0), log
    short, long = lm_units(spec, spec.name)[0].cells  # forks at 12 − 2 = 10 and 24 − 5 = 19
    probes = pd.read_parquet(tmp_path / "r" / "probes").set_index(["trial_id", "step"]).sort_index()
    assert sorted(probes.index) == sorted(
        [(short.trial_id, 8), (long.trial_id, 8), (long.trial_id, 16), (long.trial_id, 24)]
    )
    # the long cell's probe at 8 comes from the stable run, the one at 24 from its branch
    saved: dict[int, Path] = {}

    def keep(report) -> None:
        if report.probe and report.state.step in (8, 24):
            directory = tmp_path / "direct" / f"step-{report.state.step}"
            settings = ProbeSettings(batch=batch, top_k=1, seed=long.seed)
            save_probe_checkpoint(report.state, directory, trial=long, settings=settings)
            saved[report.state.step] = directory

    train(long, prepare_tokens(long.data), on_report=keep, probe_every=every)
    for step, directory in saved.items():
        direct = probe_checkpoint(directory)["lambda_max_hessian"]
        assert probes.loc[(long.trial_id, step), "lambda_max_hessian"] == pytest.approx(direct, rel=1e-6)
    assert sorted(saved) == [8, 24]

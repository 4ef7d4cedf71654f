"""A worker killed with SIGKILL after a checkpoint: the trial resumes from it and ends as the uninterrupted run does.

Real processes, real Ray: the study runs in a thread of this test process, the test waits for the trial's first
checkpoint to land in storage, then kills the training process (the Tune trial actor, or one Ray Train worker of a
2-worker FSDP trial) with SIGKILL. Tune's (or Ray Train's) FailureConfig restarts it from the checkpoint.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from models.data import prepare_tokens
from models.train import train
from orchestrator.study import StudyResult, run_study
from sweeps.grid import expand
from sweeps.studies import parse_spec
from tests.processes import pids_of

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS, BATCH, SEQ = 120, 8, 32


def spec_for(tiny_study, results: Path, workers: int, retries: int = 2):
    return parse_spec(
        tiny_study(
            "faults",
            results,
            model={"sizes": ["2x32"], "head_dim": 16, "seq_len": SEQ},
            grid={"tokens": [STEPS * BATCH * SEQ], "init": [{"rate": 0.5}], "weight_decay": [0.1], "seed": [2]},
            train={"batch_size": BATCH, "lr": 0.01, "warmup_steps": 10, "eval_interval": 40, "checkpoint_interval": 40},
            resources={"workers": workers, "fsdp_min_params": 0, "retries": retries},
        )
    )


def run_and_kill(spec, checkpoints_under: Path, process_title: str) -> tuple[StudyResult, int]:
    outcome: dict[str, StudyResult] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("r", run_study(spec, stream=io.StringIO())))
    runner.start()
    deadline = time.monotonic() + 120
    killed = 0
    while runner.is_alive() and time.monotonic() < deadline and not killed:
        if any(checkpoints_under.rglob("checkpoint_*")):
            for pid in pids_of(process_title)[:1]:
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    runner.join(timeout=300)
    return outcome["r"], killed


@pytest.mark.parametrize(
    ("workers", "title", "storage", "tolerance"),
    [
        (1, "ray::ImplicitFunc", "tune", 1e-5),
        (2, "ray::RayTrainWorker", "train", 1e-4),
    ],
)
def test_killed_worker_resumes_from_its_checkpoint(
    ray_local, tiny_study, tmp_path: Path, workers: int, title: str, storage: str, tolerance: float
) -> None:
    spec = spec_for(tiny_study, tmp_path / "r", workers)
    trial = expand(spec)[0]
    result, killed = run_and_kill(spec, tmp_path / "r" / storage, title)
    assert killed == 1, "the trial finished before a checkpoint could be interrupted"
    assert (result.ok, result.failed) == (1, 0)

    uninterrupted = train(trial, prepare_tokens(trial.data))
    row = pd.read_parquet(tmp_path / "r" / "trials").iloc[0]
    assert abs(row.final_eval_loss - uninterrupted.row["final_eval_loss"]) <= tolerance
    steps = pd.read_parquet(tmp_path / "r" / "steps")
    assert sorted(steps.step) == list(range(1, STEPS + 1))  # one row per step: no duplicates, no gaps


def test_a_trial_killed_past_its_retries_is_counted_as_ended_without_a_row(
    ray_local, tiny_study, tmp_path: Path
) -> None:
    """No row, no claim of one: the summary says the trial ended without a row (not that a 'failed' row exists), and
    a rerun runs it."""
    spec = spec_for(tiny_study, tmp_path / "r", workers=1, retries=0)
    result, killed = run_and_kill(spec, tmp_path / "r" / "tune", "ray::ImplicitFunc")
    assert killed == 1, "the trial finished before a checkpoint could be interrupted"
    assert (result.ran, result.ok, result.failed, result.without_row) == (1, 0, 0, 1)
    assert "0 failed, 1 ended without a row" in result.summary()
    assert not (tmp_path / "r" / "trials").exists() or not any((tmp_path / "r" / "trials").glob("*.parquet"))

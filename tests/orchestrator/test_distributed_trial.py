"""A 2-worker trial under Ray Train (Tune trial → TorchTrainer → DDP on gloo) against the single-process trial.

The FSDP2 path is checked the same way by tests/orchestrator/test_branching_workers.py, on the separate 2-worker trials
it trains as its own reference (one Ray Train start-up fewer for the suite)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data import prepare_tokens
from models.train import train
from orchestrator.study import run_study
from sweeps.grid import expand
from sweeps.studies import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.distributed, pytest.mark.slow]

STEPS, BATCH, SEQ = 20, 8, 32


def spec_for(tiny_study, results: Path, strategy_threshold: int):
    return parse_spec(
        tiny_study(
            "dist",
            results,
            model={"sizes": ["2x32"], "head_dim": 16, "seq_len": SEQ},
            grid={"tokens": [STEPS * BATCH * SEQ], "init": [{"rate": 0.5}], "weight_decay": [0.1], "seed": [5]},
            train={"batch_size": BATCH, "lr": 0.01, "warmup_steps": 4, "eval_interval": 10},
            resources={"workers": 2, "fsdp_min_params": strategy_threshold, "retries": 0},
        )
    )


def test_two_workers_match_the_single_process_loss_curve(ray_local, tiny_study, tmp_path: Path) -> None:
    spec = spec_for(tiny_study, tmp_path / "r", 10**12)  # below the threshold: DDP
    result = run_study(spec, stream=io.StringIO())
    assert (result.ok, result.failed) == (1, 0)

    trial = expand(spec)[0]
    single = train(trial, prepare_tokens(trial.data))
    row = pd.read_parquet(tmp_path / "r" / "trials").iloc[0]
    assert row.trial_id == trial.trial_id and row.workers == 2 and row.parallelism == "ddp"

    steps = pd.read_parquet(tmp_path / "r" / "steps").sort_values("step")
    assert steps.step.tolist() == list(range(1, STEPS + 1))
    # the single-process run's per-step losses, recomputed here through its own rows
    expected = np.array([r["train_loss"] for r in _rows(trial)])
    assert np.max(np.abs(steps.train_loss.to_numpy() - expected)) <= 1e-4
    assert abs(row.final_eval_loss - single.row["final_eval_loss"]) <= 1e-4


def _rows(trial):
    from models.train import Report

    captured = []

    def keep(report: Report) -> None:
        captured[:] = report.state.rows

    train(trial, prepare_tokens(trial.data), on_report=keep)
    return captured

"""One short real study with every tracker on: the ``tracking`` section travels from the spec through Ray Tune into
each trial's own process, and each trial gets one run per tracker holding its Parquet steps rows. (What each tracker
holds, resuming and failures are tested without Ray in test_tracking.py.)"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.study import run_study
from orchestrator.tracking import wandb_run_id
from sweeps.grid import expand
from sweeps.studies import parse_spec
from tests.trackers import mlflow_runs, tensorboard_scalars, wandb_history, wandb_run_files

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_study_mirrors_each_trial_into_each_tracker(ray_local, tiny_study, tmp_path: Path) -> None:
    results = tmp_path / "r"
    raw = tiny_study(
        "tracked-study",
        results,
        grid={"tokens": [2048], "seed": [0, 1]},
        train={"batch_size": 8, "warmup_steps": 0, "eval_interval": 4},
        tracking={"tensorboard": True, "mlflow": True, "wandb": True},
    )
    spec = parse_spec(raw)
    result = run_study(spec, stream=io.StringIO())
    assert (result.ok, result.failed) == (2, 0)
    assert pd.read_parquet(results / "trials")["tracking_error"].isna().all()
    steps = pd.read_parquet(results / "steps")
    trials = {trial.trial_id: trial for trial in expand(spec)}
    runs = mlflow_runs(results, "tracked-study")
    assert (
        sorted(run.data.tags["scalesweep.trial_id"] for run in runs)
        == sorted(trials)
        == sorted(steps["trial_id"].unique())
    )
    for trial_id, rows in steps.groupby("trial_id"):
        expected = [(int(s), float(v)) for s, v in zip(rows["step"], rows["train_loss"], strict=True)]
        assert [s for s, _ in tensorboard_scalars(results / "tensorboard" / trial_id)["train_loss"]] == [
            s for s, _ in expected
        ]
        (run_file,) = wandb_run_files(results, wandb_run_id(trials[trial_id]))
        assert wandb_history(run_file)["train_loss"] == expected

"""Trackers as mirrors of a trial's Parquet rows, without Ray: one tiny real training run through
`train_and_record` (the function every trial path writes its rows with) with TensorBoard, MLflow and W&B (offline) on,
each read back with its own reader and compared with the Parquet rows, the known answer. Then a resumed trial, trackers
that fail, secrets in the environment, and a missing package."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from models.checkpoint import save_state
from models.data import prepare_tokens
from models.placement import OneProcess
from models.state import TrainState
from orchestrator import tracking
from orchestrator.cli import main
from orchestrator.results import ResultsDir
from orchestrator.tracking import TrackingError, check_tracking, say_mirror_failures
from orchestrator.trainable import train_and_record
from sweeps.grid import TrialConfig, expand
from sweeps.studies import parse_spec
from tests.trackers import (
    mlflow_client,
    mlflow_runs,
    tensorboard_scalars,
    wandb_history,
    wandb_records,
    wandb_run_files,
    wandb_updates,
)

pytestmark = pytest.mark.slow

SECRETS = {
    "WANDB_API_KEY": "wandbsecret" + "0" * 29,
    "MLFLOW_TRACKING_TOKEN": "mlflow-token-secret-1",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-password-secret-2",
    "HF_TOKEN": "hf_secret_token_3",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-key-4",
}
ALL_THREE = {"tensorboard": True, "mlflow": True, "wandb": {"mode": "offline"}}


def tiny_spec(results: Path, cache: Path, track: dict[str, Any] | None) -> dict[str, Any]:
    """A 1x32 llama on the synthetic corpus: 32 steps, an eval every 8, a checkpoint at 12, Adam statistics every 4."""
    spec = {
        "name": "track-test",
        "results": str(results),
        "data": {
            "corpus": "synthetic",
            "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 60000},
            "eval_tokens": 2048,
            "cache_dir": str(cache),
        },
        "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
        "grid": {"tokens": [8192], "seed": [3]},
        "train": {
            "batch_size": 8,
            "warmup_steps": 4,
            "eval_interval": 8,
            "checkpoint_interval": 12,
            "adam_stats": {"every": 4},
        },
    }
    return {**spec, "tracking": track} if track else spec


def tiny_trial(results: Path, cache: Path, track: dict[str, Any] | None) -> TrialConfig:
    return expand(parse_spec(tiny_spec(results, cache, track)))[0]


class Stop(Exception):
    """The trial fails right after saving its checkpoint at step 12 (Tune retries a trial that raised from there)."""


def record(trial: TrialConfig, results: Path, *, resume_from: Path | None = None, stop_in: Path | None = None):
    """Run `trial` through `train_and_record` in this process as `orchestrator.trainable.run_trial` does (from the
    checkpoint in `resume_from`, if given; saving its checkpoint to `stop_in` and failing there, if given); returns
    its status ("stopped" for the failure) and the seconds train_and_record took."""

    def save_and_report(state: TrainState, _: dict[str, Any]) -> None:
        if stop_in is not None:
            save_state(state, stop_in)
            raise Stop

    placement = OneProcess(torch.device("cpu"))
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    if resume_from is not None:
        state = placement.load(trial, store.vocab_size, resume_from)
    else:
        state = placement.fresh(trial, store.vocab_size)
    started = time.perf_counter()
    try:
        status = train_and_record(
            trial,
            results=ResultsDir.at(str(results)),
            store=store,
            state=state,
            placement=placement,
            report=lambda _: None,
            save_and_report=save_and_report,
        )
    except Stop:
        status = "stopped"
    return status, time.perf_counter() - started


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, token_cache: Path) -> tuple[TrialConfig, Path]:
    """One trial with all three trackers, run with secrets in the environment."""
    results = tmp_path_factory.mktemp("tracked")
    trial = tiny_trial(results, token_cache, ALL_THREE)
    saved = {key: os.environ.get(key) for key in SECRETS}
    os.environ.update(SECRETS)
    try:
        assert record(trial, results)[0] == "ok"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    return trial, results


def steps_of(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "steps").sort_values("step").reset_index(drop=True)


def trials_row(results: Path) -> dict[str, Any]:
    rows = pd.read_parquet(results / "trials").to_dict("records")
    assert len(rows) == 1
    return rows[0]


def measured(steps: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """Column → (step, value) of every step where that column was measured: what each tracker must hold."""
    columns = [c for c in steps.columns if c not in ("trial_id", "step")]
    return {
        c: [(int(s), float(v)) for s, v in zip(steps["step"], steps[c], strict=True) if pd.notna(v)] for c in columns
    }


# ------------------------------------------------------------------------------------------------- what is logged


def test_tensorboard_holds_every_steps_row_and_the_trial_row(tracked) -> None:
    trial, results = tracked
    steps, row = steps_of(results), trials_row(results)
    scalars = tensorboard_scalars(results / "tensorboard" / trial.trial_id)
    for column, points in measured(steps).items():  # TensorBoard keeps scalars as float32
        assert scalars[column] == [(s, float(np.float32(v))) for s, v in points], column
    assert {c for c in scalars if not c.startswith("trial/")} == set(measured(steps))
    last = int(steps["step"].iloc[-1])
    assert scalars["trial/final_eval_loss"] == [(last, float(np.float32(row["final_eval_loss"])))]
    assert scalars["trial/params_total"] == [(last, float(row["params_total"]))]
    assert pd.isna(row["tracking_error"])


def test_mlflow_run_holds_every_steps_row_params_and_summary(tracked) -> None:
    trial, results = tracked
    steps, row = steps_of(results), trials_row(results)
    (run,) = mlflow_runs(results, trial.study, trial.trial_id)
    client = mlflow_client(results)
    for column, points in measured(steps).items():  # MLflow keeps float64: the very numbers
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, column))
        assert history == points, column
    assert run.data.params["trial_id"] == trial.trial_id
    assert run.data.params["study"] == "track-test"
    assert json.loads(run.data.params["lr"]) == trial.lr
    assert json.loads(run.data.params["train.batch_size"]) == 8
    assert run.data.metrics["trial/final_eval_loss"] == row["final_eval_loss"]
    assert run.data.tags["scalesweep.status"] == "ok"
    assert run.info.status == "FINISHED"


def test_wandb_offline_run_directory_holds_every_steps_row(tracked) -> None:
    trial, results = tracked
    steps, row = steps_of(results), trials_row(results)
    (run_file,) = wandb_run_files(results, tracking.wandb_run_id(trial))
    history = wandb_history(run_file)
    assert {c: history[c] for c in measured(steps)} == measured(steps)
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.display_name, run.run_group, run.project) == (
        tracking.wandb_run_id(trial),
        trial.trial_id,
        "track-test",
        "scalesweep",
    )
    config = wandb_updates(run.config.update)
    assert config["trial_id"] == trial.trial_id and config["lr"] == trial.lr
    summary: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update(wandb_updates(record.summary.update))
    assert summary["trial/final_eval_loss"] == row["final_eval_loss"]
    assert summary["trial/status"] == "ok"


def test_no_secret_from_the_environment_reaches_results_or_trackers(tracked) -> None:
    _, results = tracked
    files = [path for path in results.rglob("*") if path.is_file()]
    assert any("mlruns" in p.parts for p in files) and any("wandb" in p.parts for p in files)
    for path in files:
        content = path.read_bytes()
        for name, secret in SECRETS.items():
            assert secret.encode() not in content, f"{name} leaked into {path}"


# ------------------------------------------------------------------------------------------------------- resuming


def test_a_resumed_trial_continues_its_run_with_one_value_per_step(tmp_path: Path, token_cache: Path) -> None:
    """Attempt 1 dies after its checkpoint at step 12 (having mirrored steps 1–12); attempt 2 resumes from the
    checkpoint in a fresh mirror, as Tune's retry would. W&B without a key is offline (the default mode)."""
    trial = tiny_trial(tmp_path, token_cache, {"tensorboard": True, "mlflow": True, "wandb": True})
    checkpoint = tmp_path / "checkpoint"
    assert record(trial, tmp_path, stop_in=checkpoint)[0] == "stopped"
    assert trials_row(tmp_path)["status"] == "failed"
    assert record(trial, tmp_path, resume_from=checkpoint)[0] == "ok"
    steps = steps_of(tmp_path)
    assert steps["step"].tolist() == list(range(1, trial.steps + 1))
    expected = measured(steps)

    scalars = tensorboard_scalars(tmp_path / "tensorboard" / trial.trial_id)
    assert scalars["train_loss"] == [(s, float(np.float32(v))) for s, v in expected["train_loss"]]

    (run,) = mlflow_runs(tmp_path, trial.study, trial.trial_id)
    history = mlflow_client(tmp_path).get_metric_history(run.info.run_id, "train_loss")
    logged = sorted((m.step, m.value) for m in history)
    assert logged == expected["train_loss"]  # one value per step: 1–12 from attempt 1 (the checkpoint's rows), 13– new
    assert run.info.status == "FINISHED"

    # offline, each attempt writes its own directory of the one run id; the newest holds every step
    attempts = wandb_run_files(tmp_path, tracking.wandb_run_id(trial))
    assert len(attempts) == 2 and {p.parent for p in attempts} == set(tmp_path.glob("wandb/offline-run-*"))
    assert wandb_history(attempts[-1])["train_loss"] == expected["train_loss"]


# ----------------------------------------------------------------------------------------------------- containment


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_failing_trackers_leave_the_trial_and_its_rows_whole(
    tmp_path: Path, token_cache: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """An MLflow server that is not there and a TensorBoard directory that cannot be made: the trial ends ok, its
    Parquet rows equal an untracked run's, and it waited for its trackers at most the close bound."""
    monkeypatch.setattr(tracking, "CLOSE_WAIT_S", 2.0)  # the default 20 s would dominate this 32-step trial
    plain = tmp_path / "plain"
    assert record(tiny_trial(plain, token_cache, None), plain)[0] == "ok"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tensorboard").write_text("a file where the event directory should be")
    trial = tiny_trial(
        broken, token_cache, {"tensorboard": True, "mlflow": {"tracking_uri": f"http://127.0.0.1:{closed_port()}"}}
    )
    status, took = record(trial, broken)
    assert status == "ok"

    timing = ["elapsed_s"]  # seconds differ between any two runs; every other number must not
    pd.testing.assert_frame_equal(steps_of(broken).drop(columns=timing), steps_of(plain).drop(columns=timing))
    row, untracked = trials_row(broken), trials_row(plain)
    for column in ("final_eval_loss", "eval_loss_se", "min_eval_loss", "final_train_loss", "steps", "tokens", "status"):
        assert row[column] == untracked[column], column
    assert pd.isna(untracked["tracking_error"])
    errors = row["tracking_error"].split("; ")
    assert [e.split(":")[0] for e in errors] == ["tensorboard", "mlflow"]
    # what the trial spent beyond training (its row's wall_s): the close wait and two Parquet writes
    assert took - row["wall_s"] < tracking.CLOSE_WAIT_S + 1.5
    reported = [line for line in capfd.readouterr().err.splitlines() if "tracker " in line]
    assert len(reported) == 2  # each failure said once, by the trial
    said: list[str] = []  # and once for the study, by the driver
    say_mirror_failures(
        parse_spec(tiny_spec(broken, token_cache, ALL_THREE)), ResultsDir.at(str(broken)), {trial.trial_id}, said.append
    )
    assert len(said) == 1 and "1 trial(s)" in said[0] and trial.trial_id in said[0]


# ------------------------------------------------------------------------------------------------- missing package


def test_a_missing_tracker_package_is_one_line_before_anything_starts(
    tmp_path: Path, token_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    spec = tmp_path / "study.yaml"
    spec.write_text(json.dumps(tiny_spec(results, token_cache, {"tensorboard": True, "wandb": True})))
    monkeypatch.setitem(sys.modules, "wandb", None)  # how Python marks a module that cannot be imported
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "scalesweep: error: tracking.wandb: the wandb package is not installed; pip install 'scalesweep[tracking]'"
    ]
    assert not results.exists()


def test_trackers_that_write_under_the_results_need_a_mounted_path(tmp_path: Path, token_cache: Path) -> None:
    remote = ResultsDir("s3://bucket/study")
    for track in ({"tensorboard": True}, {"wandb": True}, {"mlflow": True}):
        with pytest.raises(TrackingError, match=r"must be a local or NFS path \(got s3://bucket/study\)"):
            check_tracking(parse_spec(tiny_spec(tmp_path, token_cache, track)), remote)
    check_tracking(
        parse_spec(tiny_spec(tmp_path, token_cache, {"mlflow": {"tracking_uri": "http://mlflow:5000"}})), remote
    )

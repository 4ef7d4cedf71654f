"""The Ray Tune trainable: config dict → typed trial → `models.train.train` → Parquet and a sparse Tune report.

Thin on purpose: everything it calls runs without Ray. The trial writes its own Parquet (steps at every report, its
trials row at the end); only a small summary goes through ``tune.report``. A checkpoint reported to Tune carries the
whole :class:`~models.train.TrainState`, so a retried trial (``FailureConfig``) resumes from it and its steps
table keeps exactly one row per step.
"""

from __future__ import annotations

import json
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import ray
import torch
import transformers
from ray import tune

from models.checkpoint import load_state, save_state
from models.data import prepare_tokens
from models.train import Report, config_columns, train
from orchestrator.results import ResultsDir
from sweeps.grid import TrialConfig
from sweeps.tables import SCHEMA_VERSION, STEPS, TRIALS


def run_trial(config: dict[str, Any]) -> None:
    trial = TrialConfig.from_dict(config["trial"])
    results = ResultsDir(config["results"])
    torch.set_num_threads(config["torch_threads"])
    device = torch.device("cuda") if config["use_gpu"] and torch.cuda.is_available() else torch.device("cpu")
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)

    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_state(trial, store.vocab_size, directory, device)

    def on_report(report: Report) -> None:
        results.write_rows(STEPS, trial.trial_id, report.state.rows)
        last = report.state.rows[-1]
        metrics = {
            "step": report.state.step,
            "steps_total": report.steps_total,
            "train_loss": last["train_loss"],
            "eval_loss": last["eval_loss"],
            "diverged": report.diverged,
        }
        if report.checkpoint:
            with tempfile.TemporaryDirectory() as directory:
                save_state(report.state, directory)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)

    try:
        outcome = train(trial, store, state=state, device=device, on_report=on_report)
    except Exception as err:
        failed = {**config_columns(trial), "status": "failed", "error": f"{type(err).__name__}: {err}"}
        results.write_rows(TRIALS, trial.trial_id, [_bookkeeping(trial, failed, device)])
        raise
    results.write_rows(TRIALS, trial.trial_id, [_bookkeeping(trial, outcome.row, device)])


def _bookkeeping(trial: TrialConfig, row: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Add the study-level columns every trials row carries."""
    return {
        **row,
        "study": trial.study,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "config_json": json.dumps(trial.to_dict(), sort_keys=True),
        "versions_json": json.dumps(library_versions(), sort_keys=True),
        "schema_version": SCHEMA_VERSION,
        "finished_at": datetime.now(timezone.utc).replace(microsecond=0),
    }


def library_versions() -> dict[str, str]:
    return {
        "scalesweep": metadata.version("scalesweep"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
    }

"""The Ray Tune trainables: config dict → typed trial → `models.train.train` → Parquet and a sparse Tune report.

Thin on purpose: everything they call runs without Ray. A trial writes its own Parquet (steps at every report, its
trials row at the end); only a small summary goes through ``tune.report``. A reported checkpoint carries the whole
training state, so a retried trial (``FailureConfig``) resumes from it and its steps table keeps exactly one row per
step.
A study with ``probes.curvature`` also saves probe checkpoints and hands them to `orchestrator.probes` (single-process
trials only).

Two shapes of trial, chosen by ``resources.workers``:

* one process (`run_trial`): the Tune trial trains in its own actor;
* k processes (`run_distributed_trial`): the Tune trial is only a driver that launches a Ray Train ``TorchTrainer``
  (the Train-V2 pattern); each worker runs `train_worker`, sharded by `models.distributed` (FSDP2 at or above
  ``resources.fsdp_min_params``, DDP below), and rank 0 alone writes Parquet. Worker failures are retried by Ray Train
  from the last sharded checkpoint.
"""

from __future__ import annotations

import json
import platform
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from typing import Any

import ray
import torch
import transformers
from ray import tune

from models.checkpoint import load_state, save_state
from models.data import prepare_tokens
from models.lm import use_bf16_autocast
from models.train import Report, Shard, TrainState, config_columns, new_state, train
from orchestrator.probes import probe_hook
from orchestrator.results import ResultsDir
from sweeps.grid import TrialConfig
from sweeps.tables import SCHEMA_VERSION, STEPS, TRIALS


def run_trial(config: dict[str, Any]) -> None:
    """A single-process trial, run inside its Tune actor."""
    trial = TrialConfig.from_dict(config["trial"])
    torch.set_num_threads(config["torch_threads"])
    device = torch.device("cuda") if config["use_gpu"] and torch.cuda.is_available() else torch.device("cpu")
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_state(trial, store.vocab_size, directory, device)
    else:
        state = new_state(trial, store.vocab_size, device)
    if device.type == "cuda":
        use_bf16_autocast(state.model, "cuda")

    def save_and_report(state: TrainState, metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            save_state(state, directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    results = ResultsDir(config["results"])
    probes = config.get("probes")
    on_probe = probe_hook(trial, results, probes, config["probe_queue"]) if probes else None
    _train_and_record(
        trial,
        results,
        store,
        state,
        device,
        Shard(),
        tune.report,
        save_and_report,
        True,
        probe_every=probes["every"] if probes else 0,
        on_probe=on_probe,
    )


def run_distributed_trial(config: dict[str, Any]) -> None:
    """A Tune trial that drives a k-worker Ray Train run of the same trial."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = config["trial"]["trial_id"]
    per_worker = {"CPU": config["cpus_per_worker"], "GPU": config["gpus_per_worker"]}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=config["workers"], use_gpu=config["use_gpu"], resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=trial_id,
            storage_path=ResultsDir(config["results"]).path("train"),
            failure_config=FailureConfig(max_failures=config["retries"]),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def train_worker(config: dict[str, Any]) -> None:
    """One rank of a distributed trial (runs in a Ray Train worker with the process group set up)."""
    import ray.train
    import ray.train.torch

    from models.distributed import (
        load_sharded_state,
        local_indices,
        mean_over_ranks,
        save_sharded_state,
        setup_process_group,
        sharded_state,
    )

    trial = TrialConfig.from_dict(config["trial"])
    torch.set_num_threads(config["torch_threads"])
    ctx = setup_process_group(ray.train.torch.get_device())
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    state, strategy = sharded_state(
        trial,
        store.vocab_size,
        ctx,
        mixed_precision=ctx.device.type == "cuda",
        min_params_for_fsdp=config["fsdp_min_params"],
    )
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_sharded_state(state, directory)
    shard = Shard(
        rows_of=partial(local_indices, rank=ctx.rank, world_size=ctx.world_size),
        reduce_loss=partial(mean_over_ranks, device=ctx.device),
        parallelism=strategy,
        workers=ctx.world_size,
    )

    def save_and_report(state: TrainState, metrics: dict[str, Any]) -> None:
        # every rank writes its shards and reports: Ray Train gathers them into one checkpoint
        with tempfile.TemporaryDirectory() as directory:
            save_sharded_state(state, directory)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

    _train_and_record(
        trial,
        ResultsDir(config["results"]),
        store,
        state,
        ctx.device,
        shard,
        ray.train.report,
        save_and_report,
        ctx.is_main,
    )


def _train_and_record(
    trial: TrialConfig,
    results: ResultsDir,
    store: Any,
    state: TrainState | None,
    device: torch.device,
    shard: Shard,
    report: Callable[[dict[str, Any]], None],
    save_and_report: Callable[[TrainState, dict[str, Any]], None],
    writes_results: bool,
    *,
    probe_every: int = 0,
    on_probe: Callable[[TrainState], None] | None = None,
) -> None:
    """Train, reporting at every eval and checkpoint point; the process that `writes_results` writes the Parquet.

    At every `probe_every`-th step `on_probe` gets the state (to save a probe checkpoint and hand it off).
    """

    def on_report(r: Report) -> None:
        if writes_results:
            results.write_rows(STEPS, trial.trial_id, r.state.rows)
        if r.probe and on_probe is not None:
            on_probe(r.state)
        last = r.state.rows[-1]
        metrics = {
            "step": r.state.step,
            "steps_total": r.steps_total,
            "train_loss": last["train_loss"],
            "eval_loss": last["eval_loss"],
            "diverged": r.diverged,
        }
        if r.checkpoint:
            save_and_report(r.state, metrics)
        else:
            report(metrics)

    try:
        outcome = train(
            trial, store, state=state, device=device, on_report=on_report, shard=shard, probe_every=probe_every
        )
    except Exception as err:
        if writes_results:
            failed = {**config_columns(trial), "status": "failed", "error": f"{type(err).__name__}: {err}"}
            results.write_rows(TRIALS, trial.trial_id, [_bookkeeping(trial, failed, device)])
        raise
    if writes_results:
        results.write_rows(TRIALS, trial.trial_id, [_bookkeeping(trial, outcome.row, device)])


def _bookkeeping(trial: TrialConfig, row: dict[str, Any], device: torch.device) -> dict[str, Any]:
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return bookkeeping(row, trial.study, trial.to_dict(), device_name)


def bookkeeping(row: dict[str, Any], study: str, config: dict[str, Any], device: str) -> dict[str, Any]:
    """Add the study-level columns every trials row carries (an lm trial's or a function run's)."""
    return {
        **row,
        "study": study,
        "device": device,
        "config_json": json.dumps(config, sort_keys=True),
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

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
  (the Train-V2 pattern, `torch_trainer`); each worker runs `train_worker`, its state held by
  `models.placement.Ranks` (FSDP2 at or above ``resources.fsdp_min_params``, DDP below, sharded checkpoints), and
  rank 0 alone writes Parquet. Worker failures are retried by Ray Train from the last sharded checkpoint. Cooldown
  branches of a multi-worker study drive the same kind of run (`orchestrator.branching`).
"""

from __future__ import annotations

import json
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import ray
import torch
import transformers
from ray import tune

from models.data import TokenStore, prepare_tokens
from models.placement import OneProcess, Placement, Ranks
from models.state import TrainState
from models.train import Report, config_columns, train
from orchestrator.probes import probe_hook
from orchestrator.results import ResultsDir
from orchestrator.tracking import Mirror
from sweeps.grid import TrialConfig
from sweeps.tables import SCHEMA_VERSION, STEPS, TRIALS


@dataclass(frozen=True)
class TrialRun:
    """What one Tune trial is handed: its trial (with its resources and probe settings), where its results go, and
    the name of the study's probe queue (when it is probed)."""

    trial: TrialConfig
    results: str
    probe_queue: str | None = None

    def to_config(self) -> dict[str, Any]:
        return {"trial": self.trial.to_config(), "results": self.results, "probe_queue": self.probe_queue}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialRun:
        return cls(TrialConfig.from_config(config["trial"]), config["results"], config["probe_queue"])

    @property
    def torch_threads(self) -> int:
        res = self.trial.resources
        return res.torch_threads or max(1, int(res.cpus_per_trial))

    @property
    def use_gpu(self) -> bool:
        return self.trial.resources.gpus_per_trial > 0

    def set_up(self) -> tuple[OneProcess, TokenStore]:
        """This process's torch threads, its place (on the GPU when the trial asks for one) and the trial's tokens."""
        torch.set_num_threads(self.torch_threads)
        device = torch.device("cuda") if self.use_gpu and torch.cuda.is_available() else torch.device("cpu")
        return OneProcess(device), prepare_tokens(self.trial.data, min_train_tokens=self.trial.tokens)

    def join_ranks(self) -> tuple[Ranks, TokenStore]:
        """In a Ray Train worker: this rank's torch threads, its place in the process group (on the device Ray Train
        gave it) and the trial's tokens."""
        import ray.train.torch

        from models.distributed import setup_process_group

        torch.set_num_threads(self.torch_threads)
        ctx = setup_process_group(ray.train.torch.get_device())
        return Ranks(ctx), prepare_tokens(self.trial.data, min_train_tokens=self.trial.tokens)


def run_trial(config: dict[str, Any]) -> None:
    """A single-process trial, run inside its Tune actor (``config["run"]`` is a ``TrialRun``)."""
    run = TrialRun.from_config(config["run"])
    trial = run.trial
    placement, store = run.set_up()
    curvature = trial.probes.curvature if trial.probes else None
    on_probe = None
    if curvature and run.probe_queue:
        on_probe = probe_hook(trial, ResultsDir(run.results), curvature, run.probe_queue)
    _train_reporting_to(tune, run, placement, store, probe_every=curvature.every if on_probe else 0, on_probe=on_probe)


def run_distributed_trial(config: dict[str, Any]) -> None:
    """A Tune trial that drives a k-worker Ray Train run of the same trial."""
    from ray.tune.integration.ray_train import TuneReportCallback

    run = TrialRun.from_config(config["run"])
    trainer = torch_trainer(
        run,
        train_worker,
        name=run.trial.trial_id,
        max_failures=run.trial.resources.retries,
        config=config,
        callbacks=[TuneReportCallback()],
    )
    trainer.fit()


def torch_trainer(
    run: TrialRun,
    train_fn: Callable[..., None],
    *,
    name: str,
    max_failures: int,
    config: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A Ray Train ``TorchTrainer`` of `train_fn` on the trial's ``resources.workers`` workers, each with the trial's
    per-process CPUs and GPUs, keeping its run state under ``RESULTS/train/<name>``; a worker failure restarts the
    group at most `max_failures` times."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res = run.trial.resources
    return TorchTrainer(
        train_fn,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=res.workers,
            use_gpu=run.use_gpu,
            resources_per_worker={"CPU": res.cpus_per_trial, "GPU": res.gpus_per_trial},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=ResultsDir(run.results).path("train"),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=callbacks,
        ),
    )


def train_worker(config: dict[str, Any]) -> None:
    """One rank of a distributed trial (runs in a Ray Train worker with the process group set up)."""
    import ray.train

    run = TrialRun.from_config(config["run"])
    placement, store = run.join_ranks()
    _train_reporting_to(ray.train, run, placement, store)


def _train_reporting_to(session: Any, run: TrialRun, placement: Placement, store: TokenStore, **probes: Any) -> None:
    """Train `run`'s trial from the checkpoint `session` (``ray.tune`` or ``ray.train``, the same API) hands back,
    if any, reporting to it at every eval and saving a checkpoint through it at every checkpoint step."""
    trial = run.trial
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = placement.load(trial, store.vocab_size, Path(directory))
    else:
        state = placement.fresh(trial, store.vocab_size)

    def save_and_report(state: TrainState, metrics: dict[str, Any]) -> None:
        # under Ray Train every rank writes its shards and reports: Ray Train gathers them into one checkpoint
        with tempfile.TemporaryDirectory() as directory:
            placement.save(state, Path(directory))
            session.report(metrics, checkpoint=session.Checkpoint.from_directory(directory))

    train_and_record(
        trial,
        results=ResultsDir(run.results),
        store=store,
        state=state,
        placement=placement,
        report=session.report,
        save_and_report=save_and_report,
        **probes,
    )


def train_and_record(
    trial: TrialConfig,
    *,
    results: ResultsDir,
    store: TokenStore,
    state: TrainState,
    placement: Placement,
    report: Callable[[dict[str, Any]], None],
    save_and_report: Callable[[TrainState, dict[str, Any]], None],
    probe_every: int = 0,
    on_probe: Callable[[TrainState], None] | None = None,
) -> str:
    """Train `state` in `placement`, reporting at every eval and checkpoint point; its main process writes the
    Parquet.
    Returns the trial's status (ok or diverged; an exception is recorded as failed and raised again).

    At every `probe_every`-th step `on_probe` gets the state (to save a probe checkpoint and hand it off). With
    ``tracking`` the same process mirrors the rows it writes to the trial's trackers (`orchestrator.tracking`).
    """
    writes_results, device = placement.main, placement.device
    mirror = Mirror(trial, results) if writes_results and trial.tracking else None

    def record_trial(row: dict[str, Any]) -> None:
        row = trial_bookkeeping(trial, row, device)
        if mirror is not None:
            row["tracking_error"] = mirror.close(row)
        results.write_rows(TRIALS, trial.trial_id, [row])

    def on_report(r: Report) -> None:
        if writes_results:
            results.write_rows(STEPS, trial.trial_id, r.state.rows)
            if mirror is not None:
                mirror.steps(r.state.rows)
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
            trial,
            store,
            state=state,
            device=device,
            on_report=on_report,
            shard=placement.shard(state),
            probe_every=probe_every,
        )
    except Exception as err:
        if writes_results:
            record_trial({**config_columns(trial), "status": "failed", "error": f"{type(err).__name__}: {err}"})
        raise
    if writes_results:
        record_trial(outcome.row)
    return outcome.status


def trial_bookkeeping(trial: TrialConfig, row: dict[str, Any], device: torch.device) -> dict[str, Any]:
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return bookkeeping(row, trial.study, trial.to_config(), device_name)


def bookkeeping(row: dict[str, Any], study: str, config: dict[str, Any], device: str) -> dict[str, Any]:
    """Add the study-level columns every row of trials and function_runs carries."""
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

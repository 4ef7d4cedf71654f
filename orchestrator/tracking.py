"""Experiment trackers (TensorBoard, MLflow, W&B) as mirrors of a trial's Parquet rows.

Parquet stays the source of truth: a tracker only watches, so it must never fail, slow or change a trial. This module
owns everything about trackers: the check before a study starts, one small protocol with three adapters, and the
`Mirror` that `orchestrator.trainable.train_and_record` feeds (the one function every path that writes a trial's
rows goes through: a Tune trial, rank 0 of a distributed trial, a cooldown branch).

What a tracker gets, per trial: one run named by the trial id (TensorBoard ``RESULTS/tensorboard/<trial_id>``; MLflow
a run in the experiment named after the study, tagged ``scalesweep.trial_id``; W&B a run in the study's group),
every steps row at its step (each numeric column under its Parquet name), the trial's config (and id) as parameters,
and the final trials row's numbers as ``trial/<column>`` summary metrics.

A retried trial (resumed from a checkpoint in a fresh process) continues its run: its state holds every row since
step 1, so the mirror logs them again and each tracker keeps one value per step. TensorBoard purges what earlier
attempts logged (``purge_step=0``: a reader shows the newest attempt's events only); MLflow finds the run by its tag
and W&B resumes it by id, and both skip the steps that run already holds.

Containment: each tracker works in its own daemon thread behind a bounded queue, so training only ever enqueues. A
tracker's first error (full disk, unreachable server, a queue that fell behind) stops that tracker for this trial,
is printed once and is recorded in the trial's ``tracking_error`` column; the driver says once, after the study,
which trials' mirrors are incomplete. A trial waits at most `CLOSE_WAIT_S` for its trackers at the end. MLflow's HTTP
retries (minutes by default) are bounded where the user has not set them.

Secrets: a tracker is sent the trial's config and rows and nothing else (never the environment); a spec cannot carry a
credential (`sweeps.spec.MLflowTracking`). Tracker libraries are imported only when configured; `check_tracking`
refuses a missing one before anything starts.
"""

from __future__ import annotations

import importlib.util
import json
import numbers
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from orchestrator.results import ResultsDir
from sweeps.base import content_id, short
from sweeps.errors import InputError
from sweeps.grid import TrialConfig
from sweeps.spec import MLflowTracking, TrackingSpec, WandbTracking
from sweeps.tables import TRIALS

INSTALL = "pip install 'scalesweep[tracking]'"
MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""The module each tracker needs (TensorBoard: torch's SummaryWriter writes with the ``tensorboard`` package)."""
CLOSE_WAIT_S = 20.0
"""How long a finished trial waits for its trackers to write what is queued before it leaves them behind."""
QUEUE_SIZE = 10_000
"""Reports a tracker may fall behind by (one per eval or checkpoint) before it is stopped rather than waited for."""
TRIAL_TAG = "scalesweep.trial_id"
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingError(InputError):
    """A tracker the spec asks for cannot run here (its package is missing, or it needs a local results path)."""


def check_tracking(spec: BaseModel, results: ResultsDir) -> None:
    """Refuse, before anything starts, trackers whose package is not installed or that would write their files under
    a results location that is not a mounted path."""
    for tracking in _sections(spec):
        for name in tracking.names:
            if importlib.util.find_spec(MODULES[name]) is None:
                raise TrackingError(f"tracking.{name}: the {MODULES[name]} package is not installed; {INSTALL}")
        local = [n for n in tracking.names if n != "mlflow" or tracking.mlflow.tracking_uri is None]  # type: ignore[union-attr]
        if local and not results.is_local:
            raise TrackingError(
                f"tracking.{local[0]}: writes its files under the results directory, which must be a local or NFS "
                f"path (got {results.uri}); give mlflow a tracking_uri, or run with a mounted --results"
            )


def _sections(model: BaseModel) -> Iterator[TrackingSpec]:
    """Every ``tracking`` section of a spec, wherever it sits (a spikes study's is inside its ``lm`` part)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, TrackingSpec):
            yield value
        elif isinstance(value, BaseModel):
            yield from _sections(value)


def say_mirror_failures(spec: BaseModel, results: ResultsDir, ids: set[str], say: Callable[[str], None]) -> None:
    """One line, after a study with trackers ran the trials `ids`, naming those whose mirror is incomplete."""
    if next(_sections(spec), None) is None:
        return
    failed = [row for row in results.rows(TRIALS) if row["tracking_error"] and row["trial_id"] in ids]
    if failed:
        say(
            f"trackers incomplete for {len(failed)} trial(s) (first: {failed[0]['trial_id']}, "
            f"{failed[0]['tracking_error']}); their Parquet rows are complete (see column tracking_error)"
        )


# ---------------------------------------------------------------------------------------------------- the adapters


class Tracker(Protocol):
    """One tracker run of one trial, opened in its worker thread."""

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        """Steps rows in step order; a resumed run skips the steps it already holds."""
        ...

    def finish(self, summary: dict[str, float], status: str) -> None:
        """The final trials row's numbers, and the trial's status (ok, diverged, failed); then close the run."""
        ...


def _step_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A steps row's measured numbers under their column names (unmeasured columns are null and left out)."""
    return {key: float(value) for key, value in row.items() if key not in ("trial_id", "step") and _number(value)}


def _summary_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A trials row's numbers as ``trial/<column>``, apart from the step metrics of the same name (such as lr)."""
    return {f"trial/{key}": float(value) for key, value in row.items() if _number(value)}


def _trial_params(trial: TrialConfig) -> dict[str, str]:
    """The trial's config (with its id) flattened to dotted names, each value as text."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", trial.to_config())
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _TensorBoard:
    """Event files under ``RESULTS/tensorboard/<trial_id>`` (torch's SummaryWriter; scalars are float32)."""

    def __init__(self, trial: TrialConfig, results: ResultsDir) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step=0: a reader drops what earlier attempts of this trial logged; this attempt logs every row again
        self.writer = SummaryWriter(results.path("tensorboard", trial.trial_id), purge_step=0, flush_secs=10)
        self.writer.add_text("config", f"```\n{json.dumps(trial.to_config(), indent=2, sort_keys=True)}\n```", 0)
        self.last_step = 0

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            for key, value in _step_metrics(row).items():
                self.writer.add_scalar(key, value, row["step"])
            self.last_step = row["step"]
        self.writer.flush()

    def finish(self, summary: dict[str, float], status: str) -> None:
        for key, value in summary.items():
            self.writer.add_scalar(key, value, self.last_step)
        self.writer.add_text("status", status, self.last_step)
        self.writer.close()


class _MLflow:
    """An MLflow run per trial in the experiment named after the study, found again by its trial-id tag."""

    def __init__(self, trial: TrialConfig, results: ResultsDir, settings: MLflowTracking) -> None:
        for key, value in MLFLOW_HTTP_BOUNDS.items():  # before mlflow reads them; the user's own values win
            os.environ.setdefault(key, value)
        if settings.tracking_uri is None:
            # MLflow 3 keeps its file store in maintenance mode behind this switch; it is the store many trials can
            # write at once without a server (SQLite would lock)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=settings.tracking_uri or Path(results.path("mlruns")).as_uri())
        experiment = self._experiment(trial.study)
        found = self.client.search_runs(
            [experiment], filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            history = self.client.get_metric_history(self.run_id, "train_loss")
            self.through = max((m.step for m in history), default=0)
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment, run_name=trial.trial_id, tags={TRIAL_TAG: trial.trial_id})
            self.run_id, self.through = run.info.run_id, 0
            self._log(params=_trial_params(trial))
        self.last_step = self.through

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another trial of the study created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def _log(self, *, metrics: Sequence[tuple[str, float, int]] = (), params: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        # log_batch splits what exceeds MLflow's limits per request into several, and sends nothing for nothing
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(key, value, now, step) for key, value, step in metrics],
            params=[Param(key, value) for key, value in (params or {}).items()],
        )

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        new = [row for row in rows if row["step"] > self.through]
        self._log(metrics=[(key, value, row["step"]) for row in new for key, value in _step_metrics(row).items()])
        if new:
            self.last_step = new[-1]["step"]

    def finish(self, summary: dict[str, float], status: str) -> None:
        self._log(metrics=[(key, value, self.last_step) for key, value in summary.items()])
        self.client.set_tag(self.run_id, "scalesweep.status", status)
        self.client.set_terminated(self.run_id, "FAILED" if status == "failed" else "FINISHED")


def wandb_run_id(trial: TrialConfig) -> str:
    """The W&B run id of a trial: one per trial of a study (a trial id alone may recur in another study of the same
    project, since it names what a trial computes, not where)."""
    return content_id({"study": trial.study, "trial_id": trial.trial_id})


class _Wandb:
    """A W&B run per trial, resumed by id; offline (under ``RESULTS/wandb``) unless online is asked or a key is set."""

    def __init__(self, trial: TrialConfig, results: ResultsDir, settings: WandbTracking) -> None:
        import wandb

        mode = settings.mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(
            project=settings.project,
            group=trial.study,
            name=trial.trial_id,
            id=wandb_run_id(trial),
            resume="allow",
            mode=mode,
            dir=results.uri,
            config=trial.to_config(),
            settings=wandb.Settings(
                silent=True, console="off", x_disable_stats=True, disable_git=True, save_code=False, reinit="create_new"
            ),
        )
        self.through = max(self.run.step - 1, 0)  # a resumed online run's next step; 0 for a new or offline run
        self.last_step = self.through

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["step"] > self.through:
                self.run.log(_step_metrics(row), step=row["step"])
                self.last_step = row["step"]

    def finish(self, summary: dict[str, float], status: str) -> None:
        self.run.summary.update({**summary, "trial/status": status})
        self.run.finish(exit_code=1 if status == "failed" else 0)


def _open_tracker(name: str, trial: TrialConfig, results: ResultsDir) -> Tracker:
    tracking = trial.tracking
    assert tracking is not None
    if name == "tensorboard":
        return _TensorBoard(trial, results)
    if name == "mlflow":
        assert tracking.mlflow is not None
        return _MLflow(trial, results, tracking.mlflow)
    assert tracking.wandb is not None
    return _Wandb(trial, results, tracking.wandb)


# ------------------------------------------------------------------------------------------------------ the mirror


class _Worker:
    """One tracker behind its own thread and bounded queue; its first error stops it (`error`)."""

    def __init__(self, name: str, open_: Callable[[], Tracker], say: Callable[[str], None]) -> None:
        self.name = name
        self.say = say
        self.error: str | None = None
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUE_SIZE)
        self.thread = threading.Thread(target=self._run, args=(open_,), name=f"tracker-{name}", daemon=True)
        self.thread.start()

    def put(self, kind: str, payload: Any) -> None:
        if self.error is not None:
            return
        try:
            self.queue.put_nowait((kind, payload))
        except queue.Full:
            self.fail(f"fell behind by {QUEUE_SIZE} reports")

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = f"{self.name}: {short(' '.join(reason.split()), 200)}"
            self.say(self.error)

    def _run(self, open_: Callable[[], Tracker]) -> None:
        try:
            tracker = open_()
            while self.error is None:
                kind, payload = self.queue.get()
                if kind == "steps":
                    tracker.log_steps(payload)
                else:
                    tracker.finish(*payload)
                    return
        except Exception as err:  # whatever a tracker raises stops that tracker only
            self.fail(f"{type(err).__name__}: {err}")


class Mirror:
    """The trackers of one trial: `steps` hands them new rows, `close` the final row; neither waits on a tracker
    (but `close` gives them up to `CLOSE_WAIT_S` to finish)."""

    def __init__(self, trial: TrialConfig, results: ResultsDir) -> None:
        assert trial.tracking is not None
        self.through = 0

        def say(error: str) -> None:
            print(
                f"[{trial.study}] tracker {error}; it stops for trial {trial.trial_id} (its Parquet rows are complete)",
                file=sys.stderr,
                flush=True,
            )

        self.workers = [
            _Worker(name, lambda name=name: _open_tracker(name, trial, results), say) for name in trial.tracking.names
        ]

    def steps(self, rows: list[dict[str, Any]]) -> None:
        """Hand the trackers the rows after the last one handed (`rows` is every row of the trial so far)."""
        new = [dict(row) for row in rows if row["step"] > self.through]
        if new:
            self.through = new[-1]["step"]
            for worker in self.workers:
                worker.put("steps", new)

    def close(self, row: Mapping[str, Any]) -> str | None:
        """Hand the trackers the final trials row and wait (at most `CLOSE_WAIT_S`) for them; returns their errors
        in one line (None: every tracker mirrored everything)."""
        for worker in self.workers:
            worker.put("finish", (_summary_metrics(row), row["status"]))
        deadline = time.monotonic() + CLOSE_WAIT_S
        for worker in self.workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                worker.fail(f"still busy after {CLOSE_WAIT_S:g}s, left behind")
        errors = [worker.error for worker in self.workers if worker.error]
        return "; ".join(errors) or None

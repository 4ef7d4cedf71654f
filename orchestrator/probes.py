"""Curvature probes as Ray tasks: a trial saves a probe checkpoint and hands it off; a task probes it; rows land in
``probes/``.

The pieces, in the order a probe goes through them:

* the trial (`orchestrator.trainable.run_trial`) saves a probe checkpoint at every ``probes.curvature.every``-th step
  under ``RESULTS/probe-checkpoints/<trial_id>/step-<k>/`` (`models.checkpoint.save_probe_checkpoint`) and calls
  ``ProbeQueue.submit`` without waiting, so training never blocks on a probe;
* ``ProbeQueue``, one actor per study run created by the driver, submits one `probe_task` per checkpoint and holds
  the task references. The queue, not the trial, owns the tasks: a Tune actor that ends (or is reused for the next
  trial) does not take its probes with it, and the driver can wait for all of them with ``drain``;
* `probe_task` runs `models.probes.lm.probe_checkpoint` and writes its row as ``probes/<trial_id>-<step>.parquet``.
  One file per probe, not one per trial: probes of one trial finish in any order and in parallel, and a file of its
  own is written atomically with no read-modify-write race. The table's key stays (trial_id, step), and
  ``pandas.read_parquet("RESULTS/probes")`` reads them all.

``scalesweep probe RESULTS`` (`pending_checkpoints`, `probe_checkpoints`) runs the same task for every complete
probe checkpoint that has no row yet (a study interrupted before its probes finished, or probes to repeat after
deleting their rows).

Probe tasks take ``PROBE_CPUS`` = 0.5 CPU: on a 2-CPU laptop running one 1-CPU trial, a probe (short and bursty: a few
hundred Hessian-vector products on a small model) then runs beside it instead of waiting for the study to end, and two
probes can share the free core. Probe checkpoints stay on disk (weights and optimizer state per probed step), so a
probe can be rerun; delete ``probe-checkpoints/`` to reclaim the space.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import ray

from models.checkpoint import PROBE_FILE, ProbeSettings, read_probe_meta, save_probe_checkpoint
from models.state import TrainState
from orchestrator.results import ResultsDir
from sweeps.grid import TrialConfig
from sweeps.spec import CurvatureProbeSpec
from sweeps.tables import PROBES

PROBE_CPUS = 0.5
CHECKPOINTS = "probe-checkpoints"


@dataclass(frozen=True)
class ProbeSummary:
    """What became of a set of probe tasks."""

    done: int
    failed: list[str]

    def line(self) -> str:
        failed = f", {len(self.failed)} failed (first: {self.failed[0]})" if self.failed else ""
        return f"{self.done} curvature probe(s) written{failed}"


def checkpoint_dir(results: ResultsDir, trial_id: str, step: int) -> Path:
    return Path(results.path(CHECKPOINTS, trial_id, f"step-{step}"))


def row_key(trial_id: str, step: int) -> str:
    """The probes file of one probe: ``probes/<trial_id>-<step>.parquet``."""
    return f"{trial_id}-{step}"


@ray.remote(num_cpus=PROBE_CPUS)
def probe_task(results_uri: str, directory: str) -> None:
    """Probe the checkpoint in `directory` and write its row (one torch thread: the task holds half a CPU)."""
    import torch

    from models.probes.lm import probe_checkpoint

    torch.set_num_threads(1)
    row = probe_checkpoint(directory)
    ResultsDir(results_uri).write_rows(PROBES, row_key(row["trial_id"], row["step"]), [row])


@ray.remote(num_cpus=0)
class ProbeQueue:
    """Owns a study run's probe tasks (see the module docstring); trials submit, the driver drains."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, ray.ObjectRef]] = []

    def submit(self, results_uri: str, directory: str) -> None:
        self._pending.append((directory, probe_task.remote(results_uri, directory)))

    def unfinished(self) -> int:
        """Submitted probes still running or waiting for a CPU."""
        if not self._pending:
            return 0
        _, waiting = ray.wait([ref for _, ref in self._pending], num_returns=len(self._pending), timeout=0)
        return len(waiting)

    def drain(self) -> ProbeSummary:
        """Wait for every submitted probe; a failed probe is reported, not raised (its checkpoint stays)."""
        pending, self._pending = self._pending, []
        return wait_for(pending)


def wait_for(pending: list[tuple[str, ray.ObjectRef]]) -> ProbeSummary:
    failed = []
    for directory, ref in pending:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as err:
            failed.append(f"{directory}: {str(err).strip().splitlines()[-1]}")
    return ProbeSummary(done=len(pending) - len(failed), failed=failed)


def start_queue() -> tuple[Any, str]:
    """A fresh ``ProbeQueue`` actor owned by this driver, and the name trials look it up by."""
    name = f"scalesweep-probes-{uuid.uuid4().hex[:12]}"
    return ProbeQueue.options(name=name).remote(), name


def probe_hook(
    trial: TrialConfig, results: ResultsDir, settings: CurvatureProbeSpec, queue_name: str
) -> Callable[[TrainState], None]:
    """What a trial calls at a probe step: save the probe checkpoint, hand it to the queue, return at once."""
    queue = ray.get_actor(queue_name)
    probe = ProbeSettings(batch=settings.batch, top_k=settings.top_k, seed=trial.seed)

    def save_and_submit(state: TrainState) -> None:
        directory = checkpoint_dir(results, trial.trial_id, state.step)
        save_probe_checkpoint(state, directory, trial=trial, settings=probe)
        queue.submit.remote(results.uri, str(directory))

    return save_and_submit


def finish_queue(queue: Any, study: str, stream: TextIO) -> None:
    """Wait for every probe the study's trials handed to `queue`, say how they went, and end the queue."""
    unfinished = ray.get(queue.unfinished.remote())
    if unfinished:
        print(
            f"[{study}] training done; waiting for {unfinished} curvature probe(s) still running or queued",
            file=stream,
            flush=True,
        )
    print(f"[{study}] {ray.get(queue.drain.remote()).line()}", file=stream, flush=True)
    ray.kill(queue)


def pending_checkpoints(results: ResultsDir) -> list[Path]:
    """Complete probe checkpoints (their ``probe.json`` written) that have no probes row yet."""
    have = {Path(p).name for p in results.table_files(PROBES)}
    pending = []
    for meta in sorted(Path(results.path(CHECKPOINTS)).glob(f"*/step-*/{PROBE_FILE}")):
        trial, step, _ = read_probe_meta(meta.parent)
        if f"{row_key(trial.trial_id, step)}.parquet" not in have:
            pending.append(meta.parent)
    return pending


def probe_checkpoints(results: ResultsDir, directories: list[Path]) -> ProbeSummary:
    """Run a probe task for each checkpoint directory and wait for them all (Ray must be started)."""
    return wait_for([(str(d), probe_task.remote(results.uri, str(d))) for d in directories])

"""Plain Ray tasks with a bound on how many are in flight: the executor of units that are not Tune trials (recovery
batches, function runs).

Each unit crosses into its Ray task as one typed object, a :class:`TaskRun` (the unit's JSON form and where the
results go), and comes back as a map of its ids to their statuses. Without a bound every task would be submitted at
once and "running" would mean "queued"; the default bound is the number of tasks the cluster can run side by side.
A task that fails (after Ray's own retries) is reported on one line and its ids counted as failed; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TextIO

import ray

from orchestrator.progress import Piece, Progress
from orchestrator.results import ResultsDir
from sweeps.base import TaskResources, Unit

TaskBody = Callable[..., dict[str, str]]
"""``body(TaskRun config, *, threads)`` → unit id → status (ok, diverged or failed)."""


@dataclass(frozen=True)
class TaskRun:
    """What one Ray task is handed: a unit (its ``to_config`` form) and the results location it writes to."""

    unit: dict[str, Any]
    results: str

    def to_config(self) -> dict[str, Any]:
        return {"unit": self.unit, "results": self.results}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TaskRun:
        return cls(unit=config["unit"], results=config["results"])


def cpu_slots(cpus_per_task: float) -> int:
    """How many tasks of ``cpus_per_task`` CPUs the cluster can run at once (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))


def run_bounded(
    units: Sequence[Unit],
    body: TaskBody,
    *,
    results: str,
    cpus: float,
    retries: int,
    limit: int | None,
    progress: Progress,
) -> None:
    """Run ``body`` as a Ray task for every unit, at most ``limit`` in flight (default: as many as the cluster has
    slots for), in order of submission.

    Each task takes ``cpus`` CPUs, is retried ``retries`` times by Ray, and is told to use T = ⌊cpus⌋ (at least 1)
    torch threads. A unit counts as its ids on the progress line (a batch of seeds counts as its seeds).
    """
    remote = ray.remote(body).options(num_cpus=cpus, max_retries=retries)
    threads = max(1, int(cpus))
    limit = limit or cpu_slots(cpus)
    queue = list(units)
    running: dict[ray.ObjectRef, Unit] = {}
    statuses: dict[str, str] = {}
    ended: dict[str, bool] = {}

    def submit() -> None:
        while queue and len(running) < limit:
            unit = queue.pop(0)
            running[remote.remote(TaskRun(unit.to_config(), results).to_config(), threads=threads)] = unit

    def update() -> None:
        progress.update(
            statuses=statuses,
            running=sum(len(u.unit_ids) for u in running.values()),
            in_flight=dict.fromkeys(map(_work_key, running.values())),
            ended=ended,
        )

    submit()
    update()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)  # the line moves while tasks run
        for ref in ready:
            unit = running.pop(ref)
            try:
                statuses.update(ray.get(ref))
                ended[_work_key(unit)] = True
            except ray.exceptions.RayError as err:
                ended[_work_key(unit)] = False
                statuses.update(dict.fromkeys(unit.unit_ids, "failed"))
                ids = ", ".join(unit.unit_ids[:3]) + (" …" if len(unit.unit_ids) > 3 else "")
                progress.note(f"{ids} failed: {str(err).strip().splitlines()[-1]}")
        submit()
        update()
    progress.close()


def _work_key(unit: Unit) -> str:
    """The unit as a piece of work on the progress line: its first id."""
    return unit.unit_ids[0]


class TaskStudy(Protocol):
    """A study whose units run as Ray tasks: its spec has ``sweeps.base.TaskResources``."""

    name: str
    resources: TaskResources


class TaskRunner:
    """The ``Runner`` of units that run as bounded Ray tasks (``orchestrator.runner``): a subclass names its
    ``noun``, its task ``body`` and its ``plan_text``; the spec's ``resources`` are ``sweeps.base.TaskResources``."""

    noun: ClassVar[str]
    body: ClassVar[TaskBody]

    def resources(self, spec: TaskStudy, units: list[Any]) -> dict[str, float]:
        return {"CPU": spec.resources.cpus_per_task}

    def prepare(self, spec: TaskStudy, units: list[Any], *, results: ResultsDir, say: Callable[[str], None]) -> None:
        """Nothing to check: a task draws its problem, it reads no data."""

    def execute(
        self,
        spec: TaskStudy,
        units: list[Any],
        *,
        results: ResultsDir,
        max_concurrent: int | None,
        stream: TextIO,
    ) -> None:
        resources = spec.resources
        total = sum(len(unit.unit_ids) for unit in units)
        # one kind of work, so the ETA is the measured ids per second (a batch of seeds weighs its seeds)
        work = {_work_key(u): Piece("", len(u.unit_ids), len(u.unit_ids)) for u in units}
        run_bounded(
            units,
            type(self).body,
            results=results.uri,
            cpus=resources.cpus_per_task,
            retries=resources.retries,
            limit=max_concurrent or resources.max_concurrent,
            progress=Progress(spec.name, total, noun=self.noun, work=work, per=self.noun, stream=stream),
        )

"""Plain Ray tasks with a bound on how many are in flight, and one progress line: the engine of the studies that
are not Tune grids (recovery studies, the function part of a spikes study).

Without a bound every task would be submitted at once and "running" would mean "queued"; the default bound is the
number of tasks the cluster can run side by side. A task that fails (after Ray's own retries) is reported on one line
and recorded as its exception; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

import ray

from orchestrator.progress import TaskProgress

Item = TypeVar("Item")


def _cpu_slots(cpus_per_task: float) -> int:
    """How many tasks of ``cpus_per_task`` CPUs the cluster can run at once (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))


def run_bounded(
    study: str,
    items: Sequence[Item],
    function: Callable[..., Any],
    arguments: Callable[[Item], tuple[Any, ...]],
    *,
    cpus: float,
    retries: int,
    limit: int | None,
    unit: str,
    stream: TextIO,
    size: Callable[[Item], int] = lambda _: 1,
    describe: Callable[[Item], str] = lambda _: "a task",
) -> list[tuple[Item, Any]]:
    """Run ``function(*arguments(item), threads=T)`` as a Ray task for every item, at most ``limit`` in flight
    (default: as many as the cluster has slots for), in order of submission.

    Each task takes ``cpus`` CPUs, is retried ``retries`` times by Ray, and is told to use T = ⌊cpus⌋ (at least 1)
    torch threads. Returns (item, result) in order of completion, the result being the task's return value or the
    ``ray.exceptions.RayError`` it failed with. ``size`` counts an item in ``unit``s for the progress line (a batch
    of seeds counts as its seeds); ``describe`` names a failed item in its one-line report.
    """
    remote = ray.remote(function).options(num_cpus=cpus, max_retries=retries)
    threads = max(1, int(cpus))
    limit = limit or _cpu_slots(cpus)
    progress = TaskProgress(study, sum(size(item) for item in items), stream, unit=unit)
    queue = list(items)
    running: dict[ray.ObjectRef, Item] = {}
    outcomes: list[tuple[Item, Any]] = []
    done = failed = 0

    def submit() -> None:
        while queue and len(running) < limit:
            item = queue.pop(0)
            running[remote.remote(*arguments(item), threads=threads)] = item

    submit()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        item = running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            result = err
            failed += size(item)
            print(f"[{study}] {describe(item)} failed: {str(err).strip().splitlines()[-1]}", file=stream)
        done += size(item)
        outcomes.append((item, result))
        submit()
        progress.draw(done, failed, len(running))
    progress.close()
    return outcomes

"""Running a study, whatever its kind: spec → units of work → the unfinished ones → their executors → Parquet.

One driver for every kind of study (``sweeps.studies``). Before anything starts or is written, it expands the spec
into its units of work, reads which unit ids already have a finished row in each unit type's table (those are
skipped, so a rerun is a no-op and a grown axis runs only its new units), checks that the results location can be
written (and, on a cluster, reached from every node), and lets each type's runner
(`orchestrator.runners`) check what it needs (the language-model trials build or reuse their token cache, which also
checks that the corpus holds the largest D). Then it writes the resolved spec to ``RESULTS/spec.yaml``, starts Ray
and hands each type's unfinished units to its runner: the Tune grid for language-model trials (`orchestrator.lm`),
bounded Ray tasks for the others (`orchestrator.tasks`), each with the same progress line. It returns the counts.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from orchestrator.results import ResultsDir
from orchestrator.runner import Runner
from orchestrator.runners import RUNNERS
from orchestrator.storage import check_results_storage
from sweeps.base import StudyBase, Unit
from sweeps.studies import dump_spec, units_of
from sweeps.tables import TABLES


@dataclass(frozen=True)
class StudyResult:
    """What a run of a study did, counted in unit ids (trials, tasks, function runs)."""

    results: str
    total: int
    skipped: int
    ran: int
    ok: int
    diverged: int
    failed: int
    wall_s: float
    noun: str = "trials"

    def summary(self) -> str:
        return (
            f"{self.total} {self.noun}: {self.skipped} already finished, {self.ran} ran "
            f"({self.ok} ok, {self.diverged} diverged, {self.failed} failed) in {self.wall_s:.0f}s → {self.results}"
        )


@dataclass(frozen=True)
class Part:
    """The units of one type of a study, the runner of that type, and those left to run."""

    runner: Runner
    units: list[Unit]
    todo: list[Unit]

    @property
    def ids(self) -> list[str]:
        return [i for unit in self.units for i in unit.unit_ids]

    @property
    def todo_ids(self) -> list[str]:
        return [i for unit in self.todo for i in unit.unit_ids]


def _single_node_on_loopback() -> None:
    """Make this process's Ray a single-node Ray on 127.0.0.1.

    On Linux, Ray turns a requested 127.0.0.1 into the machine's outward address so that other nodes could join;
    its single-node mode (the one it uses on macOS and Windows) keeps every address on loopback. The flag is read when
    Ray is imported, so it is set in the environment (for the processes Ray starts) and on the loaded constant.
    """
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a private local Ray bound to 127.0.0.1 with the dashboard off."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        _single_node_on_loopback()
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )


def study_parts(spec: StudyBase, results: ResultsDir) -> list[Part]:
    """The study's units grouped by type (in the order they first appear), with what is left of each to run."""
    by_type: dict[type, list[Unit]] = {}
    for unit in units_of(spec):
        by_type.setdefault(type(unit), []).append(unit)
    parts = []
    for kind, units in by_type.items():
        finished = results.finished_ids(TABLES[kind.TABLE])
        todo = [left for unit in units if (left := unit.pending(finished)) is not None]
        parts.append(Part(RUNNERS[kind], units, todo))
    return parts


def run_study(
    spec: StudyBase,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    stream: TextIO | None = None,
) -> StudyResult:
    """Run the unfinished units of ``spec`` (module docstring)."""
    stream = stream or sys.stderr
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{spec.name}] {message}", file=stream, flush=True)

    results = ResultsDir.at(spec.results_path)
    results.check_belongs_to(spec.name)
    parts = study_parts(spec, results)
    if address:
        start_ray(address)
        per_unit = {
            name: max(part.runner.resources(spec, part.units).get(name, 0.0) for part in parts)
            for name in ("CPU", "GPU")
        }
        check_results_storage(results.uri, trial_resources=per_unit)
    results.check_writable()
    for part in parts:
        part.runner.prepare(spec, part.units, results=results, say=say)
    results.write_text("spec.yaml", dump_spec(spec))
    noun = parts[0].runner.noun if len(parts) == 1 else "units"
    total = sum(len(part.ids) for part in parts)
    todo = sum(len(part.todo_ids) for part in parts)
    if not todo:
        say(f"nothing to run: all {total} {noun} are finished in {results.uri}")
        return StudyResult(results.uri, total, total, 0, 0, 0, 0, time.monotonic() - started, noun)
    start_ray(address)
    statuses: dict[str, str] = {}
    for part in parts:
        if part.todo:
            say(f"running {len(part.todo_ids)} of {len(part.ids)} {part.runner.noun}")
            statuses.update(
                part.runner.execute(spec, part.todo, results=results, max_concurrent=max_concurrent, stream=stream)
            )
    outcomes = list(statuses.values())
    return StudyResult(
        results.uri,
        total,
        total - todo,
        todo,
        outcomes.count("ok"),
        outcomes.count("diverged"),
        todo - outcomes.count("ok") - outcomes.count("diverged"),
        time.monotonic() - started,
        noun,
    )


def plan_text(spec: StudyBase) -> str:
    """The dry run of the study: each type of unit's plan against what its results already hold."""
    results = ResultsDir.at(spec.results_path)
    return "\n".join(
        part.runner.plan_text(spec, part.units, results.statuses(TABLES[type(part.units[0]).TABLE]))
        for part in study_parts(spec, results)
    )

"""Running a study, whatever its kind: spec → units of work → the unfinished ones → their executors → Parquet.

One driver for every kind of study (``sweeps.studies``). Before anything starts or is written, it fingerprints the
text of each corpus (unit ids name the text, not its path), expands the spec into its units of work, reads which unit
ids already have a finished row in each unit type's table (those are skipped, so a rerun is a no-op and a grown axis
runs only its new units), checks that the results location can be written (and, on a cluster, reached from every
node), and lets each type's runner (`orchestrator.runners`) check what it needs (the language-model trials build or
reuse their token cache, which also checks that the corpus holds the largest D). Then it writes the resolved spec to
``RESULTS/spec.yaml``, starts Ray and hands each type's unfinished units to its runner: the Tune grid for
language-model trials (`orchestrator.lm`), bounded Ray tasks for the others (`orchestrator.tasks`), each with the same
progress line. It returns the counts.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel

from models.data import with_fingerprint
from orchestrator.lock import study_lock
from orchestrator.results import FINISHED, ResultsDir
from orchestrator.runner import Runner
from orchestrator.runners import RUNNERS
from orchestrator.storage import check_results_storage
from orchestrator.tracking import check_tracking, say_mirror_failures
from sweeps.base import StudyBase, Unit
from sweeps.errors import InputError
from sweeps.spec import DataSpec
from sweeps.studies import dump_spec, units_of
from sweeps.tables import TABLES

S = TypeVar("S", bound=StudyBase)


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
    without_row: int = 0
    """Units that ran but left no row (their process died past its retries, or Ray lost them)."""

    def summary(self) -> str:
        lost = f", {self.without_row} ended without a row" if self.without_row else ""
        return (
            f"{self.total} {self.noun}: {self.skipped} already finished, {self.ran} ran ({self.ok} ok, "
            f"{self.diverged} diverged, {self.failed} failed{lost}) in {self.wall_s:.0f}s → {self.results}"
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a study; the message says what was finished (saved) and how to go on."""


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


class NoRoomError(InputError):
    """A unit of the study asks for more than any node of this Ray has."""


def check_room(per_unit: dict[str, float], *, noun: str, cluster: bool, say: Callable[[str], None]) -> None:
    """Refuse, before anything is written, units that no node of this machine's Ray can host (they would wait
    forever); on a cluster, whose autoscaler may still add such a node, say so in one line instead."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    largest = {name: max((node.get(name, 0.0) for node in nodes), default=0.0) for name in per_unit}
    if all(amount <= largest[name] for name, amount in per_unit.items()):
        return
    asks = ", ".join(f"{amount:g} {name}" for name, amount in per_unit.items() if amount)
    there = ", ".join(f"{amount:g} {name}" for name, amount in largest.items())
    if cluster:
        say(
            f"no node has what one of the {noun} asks for ({asks}; the largest has {there}): they wait for nodes "
            "the autoscaler adds"
        )
        return
    raise NoRoomError(
        f"one of the {noun} asks for {asks}, but this machine's Ray has {there}: lower resources.cpus_per_trial, "
        "gpus_per_trial or workers (or cpus_per_task), or run on a cluster with --address"
    )


def with_fingerprints(spec: S, say: Callable[[str], None] | None = None) -> S:
    """`spec` with the fingerprint of the text each of its corpora holds now (`models.data.with_fingerprint`),
    wherever a data section sits in it: every unit id made from the result names the text its units train on."""

    def resolve(model: BaseModel) -> BaseModel:
        updates: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, DataSpec):
                updates[name] = with_fingerprint(value, progress=say)
            elif isinstance(value, BaseModel) and (resolved := resolve(value)) is not value:
                updates[name] = resolved
        return model.model_copy(update=updates) if updates else model

    return resolve(spec)  # type: ignore[return-value]


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
    wait: bool = False,
) -> StudyResult:
    """Run the unfinished units of ``spec`` (module docstring), holding the results directory's lock
    (`orchestrator.lock`; `wait` for another driver to end instead of refusing)."""
    stream = stream or sys.stderr
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{spec.name}] {message}", file=stream, flush=True)

    results = ResultsDir.at(spec.results_path)
    check_tracking(spec, results)
    results.check_belongs_to(spec.name)
    with study_lock(results.uri, wait=wait, say=say):
        return _run_locked(
            spec, results, address=address, max_concurrent=max_concurrent, stream=stream, say=say, started=started
        )


def _run_locked(
    spec: StudyBase,
    results: ResultsDir,
    *,
    address: str | None,
    max_concurrent: int | None,
    stream: TextIO,
    say: Callable[[str], None],
    started: float,
) -> StudyResult:
    spec = with_fingerprints(spec, say)
    parts = study_parts(spec, results)
    noun = parts[0].runner.noun if len(parts) == 1 else "units"
    total = sum(len(part.ids) for part in parts)
    todo_ids = {unit_id for part in parts for unit_id in part.todo_ids}
    todo = len(todo_ids)
    per_unit = {
        name: max(part.runner.resources(spec, part.units).get(name, 0.0) for part in parts) for name in ("CPU", "GPU")
    }
    if address or todo:
        start_ray(address)
        check_room(per_unit, noun=noun, cluster=bool(address), say=say)
    if address:
        check_results_storage(results.uri, trial_resources=per_unit)
    results.check_writable()
    for part in parts:
        part.runner.prepare(spec, part.units, results=results, say=say)
    results.write_text("spec.yaml", dump_spec(spec))
    if not todo:
        say(f"nothing to run: all {total} {noun} are finished in {results.uri}")
        return StudyResult(results.uri, total, total, 0, 0, 0, 0, time.monotonic() - started, noun)
    try:
        for part in parts:
            if part.todo:
                say(f"running {len(part.todo_ids)} of {len(part.ids)} {part.runner.noun}")
                part.runner.execute(spec, part.todo, results=results, max_concurrent=max_concurrent, stream=stream)
    except KeyboardInterrupt:
        finished = sum(status in FINISHED for status in _outcomes(parts, results).values())
        raise Interrupted(
            f"interrupted: {finished} of {total} {noun} finished, {total - finished} not; finished ones are saved, "
            "rerun the same command to continue"
        ) from None
    outcomes = [status for unit_id, status in _outcomes(parts, results).items() if unit_id in todo_ids]
    say_mirror_failures(spec, results, todo_ids, say)
    return StudyResult(
        results.uri,
        total,
        total - todo,
        todo,
        outcomes.count("ok"),
        outcomes.count("diverged"),
        outcomes.count("failed"),
        time.monotonic() - started,
        noun,
        without_row=outcomes.count(None),
    )


def _outcomes(parts: list[Part], results: ResultsDir) -> dict[str, str | None]:
    """The status each unit id's row has now (None: no row), read as a rerun would read it."""
    outcomes: dict[str, str | None] = {}
    for part in parts:
        table = TABLES[type(part.units[0]).TABLE]
        now = results.statuses(table)
        outcomes.update({unit_id: now.get(unit_id) for unit_id in part.ids})
    return outcomes


def plan_text(spec: StudyBase) -> str:
    """The dry run of the study: each type of unit's plan against what its results already hold."""
    results = ResultsDir.at(spec.results_path)
    spec = with_fingerprints(spec)
    return "\n".join(
        part.runner.plan_text(spec, part.units, results.statuses(TABLES[type(part.units[0]).TABLE]))
        for part in study_parts(spec, results)
    )

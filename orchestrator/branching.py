"""Cooldown branches on Ray: the runner of ``sweeps.branching.StableRun`` units.

Two kinds of Ray task, each with one trial's resources: a *segment* task trains a stretch of a stable run and saves
the state at each fork point under ``RESULTS/stable-states/<stable_id>/step-<k>/`` (`models.branching`); a *branch*
task loads a fork state and trains one cell's cooldown, writing the cell's trials and steps rows. The driver keeps at
most ``max_concurrent`` tasks in flight (default: as many as the cluster has slots for), starts a branch as soon as
its fork state is on disk (it looks every ``POLL_S`` seconds while tasks run), and prefers branches over new segments,
so finished cells arrive early. A stable run never waits for its branches: it saves a state and trains on.

Faults: the driver retries a failed task itself, ``resources.retries`` times per stable run and per cell. A failed
segment is planned again from the states on disk (its last fork state, or its last periodic checkpoint with
``train.checkpoint_interval``); a failed branch runs again from its fork point. A rerun of the study plans from the
states on disk the same way: finished cells are skipped, a cell whose fork state exists only branches, and a new D
trains only the stretch of stable run it lacks (`sweeps.branching.plan_segments`). Every stretch and branch trained
is one row of the ``segments`` table, so the tokens a study spent can be read back.

Multi-worker studies (``resources.workers`` k > 1): each segment and branch task drives a Ray Train ``TorchTrainer``
on k workers (the pattern of a distributed trial, `orchestrator.trainable.torch_trainer`), which run the same segment
and branch code on their ranks (`models.placement.Ranks`: FSDP2 or DDP, sharded states, rank 0 writes the rows); the
task itself holds no CPU. Ray Train does not restart a failed group: the task fails and the driver's retry above
applies, from the sharded states on disk. :func:`processes_for` is where this driver tells the two shapes apart
(`orchestrator.lm` makes the same split for Tune trials, with Tune's resource names).

States live on a mounted path (local disk or NFS), as probe checkpoints do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from models.branching import StableStates, branch_state, diverged_outcome, run_segment
from models.data import TokenStore, prepare_tokens
from models.placement import OneProcess, Placement, Ranks
from models.state import TrainState
from orchestrator.lm import DRIVER_MEMORY, TrialRunner, distributed_slots
from orchestrator.plan import plan
from orchestrator.probes import finish_queue, start_queue
from orchestrator.progress import Piece, Progress
from orchestrator.results import FINISHED, ResultsDir
from sweeps.base import SpecError, StudyBase
from sweeps.branching import Segment, StableRun, fork_step, plan_segments, token_budget
from sweeps.grid import TrialConfig
from sweeps.spec import ResourcesSpec
from sweeps.tables import SEGMENTS

if TYPE_CHECKING:
    from orchestrator.trainable import TrialRun

STATES = "stable-states"
POLL_S = 0.5


def stable_states(results: ResultsDir, trial: TrialConfig) -> StableStates:
    """The saved states of `trial`'s stable run under ``RESULTS/stable-states/<stable_id>/`` (a mounted path), in the
    format its processes write."""
    return StableStates(Path(results.path(STATES, trial.stable_id)), processes_for(trial.resources).marker)


# ------------------------------------------------------------------------------- where a task's training runs

Work = Callable[[Placement, TokenStore], dict[str, str]]
"""A segment's or a branch's training in one process (every rank runs it); returns the statuses of the cells it
decided."""


@dataclass(frozen=True)
class InProcess:
    """The task trains in its own process, with one trial's CPUs and GPUs."""

    marker: ClassVar[str] = OneProcess.marker

    def options(self, res: ResourcesSpec) -> dict[str, Any]:
        return {"num_cpus": res.cpus_per_trial, "num_gpus": res.gpus_per_trial}

    def run(self, trial: TrialConfig, results_uri: str, name: str, work: Work) -> dict[str, str]:
        from orchestrator.trainable import TrialRun

        return work(*TrialRun(trial, results_uri).set_up())


@dataclass(frozen=True)
class OnRayTrain:
    """The task drives a Ray Train run of `work` on the trial's k workers (they hold the CPUs and GPUs, the task only
    memory) and returns rank 0's answer, which comes back through a file in the run's folder."""

    marker: ClassVar[str] = Ranks.marker

    def options(self, res: ResourcesSpec) -> dict[str, Any]:
        return {"num_cpus": 0, "memory": DRIVER_MEMORY}

    def run(self, trial: TrialConfig, results_uri: str, name: str, work: Work) -> dict[str, str]:
        from orchestrator.trainable import TrialRun, torch_trainer

        run = TrialRun(trial, results_uri)
        answer = Path(ResultsDir(results_uri).path("train", name, f".statuses-{uuid.uuid4().hex}.json"))
        # no restart inside Ray Train: the driver retries from the states on disk, as for a single-process task
        torch_trainer(run, partial(_rank, run, work, answer), name=name, max_failures=0).fit()
        statuses = json.loads(answer.read_text())
        answer.unlink()
        return statuses


def _rank(run: TrialRun, work: Work, answer: Path) -> None:
    """One rank of an `OnRayTrain` task."""
    placement, store = run.join_ranks()
    statuses = work(placement, store)
    if placement.main:
        answer.parent.mkdir(parents=True, exist_ok=True)
        answer.write_text(json.dumps(statuses))


def processes_for(res: ResourcesSpec) -> InProcess | OnRayTrain:
    """Where the tasks of a study with these resources train: in their own process, or on ``resources.workers``."""
    return InProcess() if res.workers == 1 else OnRayTrain()


# ------------------------------------------------------------------------------------------------ the two tasks


def segment_id(owner: str, start: int, end: int) -> str:
    """A stretch's or branch's name (its segments row, its task, its piece on the progress line): whose steps
    (stable id or cell id), from and to."""
    return f"{owner}-{start}-{end}"


def segment_task(
    run_config: dict[str, Any], start: int, forks: list[int], results_uri: str, probe_queue: str | None
) -> dict[str, str]:
    """Train a stretch of a stable run (a Ray task); returns the status of each cell it decided (the cells whose
    fork point lies at or after a divergence: their rows are written here)."""
    run = StableRun.from_config(run_config)
    segment = Segment(start, tuple(forks))
    work = partial(_train_segment, run, segment, results_uri, probe_queue)
    name = segment_id(run.stable_id, start, segment.end)
    return processes_for(run.longest.resources).run(run.longest, results_uri, name, work)


def _train_segment(
    run: StableRun,
    segment: Segment,
    results_uri: str,
    probe_queue: str | None,
    placement: Placement,
    store: TokenStore,
) -> dict[str, str]:
    """`segment_task`'s training. At a probe step it saves a probe checkpoint for every cell that has not forked
    yet, as a separate trial of the cell would."""
    from orchestrator.probes import probe_hook
    from orchestrator.trainable import trial_bookkeeping
    from sweeps.tables import STEPS, TRIALS

    results = ResultsDir(results_uri)
    started = time.perf_counter()
    curvature = run.longest.probes.curvature if run.longest.probes and probe_queue else None
    hooks = {cell: probe_hook(cell, results, curvature, probe_queue) for cell in run.cells} if curvature else {}

    def on_probe(state: TrainState) -> None:
        for cell, hook in hooks.items():
            if state.step <= fork_step(cell):
                hook(state)

    outcome = run_segment(
        run,
        segment,
        store,
        stable_states(results, run.longest),
        placement=placement,
        probe_every=curvature.every if curvature else 0,
        on_probe=on_probe,
    )
    end = segment.end if outcome.diverged_at is None else outcome.diverged_at
    status = "ok" if outcome.diverged_at is None else "diverged"
    statuses: dict[str, str] = {}
    if not placement.main:
        return statuses
    _record(results, run.longest, None, run.stable_id, segment.start, end, status, started)
    if outcome.diverged_at is not None:
        shard = placement.shard(outcome.state)
        for cell in run.cells:
            if fork_step(cell) in segment.forks and fork_step(cell) >= outcome.diverged_at:
                result = diverged_outcome(cell, store, outcome.state, shard)
                results.write_rows(STEPS, cell.trial_id, outcome.state.rows)
                results.write_rows(TRIALS, cell.trial_id, [trial_bookkeeping(cell, result.row, placement.device)])
                statuses[cell.trial_id] = result.status
    return statuses


def branch_task(
    cell_config: dict[str, Any], fork: int, stable_id: str, results_uri: str, probe_queue: str | None
) -> dict[str, str]:
    """Train one cell's cooldown branch from its fork point (a Ray task); returns its status."""
    cell = TrialConfig.from_config(cell_config)
    work = partial(_train_branch, cell, fork, stable_id, results_uri, probe_queue)
    return processes_for(cell.resources).run(cell, results_uri, segment_id(cell.trial_id, fork, cell.steps), work)


def _train_branch(
    cell: TrialConfig,
    fork: int,
    stable_id: str,
    results_uri: str,
    probe_queue: str | None,
    placement: Placement,
    store: TokenStore,
) -> dict[str, str]:
    """`branch_task`'s training. It probes the steps after its fork point (the stable run probed the ones before)."""
    from orchestrator.probes import probe_hook
    from orchestrator.trainable import train_and_record

    results = ResultsDir(results_uri)
    started = time.perf_counter()
    state = branch_state(cell, stable_states(results, cell), fork, store.vocab_size, placement)
    curvature = cell.probes.curvature if cell.probes and probe_queue else None
    status = train_and_record(
        cell,
        results=results,
        store=store,
        state=state,
        placement=placement,
        report=_ignore,
        save_and_report=_ignore,
        probe_every=curvature.every if curvature else 0,
        on_probe=probe_hook(cell, results, curvature, probe_queue) if curvature else None,
    )
    if placement.main:
        _record(results, cell, cell.trial_id, stable_id, fork, cell.steps, status, started)
    return {cell.trial_id: status}


def _ignore(*_: Any) -> None:
    """Branches report nothing to Tune, and save no mid-branch checkpoint: a killed branch reruns from its fork."""


def _record(
    results: ResultsDir,
    trial: TrialConfig,
    cell: str | None,
    stable_id: str,
    start: int,
    end: int,
    status: str,
    started: float,
) -> None:
    name = segment_id(cell or stable_id, start, end)
    results.write_rows(
        SEGMENTS,
        name,
        [
            {
                "segment_id": name,
                "study": trial.study,
                "kind": "stable" if cell is None else "cooldown",
                "stable_id": stable_id,
                "trial_id": cell,
                "start_step": start,
                "end_step": end,
                "tokens": (end - start) * trial.batch_tokens,
                "status": status,
                "wall_s": time.perf_counter() - started,
                "finished_at": datetime.now(timezone.utc).replace(microsecond=0),
            }
        ],
    )


# ---------------------------------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class _Work:
    """One task in flight: a stretch of a stable run, or a cell's branch."""

    run: StableRun
    segment: Segment | None = None
    cell: TrialConfig | None = None

    @property
    def trial(self) -> TrialConfig:
        """The trial whose schedule it trains: the cell's, or the stable run's longest cell's."""
        return self.cell or self.run.longest

    @property
    def span(self) -> tuple[str, int, int]:
        """Whose steps it trains, from and to: (trial id, fork, steps) of a branch, (stable id, start, end) of a
        stretch."""
        if self.cell is not None:
            return self.cell.trial_id, fork_step(self.cell), self.cell.steps
        assert self.segment is not None
        return self.run.stable_id, self.segment.start, self.segment.end

    @property
    def key(self) -> str:
        """Its key as a piece of work on the progress line, as its segments row names it."""
        return segment_id(*self.span)

    def piece(self, per_step: dict[str, float]) -> Piece:
        """It as a piece of work for the ETA: its model size, tokens and FLOPs (steps × the trial's FLOPs per step)."""
        _, start, end = self.span
        trial = self.trial
        tokens = (end - start) * trial.batch_tokens
        return Piece(trial.shape.label, tokens, (end - start) * per_step[trial.trial_id])


class _Schedule:
    """What is left of a set of stable runs: cells waiting for a fork state, branches ready, stretches to train."""

    def __init__(self, units: list[StableRun], results: ResultsDir) -> None:
        self.results = results
        self.waiting: dict[str, dict[int, list[TrialConfig]]] = {}
        self.ready: deque[tuple[StableRun, TrialConfig, int]] = deque()
        self.segments: deque[tuple[StableRun, Segment]] = deque()
        for run in units:
            self.waiting[run.stable_id] = {}
            for cell in run.cells:
                self.waiting[run.stable_id].setdefault(fork_step(cell), []).append(cell)
            self.replan(run, list(self.waiting[run.stable_id]))

    def retained(self, run: StableRun) -> list[int]:
        return stable_states(self.results, run.longest).steps()

    def collect(self, run: StableRun) -> list[int]:
        """Move the cells whose fork state is now on disk to the ready branches; returns the forks still missing."""
        have = {0, *self.retained(run)}
        waiting = self.waiting[run.stable_id]
        for fork in [f for f in waiting if f in have]:
            self.ready.extend((run, cell, fork) for cell in waiting.pop(fork))
        return list(waiting)

    def replan(self, run: StableRun, forks: list[int]) -> None:
        """Queue the stretches that produce `forks` (those still missing) from the states on disk."""
        missing = set(self.collect(run)) & set(forks)
        self.segments.extend((run, s) for s in plan_segments(missing, self.retained(run)))

    def wait_for(self, run: StableRun, cells: list[TrialConfig]) -> None:
        """Wait again for the fork states of `cells` (their stretch failed) and plan it anew from the disk."""
        for cell in cells:
            self.waiting[run.stable_id].setdefault(fork_step(cell), []).append(cell)
        self.replan(run, [fork_step(cell) for cell in cells])

    def drop(self, run: StableRun, forks: tuple[int, ...]) -> list[TrialConfig]:
        """Stop waiting for `forks` of `run`; returns the cells that were waiting for them."""
        waiting = self.waiting[run.stable_id]
        return [cell for fork in forks for cell in waiting.pop(fork, [])]

    def settle(self, work: _Work, *, ok: bool, again: bool, statuses: dict[str, str]) -> None:
        """Account for a task that ended (`ok`, or failed and may run `again`): a failed branch is queued again or
        counted failed; after a stretch, its cells whose fork state is on disk branch, those its task decided
        (diverged before their fork) are in `statuses`, and the rest wait for a new plan or are counted failed."""
        if work.cell is not None:
            if again:
                self.ready.append((work.run, work.cell, fork_step(work.cell)))
            elif not ok:
                statuses[work.cell.trial_id] = "failed"
            return
        assert work.segment is not None
        missing = tuple(f for f in self.collect(work.run) if f in work.segment.forks)
        stranded = [cell for cell in self.drop(work.run, missing) if cell.trial_id not in statuses]
        if stranded and again:
            self.wait_for(work.run, stranded)
        else:
            statuses.update({cell.trial_id: "failed" for cell in stranded})

    def in_flight(self, works: Iterable[_Work]) -> int:
        """Cells being trained: a running branch's, and those waiting for a running stretch's fork states."""
        count = 0
        for work in works:
            if work.segment is None:
                count += 1
            else:
                count += sum(len(self.waiting[work.run.stable_id].get(f, [])) for f in work.segment.forks)
        return count


class BranchRunner:
    """Runs ``StableRun`` units (module docstring); checks and plans them as the trials they are."""

    noun = "trials"
    trials = TrialRunner()

    def resources(self, spec: StudyBase, units: list[StableRun]) -> dict[str, float]:
        return self.trials.resources(spec, _cells(units))

    def prepare(
        self, spec: StudyBase, units: list[StableRun], *, results: ResultsDir, say: Callable[[str], None]
    ) -> None:
        cells = _cells(units)
        if not results.is_local:
            raise SpecError(
                f"train.branching: cooldown branches do not support a results location that is not a mounted path "
                f"({results.uri}) yet; set train.branching: false to train every cell from scratch"
            )
        self.trials.prepare(spec, cells, results=results, say=say)

    def execute(
        self,
        spec: StudyBase,
        units: list[StableRun],
        *,
        results: ResultsDir,
        max_concurrent: int | None,
        stream: TextIO,
    ) -> None:
        import ray

        cells = _cells(units)
        res = cells[0].resources
        options = {**processes_for(res).options(res), "max_retries": 0}
        segment_remote = ray.remote(segment_task).options(**options)
        branch_remote = ray.remote(branch_task).options(**options)
        # as many units as the cluster holds by CPUs and GPUs (a Ray Train run that waits for its workers times out)
        limit = max_concurrent or res.max_concurrent or distributed_slots(res)
        probed = cells[0].probes is not None and cells[0].probes.curvature is not None
        queue, queue_name = start_queue() if probed else (None, None)
        # each task is a piece of work for the ETA, keyed as its segments row
        per_step = {p.trial.trial_id: p.flops / max(1, p.steps) for p in plan(cells, {}, _vocab(cells))}
        schedule = _Schedule(units, results)
        planned = [_Work(run, segment=segment) for run, segment in schedule.segments] + [
            _Work(unit, cell=cell) for unit in units for cell in unit.cells
        ]
        pieces = {w.key: w.piece(per_step) for w in planned}
        progress = Progress(spec.name, len(cells), noun=self.noun, work=pieces, stream=stream)
        ended: dict[str, bool] = {}
        running: dict[Any, _Work] = {}
        failures: dict[str, int] = {}
        statuses: dict[str, str] = {}

        def submit() -> None:
            while len(running) < limit and (schedule.ready or schedule.segments):
                if schedule.ready:
                    run, cell, fork = schedule.ready.popleft()
                    ref = branch_remote.remote(cell.to_config(), fork, run.stable_id, results.uri, queue_name)
                    running[ref] = _Work(run, cell=cell)
                else:
                    run, segment = schedule.segments.popleft()
                    ref = segment_remote.remote(
                        run.to_config(), segment.start, list(segment.forks), results.uri, queue_name
                    )
                    running[ref] = _Work(run, segment=segment)

        def failed(work: _Work, err: Exception) -> bool:
            """Report a failed task; True when it may run again."""
            owner = work.span[0]
            failures[owner] = failures.get(owner, 0) + 1
            again = failures[owner] <= res.retries
            what = f"{owner} failed ({str(err).strip().splitlines()[-1]})"
            print(f"[{spec.name}] {what}{'; retrying' if again else ''}", file=stream, flush=True)
            return again

        submit()
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            # one look at the disk per stable run with a stretch in flight: its new fork states become branches
            for run in {w.run.stable_id: w.run for w in running.values() if w.segment is not None}.values():
                schedule.collect(run)
            for ref in done:
                work = running.pop(ref)
                try:
                    statuses.update(ray.get(ref))
                    ok, again = True, False
                except ray.exceptions.RayError as err:
                    ok = False
                    again = failed(work, err)
                ended[work.key] = ok  # a failed stretch is planned anew (other keys), a failed branch runs again
                schedule.settle(work, ok=ok, again=again, statuses=statuses)
            submit()
            progress.update(
                statuses=statuses,
                running=schedule.in_flight(running.values()),
                in_flight=dict.fromkeys(w.key for w in running.values()),
                ended=ended,
            )
        progress.close()
        if queue is not None:
            finish_queue(queue, spec.name, stream)

    def plan_text(self, spec: StudyBase, units: list[StableRun], statuses: dict[str, str]) -> str:
        cells = _cells(units)
        table = self.trials.plan_text(spec, cells, statuses)
        results = ResultsDir.at(spec.results_path)
        whole = token_budget(units)
        finished = {i for i, status in statuses.items() if status in FINISHED}
        left = [run for unit in units if (run := unit.pending(finished))]
        on_disk = {run.stable_id: stable_states(results, run.longest).steps() for run in left if results.is_local}
        to_run = token_budget(left, on_disk)
        return "\n".join(
            [
                table,
                f"with cooldown branches: {whole.branched:,} training tokens ({whole.stable:,} in "
                f"{len(units)} stable run(s) + {whole.cooldown:,} in {len(cells)} cooldowns) against "
                f"{whole.separate:,} as separate trials ({whole.branched / whole.separate:.2f}×)",
                f"left to train: {to_run.branched:,} tokens ({to_run.stable:,} stable + {to_run.cooldown:,} "
                f"cooldown), using the states already in {results.path(STATES)}",
            ]
        )


def _vocab(cells: list[TrialConfig]) -> int:
    return prepare_tokens(cells[0].data).vocab_size


def _cells(units: list[StableRun]) -> list[TrialConfig]:
    return [cell for unit in units for cell in unit.cells]

"""Training a stable run and its cooldown branches (the plan is `sweeps.branching`).

A stable run trains with the schedule of its longest cell (``StableRun.longest``): before any cell's decay starts,
every cell's ``wsd`` learning rate and batches are the same. :func:`run_segment` trains one stretch of it
(`sweeps.branching.Segment`) and saves the whole training state at each fork point into :class:`StableStates`; a
branch (:func:`branch_state`) loads the state of its cell's fork point, takes the logged rows as its own, and trains
on with the cell's own schedule (`models.train.train`), so its rows are those of a separate trial of that cell.

One process or several: everything here takes a `models.placement.Placement`, which makes, saves and loads the
states and says which share of every batch this process trains. In a single-process study a state is one
``state.pt``; in a multi-worker study (``resources.workers`` > 1) every rank runs these same functions, the states are
sharded (``torch.distributed.checkpoint``: one safetensors file per rank plus ``train_state.json``) and rank 0 alone
writes shared files. A state marks itself complete by its placement's ``marker`` file.

Which states are kept, and what they cost. The state at every cell's fork point is kept after its branch has run:
a grown tokens axis forks from it (a smaller D) or continues from the last one (a larger D) instead of retraining.
With ``train.checkpoint_interval`` a segment also saves a state every that many steps, so a killed stable run resumes
from the last one; it keeps only the latest such state and removes it when the segment ends. Such a state is marked
``periodic``, so that one left behind by a kill between saving the next and removing it is removed by the segment that
resumes. One state holds the
weights and both AdamW moments in float32 (12 bytes per parameter; sharded, the ranks' files hold that together, plus
a few kB of safetensors headers each) plus the logged rows: per stable run, the grid's number of D values times that
(a 1x64 laptop model, 115k parameters: 1.4 MB; a 1B model: 12 GB).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.data import TokenStore
from models.placement import Placement
from models.state import TrainState
from models.train import Report, Shard, TrialOutcome, advance, summary_row
from sweeps.branching import Segment, StableRun
from sweeps.grid import TrialConfig


@dataclass(frozen=True)
class StableStates:
    """The saved states of one stable run: ``<root>/step-<k>/``, complete once its `marker` file exists (the
    placement's that wrote it: `models.placement`)."""

    root: Path
    marker: str
    PERIODIC = "periodic"
    """The file that marks a state as a periodic checkpoint (not a fork point: removed once a later state exists)."""

    def path(self, step: int) -> Path:
        return self.root / f"step-{step}"

    def steps(self) -> list[int]:
        """Steps with a complete saved state, ascending."""
        found = (p.parent.name.removeprefix("step-") for p in self.root.glob(f"step-*/{self.marker}"))
        return sorted(int(step) for step in found if step.isdigit())

    def periodic_steps(self) -> list[int]:
        """The steps of the complete states that are periodic checkpoints, ascending."""
        return [step for step in self.steps() if (self.path(step) / self.PERIODIC).exists()]

    def save(self, state: TrainState, placement: Placement, *, periodic: bool = False) -> None:
        if periodic and placement.main:  # marked before it is complete: a kill while saving leaves no unmarked one
            self.path(state.step).mkdir(parents=True, exist_ok=True)
            (self.path(state.step) / self.PERIODIC).touch()
        placement.save(state, self.path(state.step))

    def load(self, trial: TrialConfig, vocab_size: int, step: int, placement: Placement) -> TrainState:
        """The state at `step` (0: the trial's fresh init), ready to train."""
        if step == 0:
            return placement.fresh(trial, vocab_size)
        return placement.load(trial, vocab_size, self.path(step))

    def remove(self, step: int, placement: Placement) -> None:
        placement.remove(self.path(step))


@dataclass(frozen=True)
class SegmentOutcome:
    """How a segment ended: every fork saved (``diverged_at`` None), or the step whose loss was not finite, with the
    state there (its rows end at that step)."""

    diverged_at: int | None
    state: TrainState


def run_segment(
    run: StableRun,
    segment: Segment,
    store: TokenStore,
    states: StableStates,
    *,
    placement: Placement,
    probe_every: int = 0,
    on_probe: Callable[[TrainState], None] | None = None,
) -> SegmentOutcome:
    """Train `segment` of `run`'s stable run, saving the state at each of its forks. With `probe_every`, `on_probe`
    gets the state after every `probe_every`-th step (as `models.train.train` hands a trial's)."""
    trial = run.longest
    state = states.load(trial, store.vocab_size, segment.start, placement)
    shard = placement.shard(state)
    retained = set(states.steps())
    periodic = states.periodic_steps()
    # the periodic checkpoint of this segment, at most one (a resumed segment starts from one)
    kept = [segment.start] if segment.start in periodic else []
    if kept:  # a kill came between saving a later checkpoint and removing this one: the older ones of this stretch,
        # above the fork state it started from (those below are a stretch running beside it)
        origin = max((step for step in retained if step < segment.start and step not in periodic), default=0)
        for stale in (step for step in periodic if origin < step < segment.start):
            states.remove(stale, placement)
            retained.discard(stale)

    def on_report(report: Report) -> None:
        step = report.state.step
        if report.probe and on_probe is not None:
            on_probe(report.state)
        # a state already on disk (a fork point of a finished cell) is not a periodic checkpoint to prune
        if report.checkpoint and step not in run.fork_steps and step not in retained:
            states.save(report.state, placement, periodic=True)
            for old in kept:
                states.remove(old, placement)
            kept[:] = [step]

    for fork in segment.forks:
        diverged = advance(
            trial,
            store,
            state,
            until=fork,
            device=placement.device,
            on_report=on_report,
            shard=shard,
            probe_every=probe_every,
        )
        if diverged:
            return SegmentOutcome(state.step, state)
        states.save(state, placement)
    for step in kept:
        states.remove(step, placement)
    return SegmentOutcome(None, state)


def diverged_outcome(cell: TrialConfig, store: TokenStore, state: TrainState, shard: Shard) -> TrialOutcome:
    """The outcome of a cell whose stable run diverged before its fork point: what a separate trial of the cell,
    which trains the same steps (on `shard` of every batch), would have recorded."""
    own = as_cell(cell, state)
    error = f"non-finite training loss at step {own.step}"
    row = summary_row(cell, store, own, "diverged", error, own.elapsed_offset, shard)
    return TrialOutcome("diverged", error, row)


def branch_state(
    cell: TrialConfig, states: StableStates, fork: int, vocab_size: int, placement: Placement
) -> TrainState:
    """The state a cooldown branch of `cell` starts from: the stable run's state at `fork`, its rows the cell's."""
    return as_cell(cell, states.load(cell, vocab_size, fork, placement))


def as_cell(cell: TrialConfig, state: TrainState) -> TrainState:
    """`state` with its logged rows relabelled as `cell`'s (the stable run logs under its longest cell's id)."""
    state.rows = [{**row, "trial_id": cell.trial_id} for row in state.rows]
    return state

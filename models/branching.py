"""Training a stable run and its cooldown branches (the plan is `sweeps.branching`).

A stable run trains with the schedule of its longest cell (``StableRun.longest``): before any cell's decay starts,
every cell's ``wsd`` learning rate and batches are the same. :func:`run_segment` trains one stretch of it
(`sweeps.branching.Segment`) and saves the whole training state at each fork point into :class:`StableStates`; a
branch (:func:`branch_state`) loads the state of its cell's fork point, takes the logged rows as its own, and trains
on with the cell's own schedule (`models.train.train`), so its rows are those of a separate trial of that cell.

Which states are kept, and what they cost. The state at every cell's fork point is kept after its branch has run:
a grown tokens axis forks from it (a smaller D) or continues from the last one (a larger D) instead of retraining.
With ``train.checkpoint_interval`` a segment also saves a state every that many steps, so a killed stable run resumes
from the last one; it keeps only the latest such state and removes it when the segment ends. One state holds the
weights and both AdamW moments in float32 (12 bytes per parameter) plus the logged rows: per stable run, the grid's
number of D values times that (a 1x64 laptop model, 115k parameters: 1.4 MB; a 1B model: 12 GB).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint import STATE_FILE, load_state, save_state
from models.data import TokenStore
from models.state import TrainState, new_state, ready_for
from models.train import Report, Shard, TrialOutcome, advance, summary_row
from sweeps.branching import Segment, StableRun
from sweeps.grid import TrialConfig


@dataclass(frozen=True)
class StableStates:
    """The saved states of one stable run: ``<root>/step-<k>/state.pt``, complete once ``state.pt`` exists (it is
    written under a temporary name and renamed)."""

    root: Path

    def path(self, step: int) -> Path:
        return self.root / f"step-{step}"

    def steps(self) -> list[int]:
        """Steps with a complete saved state, ascending."""
        found = (p.parent.name.removeprefix("step-") for p in self.root.glob(f"step-*/{STATE_FILE}"))
        return sorted(int(step) for step in found if step.isdigit())

    def save(self, state: TrainState) -> None:
        save_state(state, self.path(state.step))

    def load(self, trial: TrialConfig, vocab_size: int, step: int, device: torch.device) -> TrainState:
        """The state at `step` (0: the trial's fresh init)."""
        if step == 0:
            return new_state(trial, vocab_size, device)
        return load_state(trial, vocab_size, self.path(step), device)

    def remove(self, step: int) -> None:
        shutil.rmtree(self.path(step), ignore_errors=True)


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
    device: torch.device,
    probe_every: int = 0,
    on_probe: Callable[[TrainState], None] | None = None,
) -> SegmentOutcome:
    """Train `segment` of `run`'s stable run, saving the state at each of its forks. With `probe_every`, `on_probe`
    gets the state after every `probe_every`-th step (as `models.train.train` hands a trial's)."""
    trial = run.longest
    state = states.load(trial, store.vocab_size, segment.start, device)
    ready_for(state, device, compile_step=trial.train.compile)
    # the periodic checkpoint of this segment, at most one (a resumed segment starts from one)
    kept = [segment.start] if segment.start and segment.start not in run.fork_steps else []
    retained = set(states.steps())

    def on_report(report: Report) -> None:
        step = report.state.step
        if report.probe and on_probe is not None:
            on_probe(report.state)
        # a state already on disk (a fork point of a finished cell) is not a periodic checkpoint to prune
        if report.checkpoint and step not in run.fork_steps and step not in retained:
            states.save(report.state)
            for old in kept:
                states.remove(old)
            kept[:] = [step]

    for fork in segment.forks:
        if advance(trial, store, state, until=fork, device=device, on_report=on_report, probe_every=probe_every):
            return SegmentOutcome(state.step, state)
        states.save(state)
    for step in kept:
        states.remove(step)
    return SegmentOutcome(None, state)


def diverged_outcome(cell: TrialConfig, store: TokenStore, state: TrainState) -> TrialOutcome:
    """The outcome of a cell whose stable run diverged before its fork point: what a separate trial of the cell,
    which trains the same steps, would have recorded."""
    own = as_cell(cell, state)
    error = f"non-finite training loss at step {own.step}"
    row = summary_row(cell, store, own, "diverged", error, own.elapsed_offset, Shard())
    return TrialOutcome("diverged", error, row)


def branch_state(
    cell: TrialConfig, states: StableStates, fork: int, vocab_size: int, device: torch.device
) -> TrainState:
    """The state a cooldown branch of `cell` starts from: the stable run's state at `fork`, its rows the cell's."""
    return as_cell(cell, states.load(cell, vocab_size, fork, device))


def as_cell(cell: TrialConfig, state: TrainState) -> TrainState:
    """`state` with its logged rows relabelled as `cell`'s (the stable run logs under its longest cell's id)."""
    state.rows = [{**row, "trial_id": cell.trial_id} for row in state.rows]
    return state

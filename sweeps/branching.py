"""Cooldown branches: under a ``wsd`` schedule, one stable run per setting and one cooldown branch per D.

A ``wsd`` learning rate (`models.train.lr_at`) is the same for every D until a cell's decay starts, and the batch of
step k does not depend on D (`models.batches`). So the cells of a grid that differ only in D share their training up
to each one's ``decay_start``: one *stable run* trains the shared prefix once, saves its state at every cell's fork
point, and each cell is a *cooldown branch* from its fork point to its own D. A branch writes exactly the trials and
steps rows a separate trial of its cell would (under the cell's own trial id), so nothing downstream knows.

This module is the plan, without torch: :class:`StableRun` (the unit of work: the cells that share a stable run) and
:func:`plan_segments` (which stretches of the stable run must be trained, given the states already on disk). The
training is `models.branching`; running it on Ray is `orchestrator.branching`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from sweeps.grid import TrialConfig, trials_of
from sweeps.spec import LMStudyBody


@dataclass(frozen=True)
class StableRun:
    """The cells of a ``wsd`` grid that differ only in D, in increasing D: one unit of work (a stable run and a
    cooldown branch per cell). Its ids are the cells' trial ids; "finished" is read in the trials table."""

    TABLE: ClassVar[str] = "trials"

    cells: tuple[TrialConfig, ...]

    @property
    def stable_id(self) -> str:
        return self.cells[0].stable_id

    @property
    def longest(self) -> TrialConfig:
        """The cell of the largest D: the stable run trains with its schedule (the same as every cell's before its
        decay starts)."""
        return self.cells[-1]

    @property
    def fork_steps(self) -> frozenset[int]:
        """The fork points of every cell (each cell's ``decay_start``)."""
        return frozenset(fork_step(cell) for cell in self.cells)

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return tuple(cell.trial_id for cell in self.cells)

    def pending(self, finished: set[str]) -> StableRun | None:
        """The cells without a finished row (None: none left)."""
        left = tuple(cell for cell in self.cells if cell.trial_id not in finished)
        return StableRun(left) if left else None

    def to_config(self) -> dict[str, Any]:
        return {"cells": [cell.to_config() for cell in self.cells]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StableRun:
        return cls(tuple(TrialConfig.from_config(cell) for cell in config["cells"]))


def fork_step(cell: TrialConfig) -> int:
    """Where the cell's cooldown branch leaves the stable run: the first step of its decay."""
    start = cell.decay_start
    if start is None:
        raise ValueError(f"trial {cell.trial_id} has schedule {cell.train.schedule}; only wsd trials branch")
    return start


@dataclass(frozen=True)
class Segment:
    """A stretch of a stable run: from the state at step ``start`` (0: a fresh init) through ``forks`` (ascending),
    saving the state at each; it ends at the last fork."""

    start: int
    forks: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.forks[-1]

    @property
    def steps(self) -> int:
        return self.end - self.start


def plan_segments(needed: Iterable[int], retained: Iterable[int]) -> list[Segment]:
    """The stretches of a stable run to train so that a state exists at every step of `needed`, given the steps of
    the states already `retained` (a fresh init at step 0 always is).

    Each needed fork is reached from the nearest state at or below it: the retained state closest to it, or the
    previous needed fork when that is closer (then the same segment goes on). Segments are independent and can run
    side by side; together they train the fewest steps.
    """
    have = sorted({0, *retained})
    segments: list[Segment] = []
    for fork in sorted(set(needed) - set(have)):
        nearest = max(step for step in have if step <= fork)
        if segments and segments[-1].end >= nearest:
            last = segments.pop()
            segments.append(Segment(last.start, (*last.forks, fork)))
        else:
            segments.append(Segment(nearest, (fork,)))
    return segments


def lm_units(body: LMStudyBody, study: str) -> list[TrialConfig] | list[StableRun]:
    """The units of a language-model study: its trials, or under ``wsd`` with branching the trials grouped into
    stable runs (cells that differ only in D), in the order their first cell appears."""
    trials = trials_of(body, study)
    if body.train.schedule != "wsd" or not body.train.branching:
        return trials
    groups: dict[str, list[TrialConfig]] = {}
    for trial in trials:
        groups.setdefault(trial.stable_id, []).append(trial)
    return [StableRun(tuple(sorted(cells, key=lambda c: c.tokens))) for cells in groups.values()]


@dataclass(frozen=True)
class TokenBudget:
    """Training tokens of a set of cells: separately, and with branching (stable prefixes plus cooldowns)."""

    separate: int
    stable: int
    cooldown: int

    @property
    def branched(self) -> int:
        return self.stable + self.cooldown


def token_budget(runs: Iterable[StableRun], retained: dict[str, Iterable[int]] | None = None) -> TokenBudget:
    """The tokens `runs` train as separate trials and with branching, given states already `retained` (steps by
    stable id; none by default)."""
    retained = retained or {}
    separate = stable = cooldown = 0
    for run in runs:
        per_step = run.longest.batch_tokens
        separate += sum(cell.steps for cell in run.cells) * per_step
        stable += sum(s.steps for s in plan_segments(run.fork_steps, retained.get(run.stable_id, ()))) * per_step
        cooldown += sum(cell.steps - fork_step(cell) for cell in run.cells) * per_step
    return TokenBudget(separate, stable, cooldown)

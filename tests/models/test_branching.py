"""Cooldown branches without Ray: a branch from the stable run writes the rows a from-scratch ``wsd`` trial of its
cell writes, and a stable run trained in stretches (a resume) is the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.branching import StableStates, branch_state, diverged_outcome, run_segment
from models.data import prepare_tokens
from models.placement import OneProcess
from models.state import new_state
from models.train import advance, train
from sweeps.branching import Segment, StableRun, fork_step, lm_units
from sweeps.studies import parse_spec

CPU = torch.device("cpu")
HERE = OneProcess(CPU)
BATCH_TOKENS = 8 * 32
LOSSES = ("final_eval_loss", "eval_loss_se", "min_eval_loss", "final_train_loss")


@pytest.fixture
def run_and_store(tiny_study, tmp_path: Path) -> tuple[StableRun, object]:
    spec = parse_spec(
        tiny_study(
            "branching",
            tmp_path / "r",
            grid={"tokens": [20 * BATCH_TOKENS, 45 * BATCH_TOKENS, 90 * BATCH_TOKENS], "init": [{"rate": 0.5}]},
            train={"batch_size": 8, "lr": 0.01, "warmup_steps": 8, "eval_interval": 10, "schedule": "wsd"},
        )
    )
    (run,) = lm_units(spec, spec.name)
    return run, prepare_tokens(run.longest.data, min_train_tokens=run.longest.tokens)


def comparable(rows: list[dict]) -> list[tuple]:
    """Steps rows without their timing (a branch's clock includes its stable run's), exactly (a non-finite loss
    equals itself)."""
    return [tuple(repr(v) for k, v in sorted(r.items()) if k != "elapsed_s") for r in rows]


def test_a_branch_writes_what_a_from_scratch_wsd_trial_of_its_cell_writes(run_and_store, tmp_path: Path) -> None:
    run, store = run_and_store
    states = StableStates(tmp_path / "states", HERE.marker)
    forks = tuple(sorted(run.fork_steps))
    assert forks == (16, 36, 72)
    assert run_segment(run, Segment(0, forks), store, states, placement=HERE).diverged_at is None
    assert states.steps() == list(forks)
    for cell in run.cells:
        forked = branch_state(cell, states, fork_step(cell), store.vocab_size, HERE)
        branch = train(cell, store, state=forked)
        fresh = new_state(cell, store.vocab_size, CPU)
        scratch = train(cell, store, state=fresh)
        assert comparable(forked.rows) == comparable(fresh.rows)  # every steps row: lr, losses, grad norms, ids
        for column in LOSSES:
            assert branch.row[column] == pytest.approx(scratch.row[column], abs=1e-5), column
        assert (branch.row["tokens"], branch.row["steps"], branch.row["trial_id"]) == (
            scratch.row["tokens"],
            scratch.row["steps"],
            cell.trial_id,
        )


def test_a_stable_run_in_stretches_is_the_uninterrupted_one(run_and_store, tmp_path: Path) -> None:
    run, store = run_and_store
    whole = StableStates(tmp_path / "whole", HERE.marker)
    run_segment(run, Segment(0, (16, 36, 72)), store, whole, placement=HERE)
    pieces = StableStates(tmp_path / "pieces", HERE.marker)
    run_segment(run, Segment(0, (16,)), store, pieces, placement=HERE)
    run_segment(run, Segment(16, (36, 72)), store, pieces, placement=HERE)
    a = whole.load(run.longest, store.vocab_size, 72, HERE)
    b = pieces.load(run.longest, store.vocab_size, 72, HERE)
    assert comparable(a.rows) == comparable(b.rows)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_a_resumed_stretch_removes_the_periodic_checkpoint_a_kill_left_behind(run_and_store, tmp_path: Path) -> None:
    # a stretch killed after saving its checkpoint at 30 but before removing the one at 20 leaves both; the stretch
    # that resumes from 30 removes the one at 20 and, once it ends, its own: only fork states remain
    run, store = run_and_store
    states = StableStates(tmp_path / "states", HERE.marker)
    run_segment(run, Segment(0, (16,)), store, states, placement=HERE)
    state = states.load(run.longest, store.vocab_size, 16, HERE)
    for step in (20, 30):
        advance(run.longest, store, state, until=step, device=CPU)
        states.save(state, HERE, periodic=True)
    assert (states.steps(), states.periodic_steps()) == ([16, 20, 30], [20, 30])
    run_segment(run, Segment(30, (36, 72)), store, states, placement=HERE)
    assert (states.steps(), states.periodic_steps()) == ([16, 36, 72], [])


def test_a_stretch_from_a_finished_cells_fork_state_keeps_that_state(run_and_store, tmp_path: Path) -> None:
    # a rerun plans only the unfinished cells: the fork state at 16 belongs to a finished cell, not to the rerun's
    # forks, and stays for a grown axis to fork from (the module docstring)
    run, store = run_and_store
    states = StableStates(tmp_path / "states", HERE.marker)
    run_segment(run, Segment(0, (16,)), store, states, placement=HERE)
    finished = next(cell for cell in run.cells if fork_step(cell) == 16)
    rest = run.pending({finished.trial_id})
    assert rest is not None and sorted(rest.fork_steps) == [36, 72]
    run_segment(rest, Segment(16, (36, 72)), store, states, placement=HERE)
    assert (states.steps(), states.periodic_steps()) == ([16, 36, 72], [])


def test_a_stable_run_that_diverges_ends_each_later_cell_as_its_separate_trial_would(tiny_study, tmp_path) -> None:
    spec = parse_spec(
        tiny_study(
            "diverging",
            tmp_path / "r",
            grid={"tokens": [20 * BATCH_TOKENS, 45 * BATCH_TOKENS], "init": [{"rate": 0.5}]},
            train={"batch_size": 8, "lr": 1e30, "warmup_steps": 0, "eval_interval": 10, "schedule": "wsd"},
        )
    )
    (run,) = lm_units(spec, spec.name)
    store = prepare_tokens(run.longest.data, min_train_tokens=run.longest.tokens)
    states = StableStates(tmp_path / "states", HERE.marker)
    outcome = run_segment(run, Segment(0, tuple(sorted(run.fork_steps))), store, states, placement=HERE)
    assert outcome.diverged_at is not None and outcome.diverged_at <= min(run.fork_steps)
    assert states.steps() == []  # nothing to branch from
    for cell in run.cells:
        mine = diverged_outcome(cell, store, outcome.state, HERE.shard(outcome.state))
        fresh = new_state(cell, store.vocab_size, CPU)
        scratch = train(cell, store, state=fresh)
        assert mine.status == scratch.status == "diverged" and mine.error == scratch.error
        assert (mine.row["steps"], mine.row["trial_id"]) == (scratch.row["steps"], cell.trial_id)
        assert comparable(outcome.state.rows) == comparable(fresh.rows)  # relabelled as this cell's

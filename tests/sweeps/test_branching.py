"""The plan of cooldown branches, without torch: fork points, which stretches of a stable run to train, grouping, the
token budget, and the ``wsd`` settings of a spec."""

from __future__ import annotations

import pytest

from sweeps.base import SpecError
from sweeps.branching import Segment, StableRun, fork_step, lm_units, plan_segments, token_budget
from sweeps.grid import trials_of
from sweeps.studies import parse_spec

BATCH_TOKENS = 16 * 64


def wsd_spec(tokens: list[int], **train: object) -> dict:
    return {
        "name": "wsd",
        "data": {"corpus": "synthetic", "synthetic": {"vocab_size": 128, "branching": 16}},
        "model": {"sizes": ["1x32", "2x32"], "head_dim": 16, "seq_len": 64},
        "grid": {"tokens": tokens, "init": [{"rate": 0.5}, {"std": 0.02}], "seed": [0]},
        "train": {"batch_size": 16, "schedule": "wsd", **train},
    }


def test_fork_point_is_the_first_step_of_the_decay() -> None:
    spec = parse_spec(wsd_spec([64 * BATCH_TOKENS, 10 * BATCH_TOKENS, 1 * BATCH_TOKENS]))
    forks = sorted({(t.steps, fork_step(t)) for t in trials_of(spec, spec.name)})
    # round(0.2 × steps) decay steps, at least one: 64 → 13 (51), 10 → 2 (8), 1 → 1 (0)
    assert forks == [(1, 0), (10, 8), (64, 51)]


@pytest.mark.parametrize(
    ("needed", "retained", "segments"),
    [
        ({13, 26, 51}, set(), [Segment(0, (13, 26, 51))]),  # a fresh study: one stretch through every fork
        ({13}, {13, 51}, []),  # the fork state is there: only the branch runs
        ({102}, {13, 26, 51}, [Segment(51, (102,))]),  # a larger D continues from the last state
        ({19}, {13, 26, 51}, [Segment(13, (19,))]),  # a smaller D forks from the nearest state below it
        ({5}, {13, 26}, [Segment(0, (5,))]),  # ... or retrains only the prefix
        ({5, 50}, {10, 40}, [Segment(0, (5,)), Segment(40, (50,))]),  # two short stretches beat one long one
        ({30, 35}, {10}, [Segment(10, (30, 35))]),
    ],
)
def test_plan_segments_trains_the_fewest_steps_from_the_states_on_disk(needed, retained, segments) -> None:
    assert plan_segments(needed, retained) == segments


def test_cells_that_differ_only_in_d_share_one_stable_run() -> None:
    raw = wsd_spec([16 * BATCH_TOKENS, 64 * BATCH_TOKENS, 32 * BATCH_TOKENS])
    spec = parse_spec(raw)
    units = lm_units(spec, spec.name)
    trials = trials_of(spec, spec.name)
    assert all(isinstance(u, StableRun) for u in units) and len(units) == 4  # 2 sizes × 2 inits
    assert sorted(i for u in units for i in u.unit_ids) == sorted(t.trial_id for t in trials)
    for unit in units:
        assert [c.steps for c in unit.cells] == [16, 32, 64]
        assert len({c.stable_id for c in unit.cells}) == 1
        assert {(c.shape, c.init) for c in unit.cells} == {(unit.longest.shape, unit.longest.init)}
    assert len({u.stable_id for u in units}) == 4
    # without branching the same cells are separate trials, with the same ids: branching is not in the identity
    separate = lm_units(parse_spec({**raw, "train": {**raw["train"], "branching": False}}), spec.name)
    assert [t.trial_id for t in separate] == [t.trial_id for t in trials]


def test_token_budget_is_the_longest_prefix_plus_every_cooldown() -> None:
    spec = parse_spec(wsd_spec([100 * BATCH_TOKENS, 200 * BATCH_TOKENS, 400 * BATCH_TOKENS]))
    units = lm_units(spec, spec.name)
    budget = token_budget(units)
    per_run_steps = 100 + 200 + 400
    assert budget.separate == 4 * per_run_steps * BATCH_TOKENS
    assert budget.stable == 4 * 320 * BATCH_TOKENS  # the prefix of the largest D, once
    assert budget.cooldown == 4 * (20 + 40 + 80) * BATCH_TOKENS
    assert budget.branched / budget.separate == pytest.approx((0.8 * 4 + 0.2 * 7) / 7)
    # with the largest fork state on disk only the cooldowns are left
    on_disk = {u.stable_id: [80, 160, 320] for u in units}
    assert token_budget(units, on_disk).stable == 0


def test_wsd_settings_belong_to_wsd_and_the_cosine_ids_do_not_move() -> None:
    with pytest.raises(SpecError, match=r"decay_fraction is a setting of schedule: wsd"):
        parse_spec({**wsd_spec([BATCH_TOKENS]), "train": {"schedule": "cosine", "decay_fraction": 0.3}})
    train = parse_spec(wsd_spec([BATCH_TOKENS])).train
    assert (train.decay_fraction, train.decay_shape, train.branching) == (0.2, "1-sqrt", True)
    cosine = wsd_spec([BATCH_TOKENS])
    cosine["train"] = {"batch_size": 16}
    wsd_ids = {t.trial_id for t in trials_of(parse_spec(wsd_spec([BATCH_TOKENS])), "wsd")}
    assert wsd_ids.isdisjoint(t.trial_id for t in trials_of(parse_spec(cosine), "wsd"))
    shorter_decay = parse_spec(wsd_spec([BATCH_TOKENS], decay_fraction=0.1))
    assert wsd_ids.isdisjoint(t.trial_id for t in trials_of(shorter_decay, "wsd"))
    # ... but the stable run does not depend on the decay: it is shared
    assert {t.stable_id for t in trials_of(shorter_decay, "wsd")} == {
        t.stable_id for t in trials_of(parse_spec(wsd_spec([BATCH_TOKENS])), "wsd")
    }

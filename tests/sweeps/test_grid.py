"""Grid expansion and trial identity: crossing, pairing, and ids that follow the semantic config only."""

from __future__ import annotations

from sweeps.grid import expand
from sweeps.spec import parse_spec

BASE = {
    "name": "g",
    "data": {"corpus": "synthetic"},
    "model": {"sizes": ["1x32", "2x32"], "head_dim": 16, "seq_len": 32},
    "grid": {
        "tokens": [4096, 8192],
        "init": [{"rate": 0.5}, {"std": 0.02}],
        "weight_decay": [0.0, 0.1],
        "seed": [0, 1],
    },
    "train": {"batch_size": 4},
}


def spec_with(**changes: object):
    raw = {**BASE, **changes}
    return parse_spec(raw)


def test_axes_are_crossed_with_sizes() -> None:
    trials = expand(spec_with())
    assert len(trials) == 2 * 2 * 2 * 2 * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    cells = {(t.size_label, t.tokens, t.init.label, t.weight_decay, t.seed) for t in trials}
    assert ("2x32", 8192, "std=0.02", 0.1, 1) in cells


def test_cases_pair_values_and_cross_the_rest() -> None:
    grid = {
        "tokens": [4096, 8192],
        "seed": [0],
        "cases": [{"init": {"rate": 1.0}, "weight_decay": 1.0}, {"init": {"std": 0.02}, "weight_decay": 0.1}],
    }
    trials = expand(spec_with(grid=grid))
    assert len(trials) == 2 * 2 * 2  # sizes × tokens × cases
    pairs = {(t.init.label, t.weight_decay) for t in trials}
    assert pairs == {("γ=1", 1.0), ("std=0.02", 0.1)}


def test_ids_ignore_resources_paths_and_name_but_follow_training_settings() -> None:
    base = {t.trial_id for t in expand(spec_with())}
    assert base == {
        t.trial_id
        for t in expand(spec_with(name="other", results="/elsewhere", resources={"cpus_per_trial": 2, "retries": 5}))
    }
    assert base == {t.trial_id for t in expand(spec_with(train={"batch_size": 4, "checkpoint_interval": 7}))}
    changed = {t.trial_id for t in expand(spec_with(train={"batch_size": 4, "lr": 1e-2}))}
    assert not base & changed


def test_extending_an_axis_keeps_old_ids() -> None:
    old = {t.trial_id for t in expand(spec_with())}
    grid = {**BASE["grid"], "tokens": [4096, 8192, 16384]}
    new = {t.trial_id for t in expand(spec_with(grid=grid))}
    assert old < new and len(new - old) == 2 * 2 * 2 * 2


def test_config_round_trip() -> None:
    from sweeps.grid import TrialConfig

    for trial in expand(spec_with()):
        again = TrialConfig.from_dict(trial.to_dict())
        assert again == trial and again.trial_id == trial.trial_id

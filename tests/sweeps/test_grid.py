"""Grid expansion and trial identity: crossing, pairing, and ids that follow the semantic config only."""

from __future__ import annotations

from sweeps.grid import expand
from sweeps.studies import parse_spec

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
    cells = {(t.shape.label, t.tokens, t.init.label, t.weight_decay, t.seed) for t in trials}
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
        again = TrialConfig.from_config(trial.to_config())
        assert again == trial and again.trial_id == trial.trial_id


def test_width_scaling_sets_each_sizes_lr_and_warmup() -> None:
    rule = {"reference_d_model": 32, "lr_exponent": -1.5, "warmup_exponent": 1.0}
    spec = spec_with(
        model={"sizes": ["2x16", "2x32", "2x64"], "head_dim": 16, "seq_len": 32},
        grid={"tokens": [4096], "lr": [0.01, 0.02]},
        train={"batch_size": 4, "warmup_steps": 10, "width_scaling": rule},
    )
    got = {(t.shape.d_model, round(t.lr, 12), t.train.warmup_steps) for t in expand(spec)}
    expected = {
        (d, round(base * (d / 32) ** -1.5, 12), round(10 * d / 32)) for d in (16, 32, 64) for base in (0.01, 0.02)
    }
    assert got == expected
    # A trial's id follows what it computes: the same lr and warmup given by hand give the same id.
    (scaled,) = [t for t in expand(spec) if t.shape.d_model == 64 and t.lr < 0.005]
    by_hand = spec_with(
        model={"sizes": ["2x64"], "head_dim": 16, "seq_len": 32},
        grid={"tokens": [4096], "lr": [0.01 * 2**-1.5]},
        train={"batch_size": 4, "warmup_steps": 20},
    )
    assert expand(by_hand)[0].trial_id == scaled.trial_id

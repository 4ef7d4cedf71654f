"""Recovery thresholds against transitions drawn by the test, and the exactly known answers under separation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import recovery_thresholds, thresholds_table

SAMPLE_SIZES = np.unique(np.round(np.geomspace(10, 1000, 13)).astype(int))


def _rows(success, *, target: str, seeds: int = 20, rank: int = 96, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "target": target,
            "student": "mf",
            "d": 10,
            "init_scale": 1e-3,
            "n": int(n),
            "seed": s,
            "recovered": bool(success(n, rng)),
            "model_rank_theory": rank,
        }
        for n in SAMPLE_SIZES
        for s in range(seeds)
    ]


def test_logistic_threshold_recovers_a_drawn_transition() -> None:
    rng = np.random.default_rng(4)
    true_n_star, slope = rng.uniform(60, 200), rng.uniform(3, 6)

    def success(n: int, r: np.random.Generator) -> bool:
        return r.random() < 1 / (1 + (n / true_n_star) ** -slope)

    (threshold,) = recovery_thresholds(pd.DataFrame(_rows(success, target="drawn", seed=5)), n_bootstrap=500)
    estimate = threshold.n_star_logistic
    assert estimate.low <= true_n_star <= estimate.high
    assert estimate.value == pytest.approx(true_n_star, rel=0.25)
    assert threshold.model_rank_theory == 96


def test_separated_outcomes_put_n_star_in_the_middle_of_the_gap() -> None:
    """All fail below 100, all succeed from 147: the empirical n* is 147 and the logistic one √(100·147)."""
    rows = _rows(lambda n, r: n >= 147, target="sharp")
    (threshold,) = recovery_thresholds(pd.DataFrame(rows), n_bootstrap=100)
    assert threshold.n_star_empirical.value == 147
    assert threshold.n_star_logistic.value == pytest.approx(np.sqrt(100 * 147), rel=1e-3)
    table = thresholds_table([threshold])
    assert table["ratio_to_theory"].iloc[0] == pytest.approx(np.sqrt(100 * 147) / 96, rel=1e-3)


def test_no_transition_gives_no_threshold() -> None:
    (threshold,) = recovery_thresholds(pd.DataFrame(_rows(lambda n, r: False, target="never")), n_bootstrap=50)
    assert np.isnan(threshold.n_star_logistic.value) and np.isnan(threshold.n_star_empirical.value)


def test_one_threshold_per_setting() -> None:
    rows = _rows(lambda n, r: n >= 46, target="a") + _rows(lambda n, r: n >= 464, target="b", rank=400)
    thresholds = recovery_thresholds(pd.DataFrame(rows), n_bootstrap=50)
    assert [t.keys["target"] for t in thresholds] == ["a", "b"]
    assert [t.n_star_empirical.value for t in thresholds] == [46, 464]

"""Recovery thresholds against transitions drawn by the test, the exactly known answers under separation, and the
report's account of the lifting check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import load, recovery_thresholds, thresholds_table
from analysis.report import build_sections

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


def test_the_report_states_the_measured_lifting_check(tmp_path, gen) -> None:
    """The embedding-principle section reports the extremes of what the runs recorded, read from the rows."""
    rows = [
        {
            **row,
            "task_id": f"t{i}",
            "study": "lifting",
            "lifting_output_change": [1e-15, 3e-14][i % 2],
            "lifting_grad_norm_shallow": 1e-6,
            "lifting_grad_norm_lifted": [1e-6, 2.5e-6][i % 2],
            "lifting_hessian_min_shallow": [1e-4, -2e-3][i % 2],
            "lifting_hessian_min_lifted": [0.0, -5e-3][i % 2],
        }
        for i, row in enumerate(_rows(lambda n, r: n >= 46, target="a", seeds=2))
    ]
    gen.write_rows(tmp_path, "recovery", "all", rows)
    sections = {s.title: s for s in build_sections(load(tmp_path), n_bootstrap=20)}
    lifting = sections["Embedding principle in depth"]
    assert lifting.text[-1] == (
        f"Measured over {len(rows)} runs: outputs change by at most 3.0e-14; gradient norm lifted ÷ shallow 1 to "
        "2.5; smallest Hessian eigenvalue -2.00e-03 to 1.00e-04 at the solutions found, -5.00e-03 to 0.00e+00 at "
        "their lifted points."
    )
    assert lifting.figures

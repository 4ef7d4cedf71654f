"""Reproducing Epoch AI's replication of Chinchilla's Approach 3 on their published data.

Data: ``epoch_chinchilla_svg_extracted_data.csv`` from epoch-research/analyzing-chinchilla (Besiroglu et al. 2024,
"Chinchilla scaling: a replication attempt"), 245 points read off Figure 4 of Hoffmann et al. (2022); D = C/(6N),
the 5 highest losses dropped, 240 points fitted. Their headline fit: E = 1.817, A = 482.0, B = 2085.4,
α = 0.3478, β = 0.3659, bootstrap SE(α) = 0.0154, SE(β) = 0.0206, a = β/(α+β) ≈ 0.513.

Tolerances are the ones issue 3 states, set before our fit was run (not fitted to its output): E ± 0.01,
α ± 0.006, β ± 0.01 — about half a bootstrap standard error each, tight enough to catch a different optimum or a
different objective, loose enough for two optimizers stopping at different points of the flat (A, B) valley.
A and B are not compared tightly: the objective is flat along them (shared/data/README.md). Bootstrap SEs must be
within 30% of Epoch's, which 1,000 resamples resolve to ~2% (relative SE of an SE ≈ 1/√(2·1000)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from analysis import fit_chinchilla
from analysis.law import LogSpaceLaw

EPOCH = {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3659, "a": 0.513}
EPOCH_SE = {"alpha": 0.0154, "beta": 0.0206}
EPOCH_THETA = np.array([6.17795598, 7.64273236, 0.59711196, 0.34781303, 0.36585412])  # their notebook's optimum


@pytest.fixture(scope="module")
def chinchilla_points() -> pd.DataFrame:
    path = Path(__file__).parents[2].parent / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent (published data lives beside the repo in shared/data)")
    raw = pd.read_csv(path)
    n = raw["Model Size"]
    return pd.DataFrame({"N": n, "D": raw["Training FLOP"] / (6 * n), "loss": raw["loss"]})


@pytest.fixture(scope="module")
def epoch_fit(chinchilla_points: pd.DataFrame):
    p = chinchilla_points
    return fit_chinchilla(p["N"], p["D"], p["loss"], drop_highest=5, n_bootstrap=1000, seed=0)


def test_uses_epochs_240_points(epoch_fit, chinchilla_points: pd.DataFrame) -> None:
    assert len(chinchilla_points) == 245
    assert epoch_fit.n_points == 240
    dropped = epoch_fit.points.loc[~epoch_fit.points["used"], "loss"]
    assert dropped.min() >= epoch_fit.points.loc[epoch_fit.points["used"], "loss"].max()


def test_reproduces_epochs_estimates(epoch_fit) -> None:
    params = epoch_fit.params()
    assert params["E"].value == pytest.approx(EPOCH["E"], abs=0.01)
    assert params["alpha"].value == pytest.approx(EPOCH["alpha"], abs=0.006)
    assert params["beta"].value == pytest.approx(EPOCH["beta"], abs=0.01)
    assert params["a"].value == pytest.approx(EPOCH["a"], abs=0.01)
    # A and B: same order of magnitude only (flat valley); their intervals must contain Epoch's values
    assert params["A"].low <= EPOCH["A"] <= params["A"].high
    assert params["B"].low <= EPOCH["B"] <= params["B"].high


def test_objective_at_least_as_good_as_epochs(epoch_fit) -> None:
    assert epoch_fit.objective <= 1.019e-3
    used = epoch_fit.points[epoch_fit.points["used"]]
    log_x = np.log(used[["N", "D"]].to_numpy())
    theirs, _ = LogSpaceLaw(2).objective(EPOCH_THETA[None], log_x, np.log(used["loss"].to_numpy()), np.ones(len(used)))
    assert epoch_fit.objective <= theirs[0]


def test_bootstrap_standard_errors_match_epochs(epoch_fit) -> None:
    params = epoch_fit.params()
    for name, published in EPOCH_SE.items():
        assert params[name].se == pytest.approx(published, rel=0.3)


def test_same_optimum_as_a_scipy_loop_over_starts(epoch_fit) -> None:
    """Epoch's procedure is one scipy L-BFGS-B call per start; a random 600 of the grid stand in for all 4,500
    (the full loop takes ~20 s). The batched search must find an optimum at least as low."""
    used = epoch_fit.points[epoch_fit.points["used"]]
    law = LogSpaceLaw(2)
    log_x, log_y, ones = np.log(used[["N", "D"]].to_numpy()), np.log(used["loss"].to_numpy()), np.ones(len(used))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = law.objective(theta[None], log_x, log_y, ones)
        return f[0], g[0]

    starts = law.start_grid()[np.random.default_rng(0).choice(4500, 600, replace=False)]
    loop_best = min(minimize(objective, s, jac=True, method="L-BFGS-B").fun for s in starts)
    assert epoch_fit.objective <= loop_best * (1 + 1e-9)

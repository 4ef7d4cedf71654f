"""The log-space law and its batched optimizer: gradients against finite differences, minima against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from analysis.law import LogSpaceLaw
from analysis.optimize import lbfgs_batched


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("overestimate_weight", [1.0, 4.0])
def test_gradient_matches_finite_differences(k: int, overestimate_weight: float) -> None:
    rng = np.random.default_rng(k)
    law = LogSpaceLaw(k)
    log_x = rng.uniform(15, 22, (40, k))
    log_y = rng.uniform(0.6, 1.2, 40)
    weights = rng.integers(0, 3, (3, 40)).astype(float)
    theta = np.column_stack([rng.uniform(3, 8, (3, k)), rng.uniform(0, 1, 3), rng.uniform(0.2, 0.5, (3, k))])
    # δ large enough that residuals fall on both sides of the Huber kink
    options = {"delta": 0.3, "overestimate_weight": overestimate_weight}
    _, grad = law.objective(theta, log_x, log_y, weights, **options)
    step = 1e-6
    for i in range(theta.shape[1]):
        shift = np.zeros_like(theta)
        shift[:, i] = step
        up, _ = law.objective(theta + shift, log_x, log_y, weights, **options)
        down, _ = law.objective(theta - shift, log_x, log_y, weights, **options)
        np.testing.assert_allclose(grad[:, i], (up - down) / (2 * step), rtol=1e-5, atol=1e-8)


def test_prediction_is_the_law_in_natural_units() -> None:
    law = LogSpaceLaw(2)
    theta = np.array([np.log(400.0), np.log(1000.0), np.log(1.7), 0.33, 0.28])
    n, d = np.array([1e8, 3e9]), np.array([2e9, 6e10])
    expected = 1.7 + 400 / n**0.33 + 1000 / d**0.28
    np.testing.assert_allclose(np.exp(law.log_predict(theta, np.log(np.column_stack([n, d])))[0]), expected)


def test_start_grid_is_epochs_4500_points() -> None:
    grid = LogSpaceLaw(2).start_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(grid[:, 0])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def test_batched_lbfgs_reaches_scipys_minimum_on_each_row() -> None:
    """Rows with different weights are independent problems; each must end where scipy's L-BFGS-B ends."""
    rng = np.random.default_rng(3)
    law = LogSpaceLaw(2)
    n, d = rng.uniform(1e7, 1e10, 60), rng.uniform(1e8, 1e11, 60)
    log_x = np.log(np.column_stack([n, d]))
    log_y = np.log(1.8 + 500 / n**0.35 + 2000 / d**0.37) + 0.01 * rng.standard_normal(60)
    weights = rng.multinomial(60, np.full(60, 1 / 60), size=5).astype(float)
    start = np.tile([6.0, 7.5, 0.6, 0.35, 0.35], (5, 1))
    batched = lbfgs_batched(lambda t, rows: law.objective(t, log_x, log_y, weights[rows]), start)
    for row in range(5):

        def scaled(t: np.ndarray, row: int = row) -> tuple[float, np.ndarray]:
            f, g = law.objective(t[None], log_x, log_y, weights[row])
            return f[0] * 1e3, g[0] * 1e3  # O(1) so that scipy's absolute tolerances bite

        reference = minimize(scaled, start[row], jac=True, method="L-BFGS-B", options={"ftol": 1e-13, "gtol": 1e-10})
        assert batched.fun[row] * 1e3 <= reference.fun * (1 + 1e-6)

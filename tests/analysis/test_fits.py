"""Fits recover parameters the test draws, derived quantities agree with their definitions, options do what
they say. Truths are drawn here; the fitted numbers are never written into a test."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import extrapolation_check, fit_chinchilla, fit_power_law


def _draw_law(rng: np.random.Generator) -> dict[str, float]:
    return {
        "E": rng.uniform(1.5, 2.5),
        "A": rng.uniform(200, 800),
        "B": rng.uniform(500, 3000),
        "alpha": rng.uniform(0.25, 0.45),
        "beta": rng.uniform(0.25, 0.45),
    }


def _loss(law: dict[str, float], n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]


def _grid(rng: np.random.Generator, law: dict[str, float], noise: float) -> tuple[np.ndarray, ...]:
    # Chinchilla-like coverage: N over 2.5 decades, D over 3, both crossed, so that E, α and β are identifiable.
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(5e7, 1.6e10, 9), np.geomspace(1e9, 1e12, 10)))
    return n, d, _loss(law, n, d) * np.exp(noise * rng.standard_normal(n.size))


@pytest.mark.parametrize("seed", [1, 2])
def test_joint_fit_recovers_drawn_parameters(seed: int) -> None:
    """Within 4 bootstrap SEs of the truth (a > 4σ miss is ~1e-4 likely if the SEs are right), with SEs small
    enough that the check means something."""
    rng = np.random.default_rng(seed)
    law = _draw_law(rng)
    n, d, loss = _grid(rng, law, noise=0.003)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=300, seed=seed)
    params = fit.params()
    for name in ("E", "alpha", "beta"):
        assert abs(params[name].value - law[name]) <= 4 * params[name].se, name
    assert params["alpha"].se < 0.05 and params["beta"].se < 0.05
    true_a = law["beta"] / (law["alpha"] + law["beta"])
    assert abs(params["a"].value - true_a) <= 4 * params["a"].se


def test_noise_free_data_gives_the_law_exactly() -> None:
    rng = np.random.default_rng(7)
    law = _draw_law(rng)
    n, d, loss = _grid(rng, law, noise=0.0)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=20)
    params = fit.params()
    for name in ("E", "A", "B", "alpha", "beta"):
        assert params[name].value == pytest.approx(law[name], rel=1e-3), name
    np.testing.assert_allclose(fit.predict(n, d), loss, rtol=1e-5)


def test_single_variable_fit_recovers_drawn_law() -> None:
    rng = np.random.default_rng(11)
    e, a, alpha = rng.uniform(1.5, 2.5), rng.uniform(50, 500), rng.uniform(0.2, 0.5)
    x = np.geomspace(1e6, 1e10, 14)
    loss = (e + a * x**-alpha) * np.exp(0.002 * rng.standard_normal(x.size))
    fit = fit_power_law(x, loss, n_bootstrap=300)
    params = fit.params()
    assert set(params) == {"E", "A", "alpha"}
    assert abs(params["alpha"].value - alpha) <= 4 * params["alpha"].se
    assert abs(params["E"].value - e) <= 4 * params["E"].se
    interval = fit.predict_interval(x)
    assert (interval["low"] <= interval["loss"]).all() and (interval["loss"] <= interval["high"]).all()


def test_compute_optimal_allocation_minimizes_the_fitted_loss() -> None:
    """N_opt(C) must be the argmin of L(N, C/6N) along the iso-FLOP line: checked by brute force on a grid."""
    rng = np.random.default_rng(5)
    n, d, loss = _grid(rng, _draw_law(rng), noise=0.003)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=100)
    for compute in (1e20, 1e23):
        candidates = np.geomspace(1e6, 1e14, 200_001)
        brute = candidates[np.argmin(fit.predict(candidates, compute / (6 * candidates)))]
        row = fit.compute_optimal(compute).iloc[0]
        assert row["n_opt"] == pytest.approx(brute, rel=1e-3)
        assert row["n_opt"] * row["d_opt"] * 6 == pytest.approx(compute)
        assert row["n_opt_low"] <= row["n_opt"] <= row["n_opt_high"]
    params = fit.params()
    assert params["a"].value + params["b"].value == pytest.approx(1.0)
    big, small = fit.compute_optimal([1e24, 1e22])["n_opt"]
    assert np.log(big / small) / np.log(100) == pytest.approx(params["a"].value)


def test_drop_highest_drops_exactly_the_k_highest_losses() -> None:
    rng = np.random.default_rng(9)
    n, d, loss = _grid(rng, _draw_law(rng), noise=0.01)
    fit = fit_chinchilla(n, d, loss, drop_highest=4, n_bootstrap=10)
    dropped = fit.points.loc[~fit.points["used"], "loss"].sort_values().to_numpy()
    np.testing.assert_array_equal(dropped, np.sort(loss)[-4:])
    assert fit.n_points == len(loss) - 4


def test_overestimate_penalty_makes_the_fit_overestimate_less() -> None:
    rng = np.random.default_rng(13)
    n, d, loss = _grid(rng, _draw_law(rng), noise=0.02)
    symmetric = fit_chinchilla(n, d, loss, n_bootstrap=10)
    penalized = fit_chinchilla(n, d, loss, overestimate_weight=10.0, n_bootstrap=10)
    # residual = log L − log L̂ < 0 where the law overestimates the loss
    assert (penalized.points["residual"] < 0).sum() < (symmetric.points["residual"] < 0).sum()


def test_bad_points_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite and positive"):
        fit_chinchilla([1e8, 2e8, -1, 4e8, 5e8, 6e8], [1e9] * 6, [3.0] * 6)
    with pytest.raises(ValueError, match="cannot determine"):
        fit_chinchilla([1e8, 2e8, 3e8], [1e9, 2e9, 3e9], [3.0, 2.9, 2.8])


def test_extrapolation_to_the_largest_model_matches_the_true_law() -> None:
    """Held-out largest N predicted within 2% of the true (noise-free) law for 0.3% noise: the check works."""
    rng = np.random.default_rng(17)
    law = _draw_law(rng)
    n, d, loss = _grid(rng, law, noise=0.003)
    check = extrapolation_check(n, d, loss, n_bootstrap=100)
    held = check.held_out
    assert (held["N"] == n.max()).all() and len(held) == 10
    truth = _loss(law, held["N"].to_numpy(), held["D"].to_numpy())
    np.testing.assert_allclose(held["predicted"], truth, rtol=0.02)
    assert check.fit.points["N"].max() < n.max()

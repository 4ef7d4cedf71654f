"""Identifiability: each failure mode of a scaling-law fit, built from data with a known cause, gets the status and
reason it should; a well-posed data set comes out identified; the reduced forms recover what they fix."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import AnalysisInputError, fit_chinchilla, fit_power_law
from analysis.law import EXPONENT_BOUNDS


def _grid(sizes, tokens) -> tuple[np.ndarray, np.ndarray]:
    n, d = np.meshgrid(np.asarray(sizes, float), np.asarray(tokens, float))
    return n.ravel(), d.ravel()


def _noisy(loss: np.ndarray, noise: float, seed: int) -> np.ndarray:
    return loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.shape))


CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _law(n, d, *, E, A, B, alpha, beta):
    return E + A / n**alpha + B / d**beta


def test_a_well_posed_grid_is_identified_in_every_parameter() -> None:
    n, d = _grid(np.geomspace(5e7, 1.6e10, 9), np.geomspace(1e9, 1e12, 10))
    fit = fit_chinchilla(n, d, _noisy(_law(n, d, **CHINCHILLA), 0.003, 1), n_bootstrap=200)
    params = fit.params()
    assert {name: est.status for name, est in params.items()} == dict.fromkeys(params, "identified")
    assert all(est.reason == "" and est.is_finding for est in params.values())
    assert fit.identified


def test_loss_flat_in_n_leaves_alpha_and_a_not_identified() -> None:
    # A model-size term 100x too small to see: the loss changes by ~0.2% across N = 5e4–6e5.
    n, d = _grid(np.geomspace(5e4, 6e5, 4), np.geomspace(1e5, 1e6, 3))
    loss = _noisy(_law(n, d, E=1.0, A=0.05, B=60.0, alpha=0.3, beta=0.35), 0.002, 2)
    params = fit_chinchilla(n, d, loss, n_bootstrap=200).params()
    for name in ("alpha", "A"):
        assert params[name].status == "not identified", name
        assert "across N = 5e+04–6e+05" in params[name].reason and "add larger models" in params[name].reason
    assert "needs α and β identified" in params["a"].reason


def test_e_driven_to_zero_is_at_its_bound_and_conditions_the_rest() -> None:
    # Pure power laws (no floor): the best fit puts E on its lower bound.
    n, d = _grid(np.geomspace(1e5, 1e7, 5), np.geomspace(1e6, 1e8, 4))
    loss = _law(n, d, E=0.0, A=40.0, B=80.0, alpha=0.25, beta=0.3)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=100)
    params = fit.params()
    assert params["E"].status == "at bound" and "driven to 0" in params["E"].reason
    assert params["E"].value < 1e-3 * loss.min()
    for name in ("A", "B", "alpha", "beta"):
        assert params[name].status == "not identified" and "conditional on E" in params[name].reason, name
    assert not fit.identified


def test_only_two_sizes_cannot_determine_the_n_term() -> None:
    n, d = _grid([1e6, 4e6], np.geomspace(1e7, 1e9, 5))
    loss = _noisy(_law(n, d, **CHINCHILLA), 0.002, 3)
    params = fit_chinchilla(n, d, loss, n_bootstrap=100).params()
    for name in ("alpha", "A"):
        assert params[name].status == "not identified" and "only 2 distinct N" in params[name].reason, name


def test_a_runaway_exponent_stops_at_its_bound() -> None:
    # The smallest model is 8% worse, the others identical: only a cliff fits, and α runs to its upper bound.
    n, d = _grid([1e5, 2e5, 4e5, 8e5], [1e6, 3e6, 1e7])
    loss = 2.0 + 30.0 / d**0.3 + np.where(n == 1e5, 0.16, 0.0)
    fit = fit_chinchilla(n, d, loss, n_bootstrap=100)
    alpha = fit.params()["alpha"]
    assert alpha.value == pytest.approx(EXPONENT_BOUNDS[1], abs=0.01)
    assert alpha.status == "at bound" and "upper bound" in alpha.reason


def test_loss_that_rises_with_n_gives_alpha_at_zero_not_a_negative_exponent() -> None:
    x = np.geomspace(1e5, 1e7, 8)
    fit = fit_power_law(x, _noisy(2.0 + 0.01 * np.log(x), 0.001, 4), n_bootstrap=100)
    alpha = fit.params()["alpha"]
    assert alpha.value >= 0 and alpha.low >= 0
    assert alpha.status in ("at bound", "not identified")


def test_given_e_and_shared_exponent_recover_the_law_they_assume() -> None:
    truth = {"E": 2.1, "A": 300.0, "B": 900.0, "alpha": 0.3, "beta": 0.3}
    n, d = _grid(np.geomspace(1e6, 3e7, 4), np.geomspace(1e7, 3e8, 3))
    loss = _law(n, d, **truth)
    given = fit_chinchilla(n, d, loss, e_given=2.1, n_bootstrap=50).params()
    assert given["E"].status == "given" and given["E"].value == pytest.approx(2.1)
    shared = fit_chinchilla(n, d, loss, shared_exponent=True, n_bootstrap=50).params()
    assert shared["beta"].status == "by form" and shared["a"].status == "by form"
    for params in (given, shared):
        for name in ("E", "A", "B", "alpha", "beta"):
            assert params[name].value == pytest.approx(truth[name], rel=1e-3), name
    with pytest.raises(ValueError, match="not below the lowest loss"):
        fit_chinchilla(n, d, loss, e_given=10.0, n_bootstrap=10)


def test_the_compute_optimal_allocation_is_refused_when_not_identified() -> None:
    n, d = _grid(np.geomspace(1e6, 3e7, 4), np.geomspace(1e7, 3e8, 3))
    loss = _law(n, d, E=2.1, A=300.0, B=900.0, alpha=0.3, beta=0.3)
    shared = fit_chinchilla(n, d, loss, shared_exponent=True, n_bootstrap=20)
    with pytest.raises(AnalysisInputError, match="cannot be computed: a: a = b = 1/2 by construction"):
        shared.compute_optimal(1e20)
    flat = fit_chinchilla(*_grid([1e6, 4e6], [1e7, 1e8, 1e9]), np.full(6, 3.0) + np.arange(6) * 1e-4, n_bootstrap=20)
    assert "alpha" in flat.why_no_allocation()
    with pytest.raises(AnalysisInputError, match="cannot be computed"):
        flat.compute_optimal(1e20)


def test_weights_let_precise_points_outvote_noisy_ones() -> None:
    n, d = _grid(np.geomspace(1e6, 3e7, 5), np.geomspace(1e7, 3e8, 4))
    truth = _law(n, d, **CHINCHILLA)
    spoiled = truth.copy()
    spoiled[::4] *= 1.08  # five points 8% off: noisy measurements
    weights = np.where(np.arange(len(n)) % 4 == 0, 1e-4, 1.0)
    weighted = fit_chinchilla(n, d, spoiled, weights=weights, n_bootstrap=20)
    unweighted = fit_chinchilla(n, d, spoiled, n_bootstrap=20)
    clean = np.arange(len(n)) % 4 != 0
    error = [np.abs(f.predict(n, d)[clean] / truth[clean] - 1).max() for f in (weighted, unweighted)]
    # Huber is robust already, so the unweighted fit is off by well under 1%; the weighted one recovers the law.
    assert error[0] < 1e-5 < error[1]

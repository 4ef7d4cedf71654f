"""Choosing the form of a law by nested hold-out, and the extrapolation check built on it, on drawn truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import extrapolation_check, fit_chinchilla
from analysis.selection import FormSpec, select_form


def _law(n, d, *, E, A, B, alpha, beta):
    return E + A / n**alpha + B / d**beta


def _points(truth: dict, sizes, tokens, noise: float, seed: int) -> pd.DataFrame:
    n, d = (a.ravel() for a in np.meshgrid(np.asarray(sizes, float), np.asarray(tokens, float)))
    loss = _law(n, d, **truth) * np.exp(noise * np.random.default_rng(seed).standard_normal(n.size))
    return pd.DataFrame({"N": n, "D": d, "loss": loss, "C": 6 * n * d})


# A laptop-sized ladder: five sizes over 7×, three data sizes over 4×, 0.2% noise, a floor the data barely reach.
LADDER = {"sizes": np.geomspace(1.2e4, 8.3e4, 5), "tokens": [2e5, 4e5, 8e5]}
TRUTH = {"E": 2.74, "A": 2000.0, "B": 3000.0, "alpha": 0.8, "beta": 0.7}


def test_the_held_out_size_takes_no_part_in_the_choice() -> None:
    points = _points(TRUTH, **LADDER, noise=0.002, seed=1)
    largest = points["N"] == points["N"].max()
    spoiled = points.assign(loss=np.where(largest, points["loss"] * 1.5, points["loss"]))
    checks = [
        extrapolation_check(p["N"], p["D"], p["loss"], e_given=2.74, e_exact=True, n_bootstrap=50)
        for p in (points, spoiled)
    ]
    assert checks[0].selection.table().equals(checks[1].selection.table())
    np.testing.assert_allclose(checks[0].held_out["predicted"], checks[1].held_out["predicted"])
    assert checks[1].mean_abs_relative_error > 0.3  # the spoiled points are what is being predicted


def test_the_chosen_form_predicts_the_held_out_size_of_a_known_law() -> None:
    points = _points(TRUTH, **LADDER, noise=0.002, seed=2)
    check = extrapolation_check(points["N"], points["D"], points["loss"], e_given=2.74, e_exact=True, n_bootstrap=200)
    specs = [c.spec for c in check.selection.candidates]
    assert FormSpec(2.74, False, True) in specs and FormSpec(2.74, False, True).assumptions == 0  # E is knowledge
    assert check.selection.chosen is not None and check.selection.chosen.identified
    held = check.held_out
    truth = _law(held["N"].to_numpy(), held["D"].to_numpy(), **TRUTH)
    np.testing.assert_allclose(held["predicted"], truth, rtol=0.02)
    assert held["covered"].mean() >= 2 / 3


def test_a_form_the_data_cannot_identify_is_never_chosen() -> None:
    # No floor in the data (E = 0): the free form cannot determine E, so it is not chosen, however it predicts.
    truth = {"E": 0.0, "A": 40.0, "B": 80.0, "alpha": 0.25, "beta": 0.3}
    points = _points(truth, np.geomspace(1e5, 1e7, 5), np.geomspace(1e6, 1e8, 4), noise=0.001, seed=3)
    selection = select_form(points, n_bootstrap=100)
    free = next(c for c in selection.candidates if c.spec == FormSpec())
    assert not free.identified and free.fit.params()["E"].status in ("at bound", "not identified")
    assert selection.chosen is None or selection.chosen.identified
    if selection.chosen is None:
        assert "no form is identified" in selection.reason


def test_an_assumption_is_taken_only_when_it_predicts_clearly_better() -> None:
    # Data from a law with α ≠ β and little noise: the free form is identified, and the shared exponent (an
    # assumption) must beat it by more than the scatter of one point to be chosen.
    truth = {"E": 1.9, "A": 300.0, "B": 900.0, "alpha": 0.34, "beta": 0.30}
    points = _points(truth, np.geomspace(2e6, 8e7, 5), [2e7, 6e7, 2e8, 6e8], noise=0.003, seed=4)
    selection = select_form(points, n_bootstrap=200)
    free, shared = selection.candidates[:2]
    assert free.identified and shared.spec.shared_exponent
    if selection.chosen is shared:
        residuals = free.fit.points["residual"]
        assert shared.nested_error < free.nested_error - np.sqrt(np.mean(residuals**2))
    else:
        assert selection.chosen is free


def test_prediction_intervals_cover_fresh_observations() -> None:
    """A 95% prediction interval must hold about 95% of fresh noisy observations at the points it was fitted on,
    on average over data sets (one small data set can under- or over-state its own scatter); the interval of the
    law alone (no observation noise) holds far fewer."""
    covered, covered_law = [], []
    for seed in range(8):
        points = _points(TRUTH, **LADDER, noise=0.01, seed=100 + seed)
        fit = fit_chinchilla(points["N"], points["D"], points["loss"], e_given=2.74, n_bootstrap=300, seed=seed)
        truth = _law(points["N"].to_numpy(), points["D"].to_numpy(), **TRUTH)
        fresh = truth[None] * np.exp(0.01 * np.random.default_rng(seed).standard_normal((200, len(points))))
        for observation_noise, out in ((True, covered), (False, covered_law)):
            interval = fit.predict_interval(points["N"], points["D"], observation_noise=observation_noise)
            out.append(((interval["low"].to_numpy() <= fresh) & (fresh <= interval["high"].to_numpy())).mean())
    assert np.mean(covered) == pytest.approx(0.95, abs=0.04)
    assert np.mean(covered_law) < 0.8

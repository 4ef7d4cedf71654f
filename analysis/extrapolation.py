"""The extrapolation check: does a law fitted on smaller models predict the largest ones?

A scaling law is only worth its predictions, so the report holds out the largest model sizes, chooses the form of
the law on the rest (``analysis.selection``: its nested hold-out uses only the sizes that are fitted, so the held-out
size takes no part in the choice), fits it, and states the error of its predictions on what was held out, each with
a 95% prediction interval (the law's bootstrap interval widened by the scatter the fit leaves at its own points: a
held-out point is an observation, not the law).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.fits import ChinchillaFit
from analysis.selection import Selection, select_form


@dataclass(frozen=True)
class ExtrapolationCheck:
    """The form chosen without the largest sizes, its fit, and its predictions for them."""

    selection: Selection
    held_out: pd.DataFrame
    """N, D, loss, predicted, low, high, relative_error = predicted/loss − 1, covered (loss inside [low,
    high]); empty when no form was identified."""

    @property
    def fit(self) -> ChinchillaFit | None:
        return None if self.selection.chosen is None else self.selection.chosen.fit  # type: ignore[return-value]

    @property
    def mean_abs_relative_error(self) -> float:
        return float(self.held_out["relative_error"].abs().mean()) if len(self.held_out) else float("nan")

    @property
    def max_abs_relative_error(self) -> float:
        return float(self.held_out["relative_error"].abs().max()) if len(self.held_out) else float("nan")

    @property
    def coverage(self) -> float:
        return float(self.held_out["covered"].mean()) if len(self.held_out) else float("nan")


def extrapolation_check(
    n: ArrayLike,
    d: ArrayLike,
    loss: ArrayLike,
    *,
    holdout_sizes: int = 1,
    e_given: float | None = None,
    e_exact: bool = False,
    weights: ArrayLike | None = None,
    **options: object,
) -> ExtrapolationCheck:
    """Choose and fit L(N, D) on all but the ``holdout_sizes`` largest distinct N and predict the held-out
    points."""
    points = pd.DataFrame({"N": np.asarray(n, float), "D": np.asarray(d, float), "loss": np.asarray(loss, float)})
    if weights is not None:
        points["weight"] = np.asarray(weights, float)
    sizes = np.unique(points["N"])
    if len(sizes) <= holdout_sizes + 1:
        raise ValueError(f"{len(sizes)} model sizes: too few to hold out {holdout_sizes} and still fit a law in N")
    held = points["N"] >= sizes[-holdout_sizes]
    selection = select_form(points[~held], form="joint", e_given=e_given, e_exact=e_exact, **options)
    out = points.loc[held, ["N", "D", "loss"]].reset_index(drop=True)
    if selection.chosen is None:
        return ExtrapolationCheck(selection, out.iloc[:0])
    fit = selection.chosen.fit
    prediction = fit.predict_interval(out["N"], out["D"], observation_noise=True)  # type: ignore[call-arg]
    out["predicted"], out["low"], out["high"] = prediction["loss"], prediction["low"], prediction["high"]
    out["relative_error"] = out["predicted"] / out["loss"] - 1
    out["covered"] = (out["low"] <= out["loss"]) & (out["loss"] <= out["high"])
    return ExtrapolationCheck(selection, out)

"""The extrapolation check: does a law fitted on smaller models predict the largest ones?

A scaling law is only worth its predictions, so the report holds out the largest model sizes, fits the joint
law on the rest with the same options, and states the error of its predictions (with bootstrap intervals) on
what was held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.fits import ChinchillaFit, fit_chinchilla


@dataclass(frozen=True)
class ExtrapolationCheck:
    """The fit without the largest sizes, and its predictions for them."""

    fit: ChinchillaFit
    held_out: pd.DataFrame
    """N, D, loss, predicted, low, high, relative_error = predicted/loss − 1, covered (loss inside [low,
    high])."""

    @property
    def mean_abs_relative_error(self) -> float:
        return float(self.held_out["relative_error"].abs().mean())


def extrapolation_check(
    n: ArrayLike, d: ArrayLike, loss: ArrayLike, *, holdout_sizes: int = 1, **options: object
) -> ExtrapolationCheck:
    """Fit L(N, D) on all but the ``holdout_sizes`` largest distinct N and predict the held-out points."""
    points = pd.DataFrame({"N": np.asarray(n, float), "D": np.asarray(d, float), "loss": np.asarray(loss, float)})
    sizes = np.unique(points["N"])
    if len(sizes) <= holdout_sizes + 1:
        raise ValueError(f"{len(sizes)} model sizes: too few to hold out {holdout_sizes} and still fit a law in N")
    held = points["N"] >= sizes[-holdout_sizes]
    fit = fit_chinchilla(points.loc[~held, "N"], points.loc[~held, "D"], points.loc[~held, "loss"], **options)
    out = points[held].reset_index(drop=True)
    prediction = fit.predict_interval(out["N"], out["D"])
    out["predicted"], out["low"], out["high"] = prediction["loss"], prediction["low"], prediction["high"]
    out["relative_error"] = out["predicted"] / out["loss"] - 1
    out["covered"] = (out["low"] <= out["loss"]) & (out["loss"] <= out["high"])
    return ExtrapolationCheck(fit=fit, held_out=out)

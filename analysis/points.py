"""Which trials a scaling law is fitted to, and in which units: the bridge from the trials table to (N, D, C,
L).

Conventions (DESIGN.md): only ``status == "ok"`` trials with a finite, positive ``final_eval_loss`` are
fitted; N is ``params_non_embedding`` unless the caller asks for ``params_total``; D is ``tokens``; C is
recomputed as 6·N·D with the same N, so that the compute-optimal allocation of a fit and the C it is plotted
against agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError

PARAM_COLUMNS = ("params_non_embedding", "params_total")
GROUP_COLUMNS = ("init_rate", "init_std", "weight_decay")
"""The study's treatment axes: initialization (rate γ or a fixed std) and AdamW weight decay λ."""


def scaling_points(
    trials: pd.DataFrame,
    *,
    params: str = "params_non_embedding",
    loss: str = "final_eval_loss",
    keep: Sequence[str] = GROUP_COLUMNS,
) -> pd.DataFrame:
    """Columns N, D, C (= 6·N·D) and loss for every fittable trial, plus the ``keep`` columns that exist."""
    if params not in PARAM_COLUMNS:
        raise AnalysisInputError(f"params={params!r}: use one of {', '.join(PARAM_COLUMNS)}")
    missing = [c for c in ("status", params, "tokens", loss) if c not in trials.columns]
    if missing:
        raise AnalysisInputError(f"trials table lacks column(s) {missing}; is this a scalesweep results directory?")
    ok = trials[trials["status"] == "ok"]
    points = pd.DataFrame(
        {
            "N": ok[params].astype(float),
            "D": ok["tokens"].astype(float),
            "loss": ok[loss].astype(float),
        }
    )
    points["C"] = 6.0 * points["N"] * points["D"]
    for column in keep:
        if column in ok.columns:
            points[column] = ok[column]
    usable = np.isfinite(points[["N", "D", "loss"]]).all(axis=1) & (points[["N", "D", "loss"]] > 0).all(axis=1)
    return points[usable].reset_index(drop=True)


def group_label(keys: dict[str, object]) -> str:
    """A short human label for a group: 'γ=0.5, λ=0.1' or 'std=0.02, λ=0.1'."""
    symbols = {"init_rate": "γ", "init_std": "std", "weight_decay": "λ"}
    parts = [
        f"{symbols.get(name, name)}={value:g}" if isinstance(value, float) else f"{symbols.get(name, name)}={value}"
        for name, value in keys.items()
        if not _missing(value)
    ]
    return ", ".join(parts) or "all"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))

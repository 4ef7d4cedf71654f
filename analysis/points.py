"""Which trials a scaling law is fitted to, and in which units: the bridge from the trials table to (N, D, C,
L).

Conventions (DESIGN.md): only ``status == "ok"`` trials with a finite, positive ``final_eval_loss`` are
fitted; D is ``tokens``; C is recomputed as 6·N·D with the same N, so that the compute-optimal allocation of
a fit and the C it is plotted against agree.

N is one of three conventions (``N_CONVENTIONS``):

* ``with-head`` (the default): non-embedding parameters plus the LM head's d_model·vocab_size, the parameters
  a token is multiplied by. This is the N of the trials' ``flops`` column, so C = 6·N·D counts the compute a
  trial spent; at laptop scale the head is a large part of it (130% of the non-embedding parameters of a 1x64
  llama at vocabulary 1024, 22% of a 3x128), and Porian et al. (2024) trace part of the Kaplan–Chinchilla
  disagreement to leaving it out.
* ``non-embedding``: Kaplan et al.'s N, without embeddings or head.
* ``total``: every parameter (Chinchilla's N), input embeddings included.

When a study tries several learning rates at the same cell (an ``lr`` axis), the points are the envelope:
the best lr of each (N, D, seed, group), with the lr chosen kept in column ``lr``. A learning rate that only
follows model size (``train.width_scaling``) is one lr per cell and passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError

N_CONVENTIONS = ("with-head", "non-embedding", "total")
GROUP_COLUMNS = ("init_rate", "init_std", "weight_decay")
"""The study's treatment axes: initialization (rate γ or a fixed std) and AdamW weight decay λ."""
_PASSED = ("lr", "seed", "irreducible_loss", "eval_loss_se", "flops_budget")


def default_n(trials: pd.DataFrame) -> str:
    """``with-head`` when the trials say their width and vocabulary (every scalesweep trial does), else
    ``non-embedding`` (results from elsewhere, such as published minima, that only give a parameter count)."""
    columns = ["vocab_size", "d_model"]
    known = set(columns) <= set(trials.columns) and trials.loc[trials["status"] == "ok", columns].notna().all().all()
    return "with-head" if known else "non-embedding"


def n_of(trials: pd.DataFrame, convention: str) -> pd.Series:
    """N of every trial under ``convention`` (module docstring)."""
    if convention not in N_CONVENTIONS:
        raise AnalysisInputError(f"N convention {convention!r}: use one of {', '.join(N_CONVENTIONS)}")
    if convention == "non-embedding":
        return trials["params_non_embedding"].astype(float)
    if convention == "total":
        return trials["params_total"].astype(float)
    missing = [c for c in ("vocab_size", "d_model") if c not in trials.columns]
    if missing:
        raise AnalysisInputError(f"trials table lacks {missing} for N with the LM head; use --n non-embedding")
    head = trials["vocab_size"].astype(float) * trials["d_model"].astype(float)
    return trials["params_non_embedding"].astype(float) + head


def scaling_points(
    trials: pd.DataFrame,
    *,
    n: str = "with-head",
    loss: str = "final_eval_loss",
    keep: Sequence[str] = GROUP_COLUMNS,
    envelope: bool = True,
) -> pd.DataFrame:
    """Columns N, D, C (= 6·N·D), loss, and where present lr, seed, irreducible_loss, flops_budget (the C an IsoFLOP
    grid designed the cell for) and eval_loss_se (as ``se``), for every fittable trial, plus the ``keep`` columns
    that exist; the lr envelope unless ``envelope`` is false or lr is kept."""
    params = {"with-head": "params_non_embedding", "non-embedding": "params_non_embedding", "total": "params_total"}
    missing = [c for c in ("status", params.get(n, "params_non_embedding"), "tokens", loss) if c not in trials.columns]
    if missing:
        raise AnalysisInputError(f"trials table lacks column(s) {missing}; is this a scalesweep results directory?")
    ok = trials[trials["status"] == "ok"]
    points = pd.DataFrame(
        {"N": n_of(ok, n), "D": ok["tokens"].astype(float), "loss": ok[loss].astype(float)}, index=ok.index
    )
    points["C"] = 6.0 * points["N"] * points["D"]
    for column in (*keep, *_PASSED):
        if column in ok.columns and column not in points.columns:
            points[column] = ok[column]
    points = points.rename(columns={"eval_loss_se": "se"})
    usable = np.isfinite(points[["N", "D", "loss"]]).all(axis=1) & (points[["N", "D", "loss"]] > 0).all(axis=1)
    points = points[usable].reset_index(drop=True)
    if envelope and "lr" in points.columns and "lr" not in keep:
        points = lr_envelope(points, [c for c in (*keep, "seed") if c in points.columns])
    return points


def lr_envelope(points: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The lowest-loss point of every (N, D, ``by``) cell; ``lr_tried`` counts the learning rates it beat."""
    cells = ["N", "D", *by]
    grouped = points.groupby(cells, dropna=False, sort=False)
    best = points.loc[grouped["loss"].idxmin()].copy()
    best["lr_tried"] = grouped["lr"].nunique().to_numpy()
    return best.reset_index(drop=True)


def varying_lr(points: pd.DataFrame) -> bool:
    """Whether the points come from an lr sweep (more than one lr tried at some cell)."""
    return "lr_tried" in points.columns and bool((points["lr_tried"] > 1).any())


def group_label(keys: dict[str, object]) -> str:
    """A short human label for a group: 'γ=0.5, λ=0.1' or 'std=0.02, λ=0.1'."""
    symbols = {"init_rate": "γ", "init_std": "std", "weight_decay": "λ", "lr": "lr"}
    parts = [
        f"{symbols.get(name, name)}={value:g}" if isinstance(value, float) else f"{symbols.get(name, name)}={value}"
        for name, value in keys.items()
        if not _missing(value)
    ]
    return ", ".join(parts) or "all"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))

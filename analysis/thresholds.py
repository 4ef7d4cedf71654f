"""Sample-size thresholds of recovery experiments: the n from which small-init training recovers the target.

For each setting (target, student, d, init_scale) the recovery rows give success (``recovered``) against the
number of training samples n over seeds. Two estimates of the transition n*, side by side with the optimistic
sample size (model rank) from the closed form stored in the rows (``model_rank_theory``):

- logistic: P(recovered) = σ(s·(log n − log n*)), fitted by maximum likelihood. Recovery transitions are
  sharp, so outcomes are often completely separated in n, where the MLE does not exist (s → ∞ with n* anywhere
  in the gap); a weak penalty 1e-3·s² keeps s finite and puts n* at the geometric middle of the gap.
- empirical: the smallest n whose success rate is ≥ 50%.

Intervals come from a bootstrap stratified by n (seeds resampled within each n), keeping the design fixed.
Under complete separation every resample is separated in the same gap and the interval collapses; the n-grid,
not the seeds, then limits what is known about n*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.fits import Estimate
from analysis.optimize import lbfgs_batched

SETTING_COLUMNS = ("target", "student", "d", "init_scale")
_RIDGE = 1e-3


@dataclass(frozen=True)
class Threshold:
    """The transition of one setting: both n* estimates, the theory value and the success curve behind
    them."""

    keys: dict[str, object]
    n_star_logistic: Estimate
    n_star_empirical: Estimate
    slope: float
    """s of the logistic in log n: larger is sharper."""
    model_rank_theory: float
    success: pd.DataFrame
    """Per n: trials, successes, rate."""


def recovery_thresholds(
    recovery: pd.DataFrame,
    *,
    by: Sequence[str] = SETTING_COLUMNS,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> list[Threshold]:
    """One ``Threshold`` per group of ``by`` (the columns of it that exist) in the recovery table."""
    missing = [c for c in ("n", "recovered") if c not in recovery.columns]
    if missing:
        raise AnalysisInputError(f"recovery table lacks column(s) {missing}")
    rows = recovery.dropna(subset=["n", "recovered"])
    by = [c for c in by if c in rows.columns]
    groups = rows.groupby(by, dropna=False, sort=True) if by else [((), rows)]
    rng = np.random.default_rng(seed)
    out = []
    for values, frame in groups:
        keys = dict(zip(by, values if isinstance(values, tuple) else (values,), strict=True))
        out.append(_threshold(keys, frame, n_bootstrap, ci, rng))
    return out


def thresholds_table(thresholds: Sequence[Threshold]) -> pd.DataFrame:
    """One row per setting: keys, n* (logistic and empirical) with intervals, theory, and n*/theory."""
    rows = []
    for t in thresholds:
        row: dict[str, object] = dict(t.keys)
        for name, est in (("n_star_logistic", t.n_star_logistic), ("n_star_empirical", t.n_star_empirical)):
            row.update({name: est.value, f"{name}_low": est.low, f"{name}_high": est.high})
        row["slope"] = t.slope
        row["model_rank_theory"] = t.model_rank_theory
        row["ratio_to_theory"] = t.n_star_logistic.value / t.model_rank_theory
        rows.append(row)
    return pd.DataFrame(rows)


def _threshold(
    keys: dict[str, object], frame: pd.DataFrame, n_bootstrap: int, ci: float, rng: np.random.Generator
) -> Threshold:
    n = frame["n"].to_numpy(dtype=float)
    success = frame["recovered"].to_numpy(dtype=float)
    ones = np.ones((1, len(n)))
    counts = np.concatenate([ones, _stratified_counts(n, n_bootstrap, rng)])
    logistic, slope = _logistic_n_star(np.log(n), success, counts)
    empirical = _empirical_n_star(n, success, counts)
    theory = frame["model_rank_theory"].median() if "model_rank_theory" in frame.columns else np.nan
    table = frame.groupby("n")["recovered"].agg(trials="size", successes="sum").reset_index()
    table["rate"] = table["successes"] / table["trials"]
    return Threshold(
        keys=keys,
        n_star_logistic=_estimate(logistic, ci),
        n_star_empirical=_estimate(empirical, ci),
        slope=float(slope),
        model_rank_theory=float(theory),
        success=table,
    )


def _stratified_counts(n: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.zeros((n_bootstrap, len(n)))
    for value in np.unique(n):
        members = np.flatnonzero(n == value)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_bootstrap)
    return counts


def _logistic_n_star(log_n: np.ndarray, success: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, float]:
    """n* per row of ``counts`` (row 0: the data) and the data's slope; NaN where outcomes do not vary."""

    def objective(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = counts[rows]
        m, s = theta[:, :1], np.exp(theta[:, 1:])
        z = s * (log_n[None] - m)
        nll = np.logaddexp(0.0, z) - success * z
        q = w * (1 / (1 + np.exp(-z)) - success)
        f = (w * nll).sum(axis=1) + _RIDGE * s[:, 0] ** 2
        grad = np.column_stack([-(q * s).sum(axis=1), (q * z).sum(axis=1) + 2 * _RIDGE * s[:, 0] ** 2])
        return f, grad

    weighted_success = counts @ success
    varies = (weighted_success > 0) & (weighted_success < counts.sum(axis=1))
    n_star = np.full(len(counts), np.nan)
    slope = np.nan
    rows = np.flatnonzero(varies)  # without both outcomes there is no transition to place: n* stays NaN
    if rows.size:
        start = np.tile([np.median(log_n), 0.0], (rows.size, 1))
        result = lbfgs_batched(lambda theta, r: objective(theta, rows[r]), start)
        n_star[rows] = np.exp(result.x[:, 0])
        slope = float(np.exp(result.x[0, 1])) if varies[0] else np.nan
    return n_star, slope


def _empirical_n_star(n: np.ndarray, success: np.ndarray, counts: np.ndarray) -> np.ndarray:
    levels = np.unique(n)
    member = n[None, :] == levels[:, None]  # (levels, rows)
    trials = counts @ member.T
    with np.errstate(invalid="ignore"):
        rate = (counts * success) @ member.T / trials
    reached = rate >= 0.5
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), levels[first], np.nan)


def _estimate(values: np.ndarray, ci: float) -> Estimate:
    point, samples = values[0], values[1:]
    tail = (1 - ci) / 2
    finite = samples[np.isfinite(samples)]
    if not np.isfinite(point) or finite.size < 2:
        return Estimate(value=float(point), se=np.nan, low=np.nan, high=np.nan)
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Estimate(value=float(point), se=float(np.std(finite, ddof=1)), low=float(low), high=float(high))

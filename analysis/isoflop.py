"""The IsoFLOP-minimum fit (Chinchilla's Approach 2): per compute budget, the model size that minimizes the loss,
and how that size and its tokens grow with the budget.

Hoffmann et al. (2022, §3.2) train several sizes at each of a few budgets C, fit a parabola of loss in log N per
budget, take its minimum N*(C), and fit N_opt ∝ C^a and D_opt ∝ C^b through the minima. Here:

* **Budgets** are the grid's own C (trials column ``flops_budget``, the budget a ``flops:`` axis designed the cell
  for), never clusters of realized compute: a tokens grid's cells do not share budgets, so it has no IsoFLOP curves
  and the fit says so (``NO_BUDGETS``).
* **A budget's minimum** comes from loss = c0 + c1·u + c2·u², u = log N, by least squares over its points (every
  seed of every size; the lr envelope when the study swept lr). It is kept only when it is a measured minimum:
  at least ``MIN_SIZES`` sizes and one point more than the parabola's three coefficients (else nothing is left to
  judge its scatter by), opening upward (c2 > 0), and *bracketed*: the lowest mean loss is at neither the smallest
  nor the largest size, and the vertex lies inside the sizes. A budget that fails is flagged with the reason and
  left out; its minimum is never extrapolated.
* **Its interval** is a residual bootstrap: the parabola's leverage-adjusted residuals r_i/√(1 − h_i), centred,
  resampled onto the fitted values and refitted (Davison & Hinkley 1997, §6.2.3); with five sizes, resampling the
  points themselves would often leave fewer than three distinct sizes. A budget whose resampled parabolas have no
  minimum more often than the interval's tail allows has an open interval: flagged and left out.
* **The exponents**: log N* = a·log C + k by least squares through the kept budgets' minima, with D_opt = C/(6·N*)
  (C = 6·N·D with N = the points' N; with N with the head that is the trials' ``flops`` convention), so b = 1 − a
  exactly. Their interval refits the line through each bootstrap resample's minima (resample j of every budget
  together), so it carries each minimum's own uncertainty; it does not widen for scatter of the minima about the
  line beyond that. a and b are
  identified with at least ``MIN_BUDGETS`` kept budgets and an interval of positive width inside (0, 1), where
  N_opt and D_opt both grow with C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.fits import Estimate
from analysis.identify import IDENTIFIED, NOT_IDENTIFIED

BUDGET = "flops_budget"
"""The trials (and points) column of a cell's designed compute budget C in FLOPs."""
MIN_SIZES = 3
MIN_BUDGETS = 3
NO_BUDGETS = (
    "no trial has a compute budget (flops_budget): IsoFLOP curves need a budget grid (grid.flops: [C1, …] with "
    "model.sizes), where every size of a budget spends the same C"
)
KEPT = "kept"


@dataclass(frozen=True)
class Budget:
    """One compute budget: its points, parabola, minimum N*(C) and whether the minimum is kept."""

    flops: float
    points: pd.DataFrame
    """Columns N and loss of the budget's points."""
    coefficients: np.ndarray | None
    """(c0, c1, c2) of loss = c0 + c1·u + c2·u², u = log N; None with fewer than 3 sizes."""
    n_opt: Estimate | None
    """N*(C) with its bootstrap interval; None when the parabola has no minimum."""
    status: str
    """``kept``, or why the budget is left out of the exponents."""
    log_n_samples: np.ndarray
    """log N* of each bootstrap resample (nan where the resampled parabola has no minimum)."""

    @property
    def kept(self) -> bool:
        return self.status == KEPT

    @property
    def sizes(self) -> int:
        return int(self.points["N"].nunique())

    def parabola(self, n: ArrayLike) -> np.ndarray:
        """The fitted loss at sizes ``n``."""
        assert self.coefficients is not None
        u = np.log(np.asarray(n, dtype=float))
        return np.polyval(self.coefficients[::-1], u)


@dataclass(frozen=True)
class IsoFlopFit:
    """Every budget's minimum and the exponents a (N_opt ∝ C^a) and b (D_opt ∝ C^b) through the kept ones."""

    budgets: tuple[Budget, ...]
    a: Estimate
    b: Estimate
    intercept: float
    """k of log N_opt = a·log C + k (nan when a is not identified)."""
    line_samples: np.ndarray
    """(a_j, k_j) per bootstrap resample, shape (S, 2); empty when a is not identified."""
    ci: float

    @property
    def kept(self) -> tuple[Budget, ...]:
        return tuple(b for b in self.budgets if b.kept)

    @property
    def identified(self) -> bool:
        return self.a.status == IDENTIFIED

    @property
    def flops_range(self) -> tuple[float, float]:
        """The smallest and largest kept budget: the range the line was measured on."""
        flops = [b.flops for b in self.kept]
        return (min(flops), max(flops)) if flops else (float("nan"), float("nan"))

    def compute_optimal(self, compute: ArrayLike) -> pd.DataFrame:
        """N_opt(C) and D_opt(C) = C/(6·N_opt) with bootstrap intervals, as ``ChinchillaFit.compute_optimal``
        gives them (columns compute, n_opt, n_opt_low, n_opt_high, d_opt, d_opt_low, d_opt_high).

        Raises ValueError when a is not identified: a line through minima the data do not determine is no
        allocation."""
        if not self.identified:
            raise ValueError(f"the IsoFLOP allocation cannot be computed: a is {self.a.status} ({self.a.reason})")
        c = np.atleast_1d(np.asarray(compute, dtype=float))
        log_c = np.log(c)
        log_n = self.a.value * log_c + self.intercept
        samples = self.line_samples[:, :1] * log_c[None] + self.line_samples[:, 1:]
        tail = (1 - self.ci) / 2
        low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
        n_opt, n_low, n_high = np.exp(log_n), np.exp(low), np.exp(high)
        return pd.DataFrame(
            {
                "compute": c,
                "n_opt": n_opt,
                "n_opt_low": n_low,
                "n_opt_high": n_high,
                "d_opt": c / (6 * n_opt),
                "d_opt_low": c / (6 * n_high),
                "d_opt_high": c / (6 * n_low),
            }
        )

    def table(self) -> pd.DataFrame:
        """One row per budget: C, sizes, N* with its interval (kept budgets), D* = C/(6·N*), and status."""
        rows = []
        for budget in self.budgets:
            est = budget.n_opt
            shown = budget.kept and est is not None
            rows.append(
                {
                    "C (FLOPs)": budget.flops,
                    "sizes": budget.sizes,
                    "N*": est.value if shown else None,
                    "N* low": est.low if shown else None,
                    "N* high": est.high if shown else None,
                    "D* = C/(6N*)": budget.flops / (6 * est.value) if shown else None,
                    "status": budget.status,
                }
            )
        return pd.DataFrame(rows)


def fit_isoflop(
    points: pd.DataFrame, *, n_bootstrap: int = 1000, ci: float = 0.95, seed: int = 0, budget: str = BUDGET
) -> IsoFlopFit:
    """Approach 2 on ``points`` (columns N, loss and the ``budget`` column; rows without a budget are ignored).

    Never raises for data that cannot identify the exponents: a and b then carry status ``not identified`` and
    the reason (no budgets, too few kept budgets, an interval that is open or outside (0, 1))."""
    rng = np.random.default_rng(seed)
    budgeted = points.groupby(budget, sort=True) if budget in points.columns else []
    budgets = tuple(
        _fit_budget(float(c), frame[["N", "loss"]].reset_index(drop=True), n_bootstrap=n_bootstrap, ci=ci, rng=rng)
        for c, frame in budgeted
    )
    kept = [b for b in budgets if b.kept]
    why = _why_no_line(budgets, kept)
    if why:
        return _unidentified(budgets, why, ci)
    log_c = np.log([b.flops for b in kept])
    log_n = np.log([b.n_opt.value for b in kept])  # type: ignore[union-attr]
    a, k = np.polyfit(log_c, log_n, 1)
    resampled = np.array([b.log_n_samples for b in kept])  # (budgets, S)
    complete = np.isfinite(resampled).all(axis=0)
    line_samples = np.array([np.polyfit(log_c, column, 1) for column in resampled[:, complete].T])
    tail = (1 - ci) / 2
    low, high = np.quantile(line_samples[:, 0], [tail, 1 - tail])
    se = float(np.std(line_samples[:, 0], ddof=1))
    verdict = _exponent_verdict(low, high)
    status, reason = (IDENTIFIED, "") if not verdict else (NOT_IDENTIFIED, verdict)
    a_est = Estimate(float(a), se, float(low), float(high), status, reason)
    b_est = Estimate(float(1 - a), se, float(1 - high), float(1 - low), status, reason)
    if status != IDENTIFIED:
        return IsoFlopFit(budgets, a_est, b_est, float("nan"), np.empty((0, 2)), ci)
    return IsoFlopFit(budgets, a_est, b_est, float(k), line_samples, ci)


def _fit_budget(flops: float, points: pd.DataFrame, *, n_bootstrap: int, ci: float, rng: np.random.Generator) -> Budget:
    sizes = np.unique(points["N"])
    none = np.full(n_bootstrap, np.nan)
    if len(sizes) < MIN_SIZES:
        why = f"{len(sizes)} size(s): a parabola in log N needs at least {MIN_SIZES}; add sizes to this budget"
        return Budget(flops, points, None, None, why, none)
    u = np.log(points["N"].to_numpy())
    loss = points["loss"].to_numpy()
    design = np.vander(u, 3, increasing=True)
    coefficients = np.linalg.lstsq(design, loss, rcond=None)[0]
    vertex = _log_vertex(coefficients[None])[0]
    if not np.isfinite(vertex):
        why = "the parabola opens downward (no minimum): the loss is not lowest between these sizes"
        return Budget(flops, points, coefficients, None, why, none)
    if len(points) <= design.shape[1]:
        why = (
            f"{len(points)} points fit the parabola exactly: no scatter is left to judge its minimum by; add a size "
            "or a seed"
        )
        return Budget(flops, points, coefficients, _point(vertex), why, none)
    samples = _bootstrap_vertices(design, loss, coefficients, n_bootstrap, rng)
    tail = (1 - ci) / 2
    est = _point(vertex)
    open_share = float(np.mean(~np.isfinite(samples)))
    if open_share <= tail:
        low, high = np.nanquantile(samples, [tail, 1 - tail])
        est = Estimate(
            float(np.exp(vertex)), float(np.nanstd(samples, ddof=1)), float(np.exp(low)), float(np.exp(high))
        )
    return Budget(flops, points, coefficients, est, _budget_status(points, sizes, vertex, open_share, tail), samples)


def _budget_status(points: pd.DataFrame, sizes: np.ndarray, vertex: float, open_share: float, tail: float) -> str:
    """``kept``, or why a budget's minimum is not a measured one (module docstring)."""
    lowest = points.groupby("N")["loss"].mean().idxmin()
    shown = f"{np.exp(vertex):.3g}"
    if lowest in (sizes[0], sizes[-1]) or not np.log(sizes[0]) < vertex < np.log(sizes[-1]):
        side = "smallest" if lowest == sizes[0] or vertex <= np.log(sizes[0]) else "largest"
        return (
            f"minimum at the edge: the lowest loss is at or beyond the {side} size (vertex N = {shown}, sizes "
            f"{sizes[0]:.3g}–{sizes[-1]:.3g}), so it is not bracketed; add sizes beyond the {side}"
        )
    if open_share > tail:
        return (
            f"minimum not identified: {open_share:.0%} of the resampled parabolas have no minimum; add sizes or "
            "seeds to this budget"
        )
    return KEPT


def _bootstrap_vertices(
    design: np.ndarray, loss: np.ndarray, coefficients: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    fitted = design @ coefficients
    leverage = np.einsum("ij,ji->i", design, np.linalg.pinv(design))
    adjusted = (loss - fitted) / np.sqrt(np.clip(1 - leverage, 1e-12, None))
    adjusted -= adjusted.mean()
    draws = rng.choice(adjusted, size=(n_bootstrap, len(loss)), replace=True)
    refits = np.linalg.lstsq(design, (fitted[None] + draws).T, rcond=None)[0].T  # (S, 3)
    return _log_vertex(refits)


def _log_vertex(coefficients: np.ndarray) -> np.ndarray:
    """u* = −c1/(2·c2) per row of (c0, c1, c2); nan where the parabola has no minimum (c2 ≤ 0)."""
    c1, c2 = coefficients[:, 1], coefficients[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c2 > 0, -c1 / (2 * c2), np.nan)


def _point(log_vertex: float) -> Estimate:
    return Estimate(float(np.exp(log_vertex)), float("nan"), float("nan"), float("nan"))


def _why_no_line(budgets: tuple[Budget, ...], kept: list[Budget]) -> str:
    if not budgets:
        return NO_BUDGETS
    if len(kept) >= MIN_BUDGETS:
        return ""
    left = "; ".join(f"C = {b.flops:.3g}: {b.status}" for b in budgets if not b.kept)
    return (
        f"{len(kept)} of {len(budgets)} budgets have a bracketed minimum; a line through the minima needs at least "
        f"{MIN_BUDGETS}: add budgets" + (f" (left out: {left})" if left else "")
    )


def _exponent_verdict(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return f"the bootstrap interval [{low:.3g}, {high:.3g}] has no width: the minima do not vary under resampling"
    if low <= 0 or high >= 1:
        return (
            f"its interval [{low:.3g}, {high:.3g}] is not inside (0, 1), where N_opt and D_opt both grow with C: "
            "the minima do not determine how the optimum moves; add budgets over a wider range or sizes per budget"
        )
    return ""


def _unidentified(budgets: tuple[Budget, ...], why: str, ci: float) -> IsoFlopFit:
    nan = float("nan")
    est = Estimate(nan, nan, nan, nan, NOT_IDENTIFIED, why)
    return IsoFlopFit(budgets, est, est, nan, np.empty((0, 2)), ci)

"""Minimizing one objective from many starting points at once.

Epoch AI fit the Chinchilla law by calling scipy's L-BFGS-B once per start of a 4,500-point grid, and a
bootstrap repeats a fit per resample. Both are thousands of small, independent minimizations of the same
function. Here they run as one batched L-BFGS whose every step evaluates all rows in a single vectorized
call; only the few best candidates are then finished by scipy's L-BFGS-B, so the reported optimum is the one
the per-start loop finds.

Box constraints (``Bounds``: exponents kept non-negative, as OLMo's ladder fit does) are handled by projection:
a coordinate at a bound whose gradient points out of the box is held fixed for that step, the L-BFGS direction
is computed on the others, and every trial point of the line search is projected back into the box. The polish
passes the same bounds to scipy's L-BFGS-B, so a constrained optimum is the one L-BFGS-B finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(θ rows (m, p), their row ids (m,)) → (f (m,), ∂f/∂θ (m, p)); row ids select per-row data such as
weights."""

# Stopping tests are relative to |f|, not to max(|f|, 1) as scipy's are: a summed Huber loss with δ = 1e-3 is
# ~1e-3, where scipy's default stops within a dozen steps of any start and bootstrap intervals collapse to
# nothing.
_FTOL = 1e-12
_GTOL = 1e-9
_ARMIJO = 1e-4
_MAX_HALVINGS = 50


@dataclass(frozen=True)
class Bounds:
    """Per-parameter box ``lower ≤ θ ≤ upper`` (−inf / +inf where a side is free)."""

    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def free(cls, n_params: int) -> Bounds:
        return cls(np.full(n_params, -np.inf), np.full(n_params, np.inf))

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lower, self.upper)

    def held(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Coordinates at a bound whose descent direction −g points out of the box."""
        return ((x <= self.lower) & (g > 0)) | ((x >= self.upper) & (g < 0))

    def scipy(self) -> list[tuple[float | None, float | None]]:
        return [(_finite_or_none(lo), _finite_or_none(hi)) for lo, hi in zip(self.lower, self.upper, strict=True)]


@dataclass(frozen=True)
class BatchResult:
    """Where each row of a batched minimization ended."""

    x: np.ndarray
    fun: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray


@dataclass(frozen=True)
class MultistartResult:
    """The best minimum over all starts, and how many starts reached it."""

    x: np.ndarray
    fun: float
    n_starts: int
    n_at_best: int
    """Screened candidates that converged to within 1e-6 (relative) of the best: 0 or 1 means a fragile
    optimum."""


def lbfgs_batched(
    fun: BatchObjective,
    x0: np.ndarray,
    *,
    max_iter: int = 1000,
    memory: int = 10,
    ftol: float = _FTOL,
    gtol: float = _GTOL,
    bounds: Bounds | None = None,
) -> BatchResult:
    """Minimize every row of ``x0`` independently with L-BFGS and a backtracking (Armijo) line search, inside
    ``bounds`` (module docstring) when given.

    A row stops when a step decreases f by less than ``ftol``·|f| or the largest component of the projected
    gradient falls below ``gtol``·|f|. A row whose line search cannot decrease f stops where it is (not
    converged), like scipy's ABNORMAL_TERMINATION.
    """
    n_rows, n_params = x0.shape
    bounds = bounds or Bounds.free(n_params)
    x = bounds.project(x0.astype(float))
    f, g = fun(x, np.arange(n_rows))
    s_hist = np.zeros((n_rows, memory, n_params))
    y_hist = np.zeros((n_rows, memory, n_params))
    rho = np.zeros((n_rows, memory))  # 0 marks an empty slot; the two-loop recursion then skips it
    active = np.isfinite(f) & np.isfinite(g).all(axis=1)
    converged = np.zeros(n_rows, dtype=bool)
    iterations = np.zeros(n_rows, dtype=int)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        held = bounds.held(x[rows], g[rows])
        free_g = np.where(held, 0.0, g[rows])
        direction = np.where(held, 0.0, _two_loop(free_g, s_hist[rows], y_hist[rows], rho[rows]))
        slope = np.einsum("ij,ij->i", free_g, direction)
        lost = ~(slope < 0)
        if lost.any():  # curvature pairs stopped describing f: restart from steepest descent
            rho[rows[lost]] = 0.0
            direction[lost] = -free_g[lost]
            slope[lost] = np.einsum("ij,ij->i", free_g[lost], direction[lost])
        x_new, f_new, g_new, moved = _backtrack(fun, rows, x[rows], f[rows], free_g, direction, bounds)
        stalled = rows[~moved]
        active[stalled] = False
        rows, x_new, f_new, g_new = rows[moved], x_new[moved], f_new[moved], g_new[moved]
        step, change = x_new - x[rows], g_new - g[rows]
        curvature = np.einsum("ij,ij->i", step, change)
        # Keep H positive definite: store a pair only when it has positive curvature (scipy's test).
        store = curvature > np.finfo(float).eps * np.einsum("ij,ij->i", change, change)
        kept = rows[store]
        s_hist[kept] = np.concatenate([step[store, None], s_hist[kept, :-1]], axis=1)
        y_hist[kept] = np.concatenate([change[store, None], y_hist[kept, :-1]], axis=1)
        rho[kept] = np.concatenate([1.0 / curvature[store, None], rho[kept, :-1]], axis=1)
        scale = np.maximum(np.abs(f[rows]), np.abs(f_new))
        projected_g = np.where(bounds.held(x_new, g_new), 0.0, g_new)
        done = (f[rows] - f_new <= ftol * scale) | (np.abs(projected_g).max(axis=1) <= gtol * scale)
        x[rows], f[rows], g[rows] = x_new, f_new, g_new
        iterations[rows] += 1
        converged[rows[done]] = True
        active[rows[done]] = False
    return BatchResult(x=x, fun=f, converged=converged, iterations=iterations)


def multistart(
    fun: BatchObjective,
    starts: np.ndarray,
    *,
    screen_iter: int = 10,
    keep: int = 64,
    polish: int = 4,
    finish_iter: int = 200,
    bounds: Bounds | None = None,
) -> MultistartResult:
    """Minimize from every start and return the best minimum.

    All starts take ``screen_iter`` batched L-BFGS steps; the ``keep`` lowest continue for up to ``finish_iter``
    more; the ``polish`` best of those are finished to convergence by scipy's L-BFGS-B, the call a per-start loop
    makes, so the result is that loop's optimum whenever one of its basins survives the screen. ``fun`` must not
    depend on row ids.
    """
    rows = np.arange(len(starts))
    bounds = bounds or Bounds.free(starts.shape[1])
    screened = lbfgs_batched(fun, starts, max_iter=screen_iter, bounds=bounds)
    best_rows = rows[np.argsort(_finite_or_inf(screened.fun))[:keep]]
    # The finish only ranks the kept starts for the polish, which runs to convergence; on an ill-conditioned
    # problem (a flat valley of E against A) a few rows would otherwise creep on for a thousand iterations.
    finished = lbfgs_batched(
        lambda x, r: fun(x, best_rows[r]), screened.x[best_rows], max_iter=finish_iter, bounds=bounds
    )
    order = np.argsort(_finite_or_inf(finished.fun))[:polish]
    polished = [_polish(fun, finished.x[i], finished.fun[i], bounds) for i in order]
    x_best, f_best = min(polished, key=lambda xf: xf[1])
    n_at_best = int(np.sum(_finite_or_inf(finished.fun) <= f_best * (1 + 1e-6)))
    return MultistartResult(x=x_best, fun=f_best, n_starts=len(starts), n_at_best=n_at_best)


def _polish(fun: BatchObjective, x0: np.ndarray, f0: float, bounds: Bounds) -> tuple[np.ndarray, float]:
    """scipy's L-BFGS-B from ``x0`` on f/f0, so that its absolute stopping tests act as relative ones."""
    row = np.zeros(1, dtype=int)

    def scaled(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(x[None], row)
        return float(f[0]) / f0, g[0] / f0

    options = {"ftol": _FTOL, "gtol": _GTOL}
    result = minimize(scaled, x0, jac=True, method="L-BFGS-B", bounds=bounds.scipy(), options=options)
    f = float(fun(result.x[None], row)[0][0])
    return (result.x, f) if np.isfinite(f) and f <= f0 else (x0, f0)


def _two_loop(g: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """−H·g for every row, H the L-BFGS inverse-Hessian estimate from the stored pairs (newest first)."""
    q = g.copy()
    coef = np.zeros(rho.shape)
    for i in range(rho.shape[1]):
        coef[:, i] = rho[:, i] * np.einsum("ij,ij->i", s_hist[:, i], q)
        q -= coef[:, i, None] * y_hist[:, i]
    newest_yy = np.einsum("ij,ij->i", y_hist[:, 0], y_hist[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        # No pairs yet: a first step of length 1 along −g, as scipy's first line search tries.
        gamma = np.where(
            rho[:, 0] > 0, 1.0 / (rho[:, 0] * newest_yy), 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300)
        )
    r = gamma[:, None] * q
    for i in reversed(range(rho.shape[1])):
        beta = rho[:, i] * np.einsum("ij,ij->i", y_hist[:, i], r)
        r += s_hist[:, i] * (coef[:, i] - beta)[:, None]
    return -r


def _backtrack(
    fun: BatchObjective,
    rows: np.ndarray,
    x: np.ndarray,
    f: np.ndarray,
    g: np.ndarray,
    direction: np.ndarray,
    bounds: Bounds,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Armijo backtracking along the projected path for every row at once; only rows still searching are
    evaluated again. Sufficient decrease is measured against gᵀ(x_trial − x), the first-order change of the step
    actually taken (a projected step can be shorter than step·direction)."""
    x_new, f_new, g_new = x.copy(), f.copy(), np.zeros_like(x)
    moved = np.zeros(len(rows), dtype=bool)
    step = np.ones(len(rows))
    pending = np.arange(len(rows))
    for _ in range(_MAX_HALVINGS):
        trial = bounds.project(x[pending] + step[pending, None] * direction[pending])
        f_trial, g_trial = fun(trial, rows[pending])
        predicted = np.einsum("ij,ij->i", g[pending], trial - x[pending])
        with np.errstate(invalid="ignore"):
            ok = (predicted < 0) & (f_trial <= f[pending] + _ARMIJO * predicted) & np.isfinite(g_trial).all(axis=1)
        accepted = pending[ok]
        x_new[accepted], f_new[accepted], g_new[accepted] = trial[ok], f_trial[ok], g_trial[ok]
        moved[accepted] = True
        pending = pending[~ok]
        if pending.size == 0:
            break
        step[pending] *= 0.5
    return x_new, f_new, g_new, moved


def _finite_or_inf(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.inf)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

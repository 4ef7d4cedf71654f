"""Fitting scaling laws: the single-variable law L(x) and the joint Chinchilla law L(N, D), with bootstrap
intervals.

Both fits follow Hoffmann et al. (2022, Approach 3) as replicated by Besiroglu et al. (2024, Epoch AI): the
law in log space (see ``analysis.law``), the summed Huber loss (δ = 1e-3) of log residuals, L-BFGS from
Epoch's grid of starting points, the best optimum kept. Uncertainty is a nonparametric bootstrap over points:
every resample is refitted from the full-data optimum, and every parameter and derived quantity gets a
percentile interval from the same resamples. Fits take arrays and keyword-only options and return frozen
dataclasses, as scikit-learn estimators and Marin's ``ScalingFit`` do; turning a results table into arrays is
``analysis.points``'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.law import HUBER_DELTA, LogSpaceLaw
from analysis.optimize import lbfgs_batched, multistart

_ThetaFunction = Callable[[np.ndarray], np.ndarray]
"""Log-space parameter rows (S, p) → one value per row (S,)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap standard error and percentile interval."""

    value: float
    se: float
    low: float
    high: float


@dataclass(frozen=True)
class FitOptions:
    """How a law is fitted; the defaults are Epoch AI's replication of Chinchilla's Approach 3."""

    delta: float = HUBER_DELTA
    drop_highest: int = 0
    """Drop the k highest-loss points before fitting (Epoch drop 5 on the Chinchilla data)."""
    overestimate_weight: float = 1.0
    """Multiplies the Huber loss of points the law overestimates; > 1 penalizes optimistic fits
    asymmetrically."""
    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class _LawFit:
    theta: np.ndarray
    """Fitted log-space parameters ``[a_1..a_k, e, α_1..α_k]`` (see ``analysis.law``)."""
    objective: float
    """Summed Huber loss of log residuals at the optimum."""
    points: pd.DataFrame
    """Every input point: the variables, ``loss``, ``used`` (False if dropped) and ``residual`` = log L − log
    L̂."""
    bootstrap_theta: np.ndarray
    """Refitted parameters per bootstrap resample, rows as ``theta`` (non-finite fits removed)."""
    options: FitOptions
    n_starts: int
    n_at_best: int
    """Screened starts that reached the best optimum; 0 or 1 means the optimum is fragile."""
    _law: LogSpaceLaw = field(repr=False)

    @property
    def n_points(self) -> int:
        return int(self.points["used"].sum())

    def params(self) -> dict[str, Estimate]:
        """E, A(, B), α(, β) in natural units with bootstrap intervals."""
        return {name: self._estimate(fn) for name, fn in self._param_functions().items()}

    def bootstrap_samples(self) -> pd.DataFrame:
        """Every parameter and derived quantity, one row per bootstrap resample."""
        with _wild_resamples():
            return pd.DataFrame({name: fn(self.bootstrap_theta) for name, fn in self._param_functions().items()})

    def table(self) -> pd.DataFrame:
        """Every parameter and derived quantity as rows of value, se, low, high."""
        rows = {name: vars(est) for name, est in self.params().items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def _predict(self, *variables: ArrayLike) -> np.ndarray:
        arrays = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in variables])
        log_x = np.log(np.column_stack([a.ravel() for a in arrays]))
        return np.exp(self._law.log_predict(self.theta, log_x)[0]).reshape(arrays[0].shape)

    def _predict_interval(self, *variables: ArrayLike) -> pd.DataFrame:
        arrays = [a.ravel() for a in np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in variables])]
        samples = np.exp(self._law.log_predict(self.bootstrap_theta, np.log(np.column_stack(arrays))))
        low, high = self._quantiles(samples)
        return pd.DataFrame({"loss": self._predict(*arrays), "low": low, "high": high})

    def _estimate(self, fn: _ThetaFunction) -> Estimate:
        value = float(fn(self.theta[None])[0])
        with _wild_resamples():
            samples = fn(self.bootstrap_theta)
            low, high = self._quantiles(samples)
            se = float(np.nanstd(samples, ddof=1))
        return Estimate(value=value, se=se, low=float(low), high=float(high))

    def _quantiles(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # nan-aware: a resample whose exponents leave their domain (α ≤ 0) has no compute-optimal allocation.
        tail = (1 - self.options.ci) / 2
        return np.nanquantile(samples, tail, axis=0), np.nanquantile(samples, 1 - tail, axis=0)

    def _param_functions(self) -> dict[str, _ThetaFunction]:
        k = self._law.k
        functions: dict[str, _ThetaFunction] = {"E": lambda t: np.exp(t[:, k])}
        for j, name in enumerate(("A", "B")[:k]):
            functions[name] = lambda t, j=j: np.exp(t[:, j])
        for j, name in enumerate(("alpha", "beta")[:k]):
            functions[name] = lambda t, j=j: t[:, k + 1 + j]
        return functions


@dataclass(frozen=True)
class PowerLawFit(_LawFit):
    """L(x) = E + A·x^(−α)."""

    def predict(self, x: ArrayLike) -> np.ndarray:
        return self._predict(x)

    def predict_interval(self, x: ArrayLike) -> pd.DataFrame:
        """Columns loss (the fit), low and high (bootstrap percentiles at ``options.ci``)."""
        return self._predict_interval(x)


@dataclass(frozen=True)
class ChinchillaFit(_LawFit):
    """L(N, D) = E + A/N^α + B/D^β, with compute-optimal allocation under C = 6·N·D."""

    def predict(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        return self._predict(n, d)

    def predict_interval(self, n: ArrayLike, d: ArrayLike) -> pd.DataFrame:
        """Columns loss (the fit), low and high (bootstrap percentiles at ``options.ci``)."""
        return self._predict_interval(n, d)

    def _param_functions(self) -> dict[str, _ThetaFunction]:
        functions = super()._param_functions()
        # Minimizing L(N, C/6N) over N gives N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022, eq. 4).
        functions["a"] = lambda t: t[:, 4] / (t[:, 3] + t[:, 4])
        functions["b"] = lambda t: t[:, 3] / (t[:, 3] + t[:, 4])
        return functions

    def compute_optimal(self, compute: ArrayLike) -> pd.DataFrame:
        """N_opt(C), D_opt(C) and the loss there, each with bootstrap intervals; C in FLOPs (C = 6·N·D)."""
        c = np.atleast_1d(np.asarray(compute, dtype=float))
        out = {"compute": c}
        for name, fn in (("n_opt", _n_opt), ("d_opt", _d_opt)):
            out[name] = fn(self.theta[None], c)[0]
            out[f"{name}_low"], out[f"{name}_high"] = self._quantiles(fn(self.bootstrap_theta, c))
        loss = self._predict_interval(out["n_opt"], out["d_opt"])
        out["loss"] = loss["loss"].to_numpy()
        return pd.DataFrame(out)


def _wild_resamples() -> np.errstate:
    # A resample of a small, ill-conditioned group can fit a = 800 (A = e^800 = inf): inf is the honest value and its
    # interval end is inf, so the overflow is not worth a warning.
    return np.errstate(over="ignore", invalid="ignore")


def _log_g(t: np.ndarray) -> np.ndarray:
    # G = (αA / βB)^(1/(α+β)), so N_opt = G·(C/6)^a and D_opt = (C/6)^b / G.
    a, b, alpha, beta = t[:, 0], t[:, 1], t[:, 3], t[:, 4]
    return (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)


def _n_opt(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    share = t[:, 4] / (t[:, 3] + t[:, 4])
    with np.errstate(invalid="ignore"):
        return np.exp(_log_g(t)[:, None] + share[:, None] * np.log(c / 6)[None])


def _d_opt(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    return c[None] / (6 * _n_opt(t, c))


def fit_power_law(
    x: ArrayLike,
    loss: ArrayLike,
    *,
    drop_highest: int = 0,
    overestimate_weight: float = 1.0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> PowerLawFit:
    """Fit L(x) = E + A·x^(−α) for x = parameters, tokens or compute, Chinchilla/Epoch style."""
    options = FitOptions(delta, drop_highest, overestimate_weight, n_bootstrap, ci, seed)
    return PowerLawFit(**_fit(LogSpaceLaw(1), {"x": x}, loss, options))


def fit_chinchilla(
    n: ArrayLike,
    d: ArrayLike,
    loss: ArrayLike,
    *,
    drop_highest: int = 0,
    overestimate_weight: float = 1.0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β exactly as Besiroglu et al. (2024) replicate Hoffmann et al. (2022)."""
    options = FitOptions(delta, drop_highest, overestimate_weight, n_bootstrap, ci, seed)
    return ChinchillaFit(**_fit(LogSpaceLaw(2), {"N": n, "D": d}, loss, options))


def _fit(law: LogSpaceLaw, variables: dict[str, ArrayLike], loss: ArrayLike, options: FitOptions) -> dict:
    points = pd.DataFrame({name: np.asarray(v, dtype=float).ravel() for name, v in variables.items()})
    points["loss"] = np.asarray(loss, dtype=float).ravel()
    values = points.to_numpy()
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError("scaling-law points must be finite and positive (sizes, tokens, compute and losses)")
    n_used = len(points) - options.drop_highest
    if n_used < law.n_params:
        raise ValueError(f"{n_used} points cannot determine {law.n_params} parameters; need at least {law.n_params}")
    # Exactly k points leave; Epoch's `loss < sorted(loss)[-k]` would also drop ties with the k-th highest.
    points["used"] = True
    points.loc[points["loss"].nlargest(options.drop_highest).index, "used"] = False
    used = points[points["used"]]
    log_x, log_y = np.log(used[list(variables)].to_numpy()), np.log(used["loss"].to_numpy())
    objective_options = {"delta": options.delta, "overestimate_weight": options.overestimate_weight}
    ones = np.ones(len(used))

    def full_data(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return law.objective(theta, log_x, log_y, ones, **objective_options)

    best = multistart(full_data, law.start_grid())
    counts = (
        np.random.default_rng(options.seed)
        .multinomial(len(used), np.full(len(used), 1 / len(used)), size=options.n_bootstrap)
        .astype(float)
    )

    def resampled(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return law.objective(theta, log_x, log_y, counts[rows], **objective_options)

    refits = lbfgs_batched(resampled, np.tile(best.x, (options.n_bootstrap, 1)))
    all_log_x = np.log(points[list(variables)].to_numpy())
    points["residual"] = np.log(points["loss"].to_numpy()) - law.log_predict(best.x[None], all_log_x)[0]
    return {
        "theta": best.x,
        "objective": best.fun,
        "points": points,
        "bootstrap_theta": refits.x[np.isfinite(refits.fun)],
        "options": options,
        "n_starts": best.n_starts,
        "n_at_best": best.n_at_best,
        "_law": law,
    }

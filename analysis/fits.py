"""Fitting scaling laws: the single-variable law L(x) and the joint Chinchilla law L(N, D), with bootstrap
intervals.

Both fits follow Hoffmann et al. (2022, Approach 3) as replicated by Besiroglu et al. (2024, Epoch AI): the
law in log space (see ``analysis.law``), the summed Huber loss (δ = 1e-3) of log residuals, L-BFGS from
Epoch's grid of starting points, the best optimum kept. Uncertainty is a nonparametric bootstrap over points:
every resample is refitted from the full-data optimum, and every parameter and derived quantity gets a
percentile interval from the same resamples. Fits take arrays and keyword-only options and return frozen
dataclasses, as scikit-learn estimators and Marin's ``ScalingFit`` do; turning a results table into arrays is
``analysis.points``'s job.

Beyond Epoch's procedure: exponents are bounded to [0, 2] and E to [1e-4·L_min, L_min] (``analysis.law``), so a
fit that wants a negative exponent or E → 0 stops at the bound and says so; E can be given (``e_given``) and the
two exponents shared (``shared_exponent``), forms with fewer free parameters for data that cannot determine all
five; points can be weighted (``weights``, e.g. by their eval-loss standard errors); and every estimate carries
its identifiability verdict (``analysis.identify``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.errors import AnalysisInputError
from analysis.identify import FINDINGS, Verdict, judge
from analysis.law import HUBER_DELTA, LawForm
from analysis.optimize import Bounds, lbfgs_batched, multistart

_ThetaFunction = Callable[[np.ndarray], np.ndarray]
"""Log-space parameter rows (S, p) → one value per row (S,)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap standard error, percentile interval and identifiability status."""

    value: float
    se: float
    low: float
    high: float
    status: str = "identified"
    """identified, at bound, not identified, given or by form (``analysis.identify``)."""
    reason: str = ""
    """Why it is not a finding, and what data would fix it (empty when it is one)."""

    @property
    def is_finding(self) -> bool:
        """Whether the data determine this value (identified) or it was given."""
        return self.status in FINDINGS


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
    """Fitted log-space parameters ``[a_1..a_k, e, α_1..α_k]`` (see ``analysis.law``; given or shared ones
    included)."""
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
    form: LawForm = field(repr=False)

    @property
    def n_points(self) -> int:
        return int(self.points["used"].sum())

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(c for c in self.points.columns if c not in ("loss", "used", "residual", "weight"))

    def params(self) -> dict[str, Estimate]:
        """E, A(, B), α(, β) (and a, b for the joint law) in natural units with bootstrap intervals and
        identifiability verdicts."""
        return dict(self._judged_params)

    @cached_property
    def _judged_params(self) -> dict[str, Estimate]:
        # a report or recommendation asks a fit for its parameters many times; the fit never changes
        functions = self._param_functions()
        raw = {name: self._estimate(fn) for name, fn in functions.items()}
        verdicts = self.verdicts(raw)
        return {name: _with_verdict(est, verdicts[name]) for name, est in raw.items()}

    def verdicts(self, raw: dict[str, Estimate] | None = None) -> dict[str, Verdict]:
        """The identifiability verdict of every parameter (``analysis.identify``)."""
        raw = raw or {name: self._estimate(fn) for name, fn in self._param_functions().items()}
        return judge(
            form=self.form,
            variables=self.variables,
            points=self.points,
            values={name: est.value for name, est in raw.items()},
            samples=self.bootstrap_samples(),
            ci=self.options.ci,
        )

    @property
    def identified(self) -> bool:
        """Whether every parameter is a finding or fixed by the form (the law as a whole can be used)."""
        return all(est.is_finding or est.status == "by form" for est in self.params().values())

    def bootstrap_samples(self) -> pd.DataFrame:
        """Every parameter and derived quantity, one row per bootstrap resample."""
        with _wild_resamples():
            return pd.DataFrame({name: fn(self.bootstrap_theta) for name, fn in self._param_functions().items()})

    def table(self) -> pd.DataFrame:
        """Every parameter and derived quantity as rows of value, se, low, high, status and reason."""
        rows = {name: vars(est) for name, est in self.params().items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def _predict(self, *variables: ArrayLike) -> np.ndarray:
        arrays = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in variables])
        log_x = np.log(np.column_stack([a.ravel() for a in arrays]))
        return np.exp(self.form.law.log_predict(self.theta, log_x)[0]).reshape(arrays[0].shape)

    def _predict_interval(self, *variables: ArrayLike, observation_noise: bool) -> pd.DataFrame:
        arrays = [a.ravel() for a in np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in variables])]
        log_samples = self.form.law.log_predict(self.bootstrap_theta, np.log(np.column_stack(arrays)))
        if observation_noise:
            log_samples = log_samples + self._residual_draws(log_samples.shape)
        low, high = self._quantiles(np.exp(log_samples))
        return pd.DataFrame({"loss": self._predict(*arrays), "low": low, "high": high})

    def _residual_draws(self, shape: tuple[int, ...]) -> np.ndarray:
        """Log residuals of the fitted points, resampled, for a prediction interval: an observation is the law
        plus the scatter the fit leaves. Inflated by √(n/(n−p)) because residuals at the points a fit was made on
        understate the scatter at new ones."""
        residuals = self.points.loc[self.points["used"], "residual"].to_numpy()
        n, p = len(residuals), self.form.n_free
        inflation = np.sqrt(n / (n - p)) if n > p else np.inf
        rng = np.random.default_rng(self.options.seed + 1)
        return inflation * rng.choice(residuals, size=shape, replace=True)

    def _estimate(self, fn: _ThetaFunction) -> Estimate:
        with _wild_resamples():
            value = float(fn(self.theta[None])[0])
            samples = fn(self.bootstrap_theta)
            low, high = self._quantiles(samples)
            se = float(np.nanstd(samples, ddof=1))
        return Estimate(value=value, se=se, low=float(low), high=float(high))

    def _quantiles(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # nan-aware: a resample whose exponents leave their domain (α ≤ 0) has no compute-optimal allocation.
        tail = (1 - self.options.ci) / 2
        return np.nanquantile(samples, tail, axis=0), np.nanquantile(samples, 1 - tail, axis=0)

    def _param_functions(self) -> dict[str, _ThetaFunction]:
        k = self.form.k
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

    def predict_interval(self, x: ArrayLike, *, observation_noise: bool = False) -> pd.DataFrame:
        """Columns loss (the fit), low and high: bootstrap percentiles at ``options.ci`` of the law (or, with
        ``observation_noise``, of a new observation: the law plus resampled residuals)."""
        return self._predict_interval(x, observation_noise=observation_noise)


@dataclass(frozen=True)
class ChinchillaFit(_LawFit):
    """L(N, D) = E + A/N^α + B/D^β, with compute-optimal allocation under C = 6·N·D."""

    def predict(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        return self._predict(n, d)

    def why_no_allocation(self) -> str:
        """Why the compute-optimal allocation cannot be computed from this fit (empty when it can)."""
        return _why_no_allocation(self.params())

    def predict_interval(self, n: ArrayLike, d: ArrayLike, *, observation_noise: bool = False) -> pd.DataFrame:
        """Columns loss (the fit), low and high: bootstrap percentiles at ``options.ci`` of the law (or, with
        ``observation_noise``, of a new observation: the law plus resampled residuals)."""
        return self._predict_interval(n, d, observation_noise=observation_noise)

    def _param_functions(self) -> dict[str, _ThetaFunction]:
        functions = super()._param_functions()
        # Minimizing L(N, C/6N) over N gives N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022, eq. 4).
        functions["a"] = lambda t: t[:, 4] / (t[:, 3] + t[:, 4])
        functions["b"] = lambda t: t[:, 3] / (t[:, 3] + t[:, 4])
        return functions

    def compute_optimal(self, compute: ArrayLike) -> pd.DataFrame:
        """N_opt(C), D_opt(C) and the loss there, each with bootstrap intervals; C in FLOPs (C = 6·N·D).

        Raises AnalysisInputError when A, B, α or β is not identified, or a is fixed by the form: an allocation
        computed from numbers the data do not determine is not a finding."""
        why = self.why_no_allocation()
        if why:
            raise AnalysisInputError(f"the compute-optimal allocation cannot be computed: {why}")
        c = np.atleast_1d(np.asarray(compute, dtype=float))
        out = {"compute": c}
        for name, fn in (("n_opt", _n_opt), ("d_opt", _d_opt)):
            out[name] = fn(self.theta[None], c)[0]
            out[f"{name}_low"], out[f"{name}_high"] = self._quantiles(fn(self.bootstrap_theta, c))
        out["loss"] = self._predict(out["n_opt"], out["d_opt"])
        return pd.DataFrame(out)

    def compute_for_loss(self, loss: float) -> Estimate:
        """The budget C at which the compute-optimal loss reaches ``loss``, with the bootstrap interval (``high`` is
        inf when some resamples' E is at or above ``loss``: their frontier never reaches it). Along the frontier
        L_opt(C) = E + K·(C/6)^(−αβ/(α+β)) with K = A·G^(−α) + B·G^β, so C = 6·(K/(L − E))^((α+β)/(αβ)). Raises
        AnalysisInputError when ``loss`` is at or below the fitted E: no budget reaches it."""
        e = float(np.exp(self.theta[2]))
        if loss <= e:
            raise AnalysisInputError(
                f"--loss {loss:g}: not reachable: at or below the law's irreducible loss E = {e:.4g} nats/token"
            )
        samples = _compute_at_loss(self.bootstrap_theta, loss)
        tail = (1 - self.options.ci) / 2
        low, high = np.quantile(np.where(np.isfinite(samples), samples, np.inf), [tail, 1 - tail])
        return Estimate(float(_compute_at_loss(self.theta[None], loss)[0]), float("nan"), float(low), float(high))


def _why_no_allocation(params: dict[str, Estimate]) -> str:
    if params["a"].status == "by form":
        return f"a: {params['a'].reason}"
    missing = [
        f"{name} {params[name].status} ({params[name].reason})"
        for name in ("A", "B", "alpha", "beta")
        if params[name].status != "identified"
    ]
    return "; ".join(missing)


def _wild_resamples() -> np.errstate:
    # A resample of a small, ill-conditioned group can fit a = 800 (A = e^800 = inf), or α = β = 0 (a = 0/0): inf and
    # nan are the honest values and the verdicts say what they mean, so the overflow is not worth a warning.
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _log_g(t: np.ndarray) -> np.ndarray:
    # G = (αA / βB)^(1/(α+β)), so N_opt = G·(C/6)^a and D_opt = (C/6)^b / G.
    a, b, alpha, beta = t[:, 0], t[:, 1], t[:, 3], t[:, 4]
    return (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)


def _n_opt(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    share = t[:, 4] / (t[:, 3] + t[:, 4])
    with np.errstate(invalid="ignore"):
        return np.exp(_log_g(t)[:, None] + share[:, None] * np.log(c / 6)[None])


def _compute_at_loss(t: np.ndarray, loss: float) -> np.ndarray:
    a, b, alpha, beta = t[:, 0], t[:, 1], t[:, 3], t[:, 4]
    log_g = _log_g(t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.exp(a - alpha * log_g) + np.exp(b + beta * log_g)
        gap = loss - np.exp(t[:, 2])
        compute = 6 * (k / gap) ** ((alpha + beta) / (alpha * beta))
    return np.where(gap > 0, compute, np.inf)


def _d_opt(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    return c[None] / (6 * _n_opt(t, c))


def _with_verdict(estimate: Estimate, verdict: Verdict) -> Estimate:
    return Estimate(estimate.value, estimate.se, estimate.low, estimate.high, verdict.status, verdict.reason)


def fit_power_law(
    x: ArrayLike,
    loss: ArrayLike,
    *,
    e_given: float | None = None,
    weights: ArrayLike | None = None,
    drop_highest: int = 0,
    overestimate_weight: float = 1.0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> PowerLawFit:
    """Fit L(x) = E + A·x^(−α) for x = parameters, tokens or compute, Chinchilla/Epoch style (E given or
    fitted)."""
    options = FitOptions(delta, drop_highest, overestimate_weight, n_bootstrap, ci, seed)
    return PowerLawFit(**_fit(LawForm(1, e_given=e_given), {"x": x}, loss, weights, options))


def fit_chinchilla(
    n: ArrayLike,
    d: ArrayLike,
    loss: ArrayLike,
    *,
    e_given: float | None = None,
    shared_exponent: bool = False,
    weights: ArrayLike | None = None,
    drop_highest: int = 0,
    overestimate_weight: float = 1.0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β exactly as Besiroglu et al. (2024) replicate Hoffmann et al. (2022);
    optionally with E given or with one exponent for both terms (α = β)."""
    options = FitOptions(delta, drop_highest, overestimate_weight, n_bootstrap, ci, seed)
    form = LawForm(2, e_given=e_given, shared_exponent=shared_exponent)
    return ChinchillaFit(**_fit(form, {"N": n, "D": d}, loss, weights, options))


def _fit(
    form: LawForm,
    variables: dict[str, ArrayLike],
    loss: ArrayLike,
    weights: ArrayLike | None,
    options: FitOptions,
) -> dict:
    law = form.law
    points = pd.DataFrame({name: np.asarray(v, dtype=float).ravel() for name, v in variables.items()})
    points["loss"] = np.asarray(loss, dtype=float).ravel()
    values = points.to_numpy()
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError("scaling-law points must be finite and positive (sizes, tokens, compute and losses)")
    points["weight"] = 1.0 if weights is None else np.asarray(weights, dtype=float).ravel()
    if not (np.isfinite(points["weight"]).all() and (points["weight"] > 0).all()):
        raise ValueError("point weights must be finite and positive")
    n_used = len(points) - options.drop_highest
    if n_used < form.n_free:
        raise ValueError(f"{n_used} points cannot determine {form.n_free} parameters; need at least {form.n_free}")
    # Exactly k points leave; Epoch's `loss < sorted(loss)[-k]` would also drop ties with the k-th highest.
    points["used"] = True
    points.loc[points["loss"].nlargest(options.drop_highest).index, "used"] = False
    used = points[points["used"]]
    min_loss = float(used["loss"].min())
    if form.e_given is not None and form.e_given >= min_loss:
        raise ValueError(f"E given ({form.e_given:.4g}) is not below the lowest loss fitted ({min_loss:.4g})")
    log_x, log_y = np.log(used[list(variables)].to_numpy()), np.log(used["loss"].to_numpy())
    objective_options = {"delta": options.delta, "overestimate_weight": options.overestimate_weight}
    point_weights = used["weight"].to_numpy() / used["weight"].mean()  # mean 1: δ keeps its meaning
    bounds = Bounds(*form.bounds(min_loss))

    def objective(free: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, grad = law.objective(form.full(free), log_x, log_y, weights, **objective_options)
        return f, form.reduce_gradient(grad)

    best = multistart(lambda free, rows: objective(free, point_weights), form.start_grid(), bounds=bounds)
    counts = (
        np.random.default_rng(options.seed)
        .multinomial(len(used), np.full(len(used), 1 / len(used)), size=options.n_bootstrap)
        .astype(float)
    )
    resampled_weights = counts * point_weights
    refits = lbfgs_batched(
        lambda free, rows: objective(free, resampled_weights[rows]),
        np.tile(best.x, (options.n_bootstrap, 1)),
        bounds=bounds,
    )
    theta = form.full(best.x)[0]
    all_log_x = np.log(points[list(variables)].to_numpy())
    points["residual"] = np.log(points["loss"].to_numpy()) - law.log_predict(theta[None], all_log_x)[0]
    return {
        "theta": theta,
        "objective": best.fun,
        "points": points,
        "bootstrap_theta": form.full(refits.x[np.isfinite(refits.fun)]),
        "options": options,
        "n_starts": best.n_starts,
        "n_at_best": best.n_at_best,
        "form": form,
    }

"""What to train next at a compute budget: the compute-optimal N and D from each identified approach, the nearest
model of the study's own family, its predicted loss and its cost (``scalesweep recommend``).

Two approaches answer, side by side, per group of settings (``analysis.settings``; the groups ``fit`` uses):

* ``isoflop``: Chinchilla's Approach 2 (``analysis.isoflop``), N_opt = e^k·C^a through the budgets' minima;
* ``joint``: Approach 3, the minimum of the group's chosen joint law L(N, D) along C = 6·N·D
  (``ChinchillaFit.compute_optimal``).

An approach that is not identified gives no numbers, only its reason. For each identified approach:

* **N and D** with their bootstrap intervals, flagged as extrapolated when C lies outside what the approach was
  measured on (the kept budgets; the compute of the fitted trials).
* **The loss** the joint law predicts at that (N, D), with the law's bootstrap interval (the expected loss, not one
  run's): only when the group's joint law is identified as a whole.
* **The shape**: the model of the study's family whose exact parameter count (``sweeps.accounting``, in the fit's N
  convention) is nearest to N in log. The family is read off the trials' sizes: widths are multiples of head_dim,
  and the depth follows width as the least-squares power law through the study's sizes, n_layer =
  round(c·d_model^s) (a fixed depth when every size has the same depth; a width-only ladder reads s = 0). A study
  of one width varies depth only. Its tokens are C/(6·N_shape), rounded down to whole batches of the study's
  batch_size × seq_len.
* **The cost**: FLOPs = 6·N_shape·D_shape (with the head: the trials' ``flops`` convention), and hours from the
  tokens/s the study measured (trials column ``tokens_per_s``, the training loop without evals), fitted against N
  in log-log over the median of each size and marked extrapolated outside the sizes measured; on the study's own
  devices.

``--loss L`` asks for the budget at which the joint law's compute-optimal loss reaches L
(``ChinchillaFit.compute_for_loss``). A loss at or below E is not reachable with any budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.compare import GroupComparison, compare_groups
from analysis.errors import AnalysisInputError
from analysis.fits import ChinchillaFit, Estimate
from analysis.isoflop import IsoFlopFit, fit_isoflop
from analysis.points import n_of
from analysis.results import Results
from analysis.settings import grouped_points, with_settings
from sweeps.accounting import Counts, ModelShape, shape_counts

APPROACHES = ("isoflop", "joint")
_COUNT_OF = {"with-head": "compute", "non-embedding": "non_embedding", "total": "total"}
_MAX_CANDIDATES = 100_000


@dataclass(frozen=True)
class GroupDesign:
    """One group's two approaches: its IsoFLOP fit and its joint law (None, with why, when no form is identified)."""

    label: str
    points: pd.DataFrame
    isoflop: IsoFlopFit
    joint: ChinchillaFit | None
    joint_reason: str

    def allocation_reason(self) -> str:
        """Why the joint law gives no compute-optimal allocation (empty when it does)."""
        if self.joint is None:
            return self.joint_reason
        why = self.joint.why_no_allocation()
        return f"the chosen form gives no allocation: {why}" if why else ""


def group_designs(
    points: pd.DataFrame, comparison: GroupComparison, *, n_bootstrap: int = 1000, seed: int = 0
) -> list[GroupDesign]:
    """Both approaches for every group ``comparison`` fitted (joint law, form chosen per group) on ``points``."""
    designs = []
    for index, group in enumerate(comparison.groups):
        frame = group.rows_of(points)
        chosen = group.selection is None or group.selection.chosen is not None
        joint = group.fit if chosen else None
        why = "" if chosen else group.selection.reason  # type: ignore[union-attr]
        isoflop = fit_isoflop(frame, n_bootstrap=n_bootstrap, seed=seed + index)
        designs.append(GroupDesign(group.label, frame, isoflop, joint, why))  # type: ignore[arg-type]
    for label, why in comparison.unfitted.items():
        empty = points.iloc[:0]
        designs.append(GroupDesign(label, empty, fit_isoflop(empty), None, f"not fitted: {why}"))
    return designs


@dataclass(frozen=True)
class Family:
    """How the study's models are built, to find the one nearest a size (module docstring)."""

    architecture: str
    head_dim: int
    seq_len: int
    vocab_size: int
    depth: tuple[float, float] | None
    """(c, s) of n_layer = round(c·d_model^s); None for a study of one width, whose depth varies."""
    width: int
    """The one width of a depth-only study (unused otherwise)."""
    batch_tokens: int | None
    """batch_size × seq_len when every trial has the same, else None (tokens are then not rounded)."""
    count: str
    """Which ``Counts`` field is N: the fit's convention."""

    @property
    def rule(self) -> str:
        if self.depth is None:
            return f"width {self.width} fixed, depth varied"
        c, s = self.depth
        if abs(s) < 1e-9:
            return f"depth {round(c)} fixed, d_model a multiple of head_dim {self.head_dim}"
        return f"n_layer = round({c:.3g}·d_model^{s:.3g}), d_model a multiple of head_dim {self.head_dim}"

    def nearest(self, n: float) -> tuple[ModelShape, int]:
        """The shape of the family whose N is nearest ``n`` in log, and its exact N."""
        best: tuple[float, ModelShape, int] | None = None
        for step in range(1, _MAX_CANDIDATES):
            shape = self._shape(step)
            count = int(getattr(self.counts(shape), self.count))
            distance = abs(math.log(count / n))
            if best is None or distance < best[0]:
                best = (distance, shape, count)
            if count > n and best[2] != count:  # counts grow with the step: past n, farther only
                break
        assert best is not None
        return best[1], best[2]

    def counts(self, shape: ModelShape) -> Counts:
        return shape_counts(shape, self.vocab_size)

    def tokens(self, flops: float, n: int) -> int:
        """Tokens that spend ``flops`` with ``n`` parameters, in whole batches (at least one)."""
        tokens = flops / (6 * n)
        if self.batch_tokens is None:
            return max(1, int(tokens))
        return max(1, int(tokens // self.batch_tokens)) * self.batch_tokens

    def _shape(self, step: int) -> ModelShape:
        if self.depth is None:
            return ModelShape(self.architecture, step, self.width, self.head_dim, self.seq_len)
        c, s = self.depth
        d_model = step * self.head_dim
        return ModelShape(self.architecture, max(1, round(c * d_model**s)), d_model, self.head_dim, self.seq_len)


def family_of(trials: pd.DataFrame, *, n: str) -> Family | str:
    """The family of the ok trials' models, or why there is none to read."""
    columns = ("architecture", "n_layer", "d_model", "head_dim", "seq_len", "vocab_size")
    ok = trials[trials["status"] == "ok"] if "status" in trials.columns else trials
    missing = [c for c in columns if c not in ok.columns or ok[c].isna().any()]
    if missing or ok.empty:
        return f"the trials do not record {', '.join(missing) or 'any ok model'}: no model family to build from"
    mixed = [c for c in ("architecture", "head_dim", "seq_len", "vocab_size") if ok[c].nunique() > 1]
    if mixed:
        return f"the trials mix {', '.join(mixed)}: no one model family"
    sizes = ok[["n_layer", "d_model"]].drop_duplicates().astype(float)
    if sizes["d_model"].nunique() > 1:
        s, log_c = np.polyfit(np.log(sizes["d_model"]), np.log(sizes["n_layer"]), 1)
        depth: tuple[float, float] | None = (float(np.exp(log_c)), float(s))
    else:
        depth = None
    batch = ok["batch_size"] * ok["seq_len"] if "batch_size" in ok.columns else pd.Series(dtype=float)
    first = ok.iloc[0]
    return Family(
        architecture=str(first["architecture"]),
        head_dim=int(first["head_dim"]),
        seq_len=int(first["seq_len"]),
        vocab_size=int(first["vocab_size"]),
        depth=depth,
        width=int(first["d_model"]),
        batch_tokens=int(batch.iloc[0]) if batch.notna().all() and batch.nunique() == 1 else None,
        count=_COUNT_OF[n],
    )


@dataclass(frozen=True)
class Throughput:
    """Training tokens/s against N, a power law through the median of each size the study measured."""

    slope: float
    intercept: float
    n_range: tuple[float, float]
    device: str

    def tokens_per_s(self, n: float) -> tuple[float, bool]:
        """The rate at ``n`` parameters, and whether it is extrapolated (outside the sizes measured)."""
        rate = float(np.exp(self.intercept + self.slope * np.log(n)))
        return rate, not self.n_range[0] <= n <= self.n_range[1]


def throughput_of(trials: pd.DataFrame, *, n: str) -> Throughput | str:
    """The study's measured throughput against N, or why it cannot be estimated."""
    if "tokens_per_s" not in trials.columns:
        return "the trials do not record tokens_per_s"
    ok = trials[(trials["status"] == "ok") & (trials["tokens_per_s"] > 0)]
    per_size = ok.assign(N=n_of(ok, n)).groupby("N")["tokens_per_s"].median()
    if len(per_size) < 2:
        return f"tokens/s measured at {len(per_size)} size(s): a rate against N needs at least 2"
    slope, intercept = np.polyfit(np.log(per_size.index.to_numpy()), np.log(per_size.to_numpy()), 1)
    devices = ", ".join(sorted(str(d) for d in ok["device"].dropna().unique())) if "device" in ok else ""
    return Throughput(
        float(slope), float(intercept), (float(per_size.index.min()), float(per_size.index.max())), devices or "?"
    )


@dataclass(frozen=True)
class Recommendation:
    """One approach's answer at one budget; every field None with ``reason`` when the approach is not identified."""

    approach: str
    exponents: tuple[Estimate, Estimate] | None
    """a (N_opt ∝ C^a) and b (D_opt ∝ C^b) of the approach."""
    n: Estimate | None
    d: Estimate | None
    loss: Estimate | None
    shape: dict[str, object] | None
    cost: dict[str, object] | None
    extrapolated: bool
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        def interval(est: Estimate | None) -> dict[str, float | None] | None:
            if est is None:
                return None
            return {key: _finite(getattr(est, key)) for key in ("value", "low", "high")}

        a, b = self.exponents or (None, None)
        return {
            "a": interval(a),
            "b": interval(b),
            "N": interval(self.n),
            "D": interval(self.d),
            "loss": interval(self.loss),
            "shape": self.shape,
            "cost": self.cost,
            "extrapolated": self.extrapolated,
            "reason": self.reason or None,
        }


@dataclass(frozen=True)
class GroupRecommendation:
    """Both approaches for one group at one budget."""

    label: str
    flops: float
    approaches: dict[str, Recommendation]
    flops_interval: Estimate | None = None
    """With ``--loss``: the budget's interval from the joint law's bootstrap (``high`` inf where the loss is not
    reached in some resamples)."""


def recommend(
    design: GroupDesign,
    flops: float,
    *,
    family: Family | str,
    throughput: Throughput | str,
    flops_interval: Estimate | None = None,
) -> GroupRecommendation:
    """Both approaches of ``design`` at ``flops`` FLOPs (module docstring)."""
    answers = {}
    for approach in APPROACHES:
        why = _isoflop_reason(design.isoflop) if approach == "isoflop" else design.allocation_reason()
        if why:
            answers[approach] = Recommendation(approach, None, None, None, None, None, None, False, why)
            continue
        if approach == "isoflop":
            exponents, allocation = (design.isoflop.a, design.isoflop.b), design.isoflop.compute_optimal(flops)
        else:
            params = design.joint.params()  # type: ignore[union-attr]
            exponents, allocation = (params["a"], params["b"]), design.joint.compute_optimal(flops)  # type: ignore[union-attr]
        answers[approach] = _answer(
            approach, exponents, allocation, design, flops, family=family, throughput=throughput
        )
    return GroupRecommendation(design.label, flops, answers, flops_interval)


def _isoflop_reason(fit: IsoFlopFit) -> str:
    return "" if fit.identified else f"a is {fit.a.status}: {fit.a.reason}"


def _measured(design: GroupDesign) -> dict[str, tuple[float, float]]:
    """The compute each approach was measured on: the kept budgets; the fitted trials' C = 6·N·D."""
    c = design.points["C"] if len(design.points) else pd.Series([np.nan])
    return {"isoflop": design.isoflop.flops_range, "joint": (float(c.min()), float(c.max()))}


def _answer(
    approach: str,
    exponents: tuple[Estimate, Estimate],
    allocation: pd.DataFrame,
    design: GroupDesign,
    flops: float,
    *,
    family: Family | str,
    throughput: Throughput | str,
) -> Recommendation:
    row = allocation.iloc[0]
    n_est = Estimate(float(row["n_opt"]), float("nan"), float(row["n_opt_low"]), float(row["n_opt_high"]))
    d_est = Estimate(float(row["d_opt"]), float("nan"), float(row["d_opt_low"]), float(row["d_opt_high"]))
    reasons = []
    loss = None
    if design.joint is not None and design.joint.identified:
        band = design.joint.predict_interval([n_est.value], [d_est.value]).iloc[0]
        loss = Estimate(float(band["loss"]), float("nan"), float(band["low"]), float(band["high"]))
    else:
        reasons.append(f"loss: the joint law is not identified ({design.allocation_reason() or 'not every parameter'})")
    low, high = _measured(design)[approach]
    extrapolated = not low <= flops <= high
    shape = cost = None
    if isinstance(family, str):
        reasons.append(f"shape: {family}")
    else:
        shape, cost = _shape_and_cost(family, n_est.value, flops, throughput)
    return Recommendation(approach, exponents, n_est, d_est, loss, shape, cost, extrapolated, "; ".join(reasons))


def _shape_and_cost(
    family: Family, n: float, flops: float, throughput: Throughput | str
) -> tuple[dict[str, object], dict[str, object]]:
    shape, count = family.nearest(n)
    tokens = family.tokens(flops, count)
    shape_json = {
        "n_layer": shape.n_layer,
        "d_model": shape.d_model,
        "n_head": shape.n_head,
        "params": count,
        "params_total": family.counts(shape).total,
        "tokens": tokens,
        "rule": family.rule,
    }
    cost: dict[str, object] = {"flops": 6.0 * count * tokens}
    if isinstance(throughput, str):
        cost.update({"hours": None, "tokens_per_s": None, "extrapolated": None, "reason": throughput})
    else:
        rate, extrapolated = throughput.tokens_per_s(count)
        cost.update(
            {
                "hours": tokens / rate / 3600,
                "tokens_per_s": rate,
                "extrapolated": extrapolated,
                "device": throughput.device,
                "reason": None,
            }
        )
    return shape_json, cost


def study_designs(
    results: Results, *, n: str, n_bootstrap: int, seed: int, progress: Callable[[str], None] | None = None
) -> list[GroupDesign]:
    """Both approaches for every group of ``results``' trials, grouped as ``scalesweep fit`` groups them."""
    points, by = grouped_points(*with_settings(results.trials), n=n, by=None)
    if points.empty:
        raise AnalysisInputError(f"{results.root}: no ok trials with a finite final_eval_loss to design from")
    comparison = compare_groups(
        points, by=by, form="joint", warn=False, progress=progress, n_bootstrap=n_bootstrap, seed=seed
    )
    return group_designs(points, comparison, n_bootstrap=n_bootstrap, seed=seed)


def format_recommendation(rec: GroupRecommendation, *, n: str, ci: float) -> str:
    """The text ``scalesweep recommend`` prints for one group."""
    lines = [f"{rec.label}: compute-optimal design at C = {rec.flops:.4g} FLOPs (N = {n} parameters, C = 6·N·D)"]
    if rec.flops_interval is not None:
        high = "unbounded" if not np.isfinite(rec.flops_interval.high) else f"{rec.flops_interval.high:.4g}"
        lines[0] += f"; C interval [{rec.flops_interval.low:.4g}, {high}] for the target loss"
    names = {"isoflop": "IsoFLOP minima (Approach 2)", "joint": "joint law L(N, D) (Approach 3)"}
    for approach in APPROACHES:
        answer = rec.approaches[approach]
        if answer.n is None or answer.d is None:
            lines.append(f"  {names[approach]}: not identified: {answer.reason}")
            continue
        mark = " (extrapolated beyond the compute measured)" if answer.extrapolated else ""
        a, b = answer.exponents  # type: ignore[misc]
        lines.append(f"  {names[approach]}{mark}, {ci:.0%} intervals: a = {_interval(a)}, b = {_interval(b)}")
        lines.append(f"    N = {_interval(answer.n)}   D = {_interval(answer.d)} tokens")
        if answer.loss is not None:
            lines.append(f"    loss (joint law) = {_interval(answer.loss, '.4f')} nats/token")
        if answer.shape is not None and answer.cost is not None:
            shape, cost = answer.shape, answer.cost
            lines.append(
                f"    shape {shape['n_layer']}x{shape['d_model']} (n_layer × d_model; {shape['rule']}): "
                f"N = {shape['params']:,} exactly, {shape['tokens']:,} tokens"
            )
            spend = f"    cost {cost['flops']:.4g} FLOPs (6·N·D, LM head included)"
            if cost["hours"] is None:
                spend += f"; hours unknown: {cost['reason']}"
            else:
                extrapolated = " (extrapolated)" if cost["extrapolated"] else ""
                spend += (
                    f", ≈ {cost['hours']:.3g} h at {cost['tokens_per_s']:.3g} tokens/s{extrapolated} on "
                    f"{cost['device']} as measured by the study"
                )
            lines.append(spend)
        if answer.reason:
            lines.append(f"    not shown: {answer.reason}")
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no inf or nan


def _interval(est: Estimate, spec: str = ".3g") -> str:
    return f"{est.value:{spec}} [{est.low:{spec}}, {est.high:{spec}}]"

"""Which fitted parameters the data determine: a status, a reason and a fix for every parameter of a fit.

A least-squares optimizer always returns numbers. Whether the data pin those numbers down is a separate question,
and a scaling-law fit answers it badly by default: with a flat loss the exponent runs to any value that bends the
curve past the data (α = 6,271 with a zero-width "interval"), and with too little curvature E trades off against A
and B until it reaches 0. Every parameter therefore gets one of these statuses, decided by the rules below in order
(the first that applies wins), and only ``identified`` and ``given`` values are findings:

* ``given``: not fitted, E supplied by the user or by the corpus (a synthetic corpus's exact entropy rate);
* ``by form``: fixed by the form's constraint (β = α in the shared-exponent form, and then a = b = 1/2);
* ``not identified`` (data): the variable a term belongs to takes fewer than 3 distinct values, or the loss changes
  by less than 1% across its range (median over the other variable; where no two points share the other variable,
  as on an IsoFLOP grid that moves N and D together, the fitted term's change across the range): the term is not
  measured, so neither its exponent nor its coefficient is;
* ``at bound``: the estimate lies on or next to a bound of the fit (exponents in [0, 2]: within 0.01; E in
  [1e-4·L_min, L_min]: below 1e-3·L_min or above 0.995·L_min), or at least half of the bootstrap refits sit on the
  bound (the interval collapses onto it);
* ``not identified`` (estimate): an exponent whose interval reaches 0 (the data cannot exclude no dependence at
  all; the upper bound 2 is a cap on plausible values, so an interval that reaches it is judged by its width); an
  exponent outside 0.02–1.5, the range in which loss-vs-scale exponents are
  measured (Kaplan 0.07–0.1, Chinchilla/Epoch 0.28–0.37, small models on narrow data up to ~1); or a 95% interval
  that spans more than a decade (high/low > 10, or low ≤ 0). For a coefficient the interval judged is that of its
  term where the data are, A/N̄^α at the geometric-mean N of the points (B/D̄^β likewise): A itself is the term at
  N = 1, far outside the data, and its interval is as wide as α's uncertainty times log N̄ whatever the data;
* when E is at a bound, no other parameter is identified: each is what it is only because E was held at the
  bound, a floor the data did not establish;
* a coefficient (A, B) whose exponent is not identified is not identified either: it scales a curve that is not;
* ``identified`` otherwise. The compute-optimal exponents a = β/(α+β) and b = α/(α+β) are identified when α and β
  both are.

Each non-identified status carries a reason that says why and what data would fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.law import E_LOWER_FRACTION, EXPONENT_BOUNDS, LawForm

IDENTIFIED = "identified"
AT_BOUND = "at bound"
NOT_IDENTIFIED = "not identified"
GIVEN = "given"
BY_FORM = "by form"
FINDINGS = (IDENTIFIED, GIVEN)
"""Statuses whose value is a finding (can be printed, compared and used downstream)."""

MIN_DISTINCT = 3
FLAT = 0.01
EXPONENT_TOLERANCE = 0.01
E_NEAR_ZERO = 10 * E_LOWER_FRACTION
E_NEAR_MIN_LOSS = 0.995
BOUND_SHARE = 0.5
PLAUSIBLE_EXPONENT = (0.02, 1.5)
MAX_INTERVAL_RATIO = 10.0

_TERMS = {"N": ("A", "alpha"), "D": ("B", "beta"), "x": ("A", "alpha")}
_MORE = {
    "N": "larger models, or more tokens per model so that model size matters",
    "D": "a wider range of tokens per model",
    "x": "a wider range of the variable",
}
_SYMBOL = {"alpha": "α", "beta": "β", "E": "E", "A": "A", "B": "B", "a": "a", "b": "b"}


@dataclass(frozen=True)
class Verdict:
    """A parameter's status and, unless it is a finding, why and what data would fix it."""

    status: str
    reason: str = ""

    @property
    def is_finding(self) -> bool:
        return self.status in FINDINGS


def judge(
    *,
    form: LawForm,
    variables: tuple[str, ...],
    points: pd.DataFrame,
    values: dict[str, float],
    samples: pd.DataFrame,
    ci: float,
) -> dict[str, Verdict]:
    """The verdict of every parameter (``values`` names: E, A(, B), alpha(, beta)(, a, b)) of a fit of ``form`` to
    ``points`` (columns: the ``variables``, ``loss``, ``used``), with its bootstrap ``samples`` (one column per
    parameter)."""
    used = points[points["used"]]
    min_loss = float(used["loss"].min())
    verdicts: dict[str, Verdict] = {}
    if form.e_given is not None:
        verdicts["E"] = Verdict(GIVEN)
    if form.shared_exponent:
        verdicts["beta"] = Verdict(BY_FORM, "β = α in the shared-exponent form")
    for variable in variables:
        coefficient, exponent = _TERMS[variable]
        fitted = _term_change(used, variable, values.get(coefficient, np.nan), values.get(exponent, np.nan))
        reason = _data_reason(used, variable, [v for v in variables if v != variable], fitted)
        if reason:
            for name in (exponent, coefficient):
                verdicts.setdefault(name, Verdict(NOT_IDENTIFIED, f"{_SYMBOL[name]}: {reason}"))
    tail = (1 - ci) / 2
    judged = {name: samples[name].to_numpy() for name in values if name in samples}
    labels = {name: _SYMBOL[name] for name in values}
    for variable in variables:
        # A coefficient is the term's value at x = 1, far outside the data, so its interval is as wide as the
        # exponent's uncertainty times log x; what the data determine is the term's size where they are.
        coefficient, exponent = _TERMS[variable]
        if coefficient in judged and exponent in samples:
            centre = float(np.exp(np.mean(np.log(used[variable]))))
            judged[coefficient] = judged[coefficient] / centre ** samples[exponent].to_numpy()
            values = {**values, coefficient: values[coefficient] / centre ** values[exponent]}
            labels[coefficient] = f"{_SYMBOL[coefficient]} (its term at {variable} = {centre:.3g}, the data's centre)"
    for name, value in values.items():
        if name in verdicts or name in ("a", "b"):
            continue
        column = judged.get(name, np.array([]))
        with np.errstate(invalid="ignore"):
            column = column[np.isfinite(column)]
        low, high = np.quantile(column, [tail, 1 - tail]) if len(column) else (np.nan, np.nan)
        verdicts[name] = _estimate_verdict(name, labels[name], value, column, low, high, min_loss)
    if verdicts.get("E", Verdict(IDENTIFIED)).status == AT_BOUND:
        for name in values:
            if name != "E" and verdicts.get(name, Verdict(NOT_IDENTIFIED)).status == IDENTIFIED:
                verdicts[name] = Verdict(
                    NOT_IDENTIFIED, f"{_SYMBOL[name]} is conditional on E at its bound ({verdicts['E'].reason})"
                )
    for variable in variables:
        coefficient, exponent = _TERMS[variable]
        if coefficient in verdicts and verdicts[coefficient].status == IDENTIFIED:
            follows = verdicts.get(exponent, Verdict(IDENTIFIED))
            if not follows.is_finding and follows.status != BY_FORM:
                verdicts[coefficient] = Verdict(
                    NOT_IDENTIFIED,
                    f"{_SYMBOL[coefficient]} scales the {variable} term, whose exponent is {follows.status}",
                )
    if "a" in values:
        exponents = [verdicts["alpha"], verdicts["beta"]]
        if form.shared_exponent:
            derived = Verdict(BY_FORM, "a = b = 1/2 by construction of the shared-exponent form, not measured")
        elif all(v.status == IDENTIFIED for v in exponents):
            derived = Verdict(IDENTIFIED)
        else:
            why = ", ".join(f"{_SYMBOL[n]} {v.status}" for n, v in zip(("alpha", "beta"), exponents, strict=True))
            derived = Verdict(NOT_IDENTIFIED, f"needs α and β identified ({why})")
        verdicts["a"] = verdicts["b"] = derived
    return {name: verdicts[name] for name in values}


def _term_change(used: pd.DataFrame, variable: str, coefficient: float, exponent: float) -> float:
    """How much the fitted term A·x^(−α) changes across the data's range of x, relative to the mean loss."""
    low, high = used[variable].min(), used[variable].max()
    with np.errstate(over="ignore", invalid="ignore"):
        return float(coefficient * (low**-exponent - high**-exponent) / used["loss"].mean())


def _data_reason(used: pd.DataFrame, variable: str, others: list[str], fitted_change: float) -> str:
    """Why the data cannot measure the term in ``variable`` (empty if they can). ``fitted_change`` is judged instead
    of the data's own change when no two points share the other variables (an IsoFLOP grid moves N and D together, so
    the data alone cannot split the loss between the terms)."""
    distinct = np.unique(used[variable])
    label = "model sizes" if variable == "N" else f"values of {variable}"
    if len(distinct) < MIN_DISTINCT:
        shown = ", ".join(f"{v:.3g}" for v in distinct)
        return (
            f"only {len(distinct)} distinct {variable} ({shown}): a power law with an offset needs at least "
            f"{MIN_DISTINCT} to be determined and checked; add more {label}"
        )
    groups = used.groupby(others) if others else [((), used)]
    changes = [
        (frame["loss"].max() - frame["loss"].min()) / frame["loss"].mean()
        for _, frame in groups
        if frame[variable].nunique() >= 2
    ]
    change = float(np.median(changes)) if changes else fitted_change
    if not change >= FLAT:
        if changes or not others:
            where = " (median over " + ", ".join(others) + ")" if others else ""
        else:
            where = f" (the fitted {variable} term: no two points share {', '.join(others)})"
        return (
            f"loss changes by {change:.2%} across {variable} = {distinct[0]:.3g}–{distinct[-1]:.3g}{where}, "
            f"less than {FLAT:.0%}: the {variable} term is not measured; add {_MORE[variable]}"
        )
    return ""


def _estimate_verdict(
    name: str, symbol: str, value: float, samples: np.ndarray, low: float, high: float, min_loss: float
) -> Verdict:
    if name in ("alpha", "beta"):
        lo_bound, hi_bound = EXPONENT_BOUNDS
        at_low = samples <= lo_bound + EXPONENT_TOLERANCE
        at_high = samples >= hi_bound - EXPONENT_TOLERANCE
        if value <= lo_bound + EXPONENT_TOLERANCE or at_low.mean() >= BOUND_SHARE:
            return Verdict(
                AT_BOUND,
                f"{symbol} ran to its lower bound 0: the loss does not fall along this variable in these data; "
                "add a wider range of it",
            )
        if value >= hi_bound - EXPONENT_TOLERANCE or at_high.mean() >= BOUND_SHARE:
            return Verdict(
                AT_BOUND,
                f"{symbol} ran to its upper bound {hi_bound:g}: the term bends past the data (a runaway); add points "
                "beyond the range this term is fitted on, or give E",
            )
        if low <= lo_bound + EXPONENT_TOLERANCE:
            return Verdict(
                NOT_IDENTIFIED,
                f"{symbol}: its interval {_interval(low, high)} reaches 0: the data cannot exclude that the loss does "
                "not depend on this variable; add a wider range of it",
            )
        lo_plausible, hi_plausible = PLAUSIBLE_EXPONENT
        if not lo_plausible <= value <= hi_plausible:
            return Verdict(
                NOT_IDENTIFIED,
                f"{symbol} = {value:.3g} is outside {lo_plausible:g}–{hi_plausible:g}, where loss-vs-scale exponents "
                "are measured; the fit is driven by a few points: add sizes or data sizes",
            )
    if name == "E":
        near_zero = samples <= E_NEAR_ZERO * min_loss
        near_min = samples >= E_NEAR_MIN_LOSS * min_loss
        if value <= E_NEAR_ZERO * min_loss or near_zero.mean() >= BOUND_SHARE:
            return Verdict(
                AT_BOUND,
                "E was driven to 0: the losses do not bend toward a floor within these data, so E trades off "
                "against A and B; give E (--E, or a synthetic corpus's entropy), use the shared-exponent form, or "
                "add larger N and D",
            )
        if value >= E_NEAR_MIN_LOSS * min_loss or near_min.mean() >= BOUND_SHARE:
            return Verdict(
                AT_BOUND,
                "E sits on the lowest observed loss: the data do not separate the floor from the power-law terms; "
                "add larger N or D",
            )
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0:
        return Verdict(
            NOT_IDENTIFIED,
            f"{symbol}: the {_interval(low, high)} interval reaches 0 or is undefined: add points (sizes, data "
            "sizes, seeds)",
        )
    if high / low > MAX_INTERVAL_RATIO:
        return Verdict(
            NOT_IDENTIFIED,
            f"{symbol}: the interval {_interval(low, high)} spans a factor {high / low:.3g} (more than a decade): "
            "add points (sizes, data sizes, seeds) or give E",
        )
    return Verdict(IDENTIFIED)


def _interval(low: float, high: float) -> str:
    return f"[{low:.3g}, {high:.3g}]"

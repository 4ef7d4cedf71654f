"""Fitting one law per group of trials and testing whether groups' exponents differ.

The complexity-control question (arXiv:2505.23013) is whether a constant initialization rate γ, or a given
weight decay λ, makes the law descend faster: a larger α (in N) or β (in D). Each group (by default the
treatment columns init_rate, init_std, weight_decay) gets its own fit with its own bootstrap; groups are
independent samples, so the difference of two groups' exponents has the bootstrap distribution of the
difference of their resampled exponents.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.fits import ChinchillaFit, PowerLawFit, fit_chinchilla, fit_power_law
from analysis.points import GROUP_COLUMNS, group_label

FORMS = ("joint", "N", "D", "C")
"""joint: L(N, D); N, D, C: the single-variable law in that variable (C on the compute-efficient frontier)."""


@dataclass(frozen=True)
class GroupFit:
    """One group's keys (column → value), a readable label and its fit."""

    keys: dict[str, object]
    label: str
    fit: ChinchillaFit | PowerLawFit


@dataclass(frozen=True)
class ExponentDifference:
    """``param`` of group a minus group b, its bootstrap interval and two-sided bootstrap p-value."""

    param: str
    group_a: str
    group_b: str
    difference: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class GroupComparison:
    """Fits of one form per group, and the groups that could not be fitted (label → reason)."""

    form: str
    by: tuple[str, ...]
    groups: tuple[GroupFit, ...]
    unfitted: dict[str, str]

    def table(self) -> pd.DataFrame:
        """One row per group: its keys, label, points used, objective, and every parameter with
        se/low/high."""
        rows = []
        for group in self.groups:
            row: dict[str, object] = {**group.keys, "group": group.label, "n_points": group.fit.n_points}
            row["objective"] = group.fit.objective
            for name, est in group.fit.params().items():
                row.update({name: est.value, f"{name}_se": est.se, f"{name}_low": est.low, f"{name}_high": est.high})
            rows.append(row)
        return pd.DataFrame(rows)

    def difference(self, group_a: str, group_b: str, *, param: str = "alpha") -> ExponentDifference:
        """Test ``param``(a) − ``param``(b) for the groups labelled ``group_a`` and ``group_b``."""
        fits = {g.label: g.fit for g in self.groups}
        for label in (group_a, group_b):
            if label not in fits:
                raise AnalysisInputError(f"no fitted group {label!r}; groups are {sorted(fits)}")
        return exponent_difference(fits[group_a], fits[group_b], param=param, labels=(group_a, group_b))


def fit_form(points: pd.DataFrame, *, form: str = "joint", **options: object) -> ChinchillaFit | PowerLawFit:
    """Fit ``form`` to a points frame (columns N, D, C, loss as ``analysis.points`` builds it)."""
    if form not in FORMS:
        raise AnalysisInputError(f"form={form!r}: use one of {', '.join(FORMS)}")
    if form == "joint":
        for variable in ("N", "D"):
            if points[variable].nunique() < 2:
                raise ValueError(f"the joint law needs at least two values of {variable}; fit form {variable!r}")
        return fit_chinchilla(points["N"], points["D"], points["loss"], **options)
    if points[form].nunique() < 2:
        raise ValueError(f"a law in {form} needs at least two values of {form}")
    fitted = compute_frontier(points) if form == "C" else points
    return fit_power_law(fitted[form], fitted["loss"], **options)


def compute_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """Points no cheaper point beats: the compute-efficient frontier L(C_min) of Kaplan et al. (2020)."""
    ordered = points.sort_values(["C", "loss"])
    return ordered[ordered["loss"] < ordered["loss"].cummin().shift(fill_value=np.inf)]


def compare_groups(
    points: pd.DataFrame,
    *,
    by: Sequence[str] = GROUP_COLUMNS,
    form: str = "joint",
    warn: bool = True,
    **options: object,
) -> GroupComparison:
    """One fit of ``form`` per group of ``by`` (missing values, e.g. a null init_rate, form their own group).

    Each group's bootstrap uses its own seed (``seed`` + group index) so that groups are independent
    resamples. A group with too few points or too little variation is reported in ``unfitted``, and with a
    warning unless ``warn`` is false (for callers that print ``unfitted`` themselves).
    """
    by = tuple(c for c in by if c in points.columns)
    seed = int(options.pop("seed", 0))
    grouped = points.groupby(list(by), dropna=False, sort=True) if by else [((), points)]
    groups, unfitted = [], {}
    for index, (values, frame) in enumerate(grouped):
        keys = dict(zip(by, values if isinstance(values, tuple) else (values,), strict=True))
        label = group_label(keys)
        try:
            fit = fit_form(frame, form=form, seed=seed + index, **options)
        except ValueError as exc:
            if isinstance(exc, AnalysisInputError):
                raise
            if warn:
                warnings.warn(f"group {label}: not fitted ({exc})", stacklevel=2)
            unfitted[label] = str(exc)
            continue
        groups.append(GroupFit(keys, label, fit))
    return GroupComparison(form=form, by=by, groups=tuple(groups), unfitted=unfitted)


def exponent_difference(
    fit_a: ChinchillaFit | PowerLawFit,
    fit_b: ChinchillaFit | PowerLawFit,
    *,
    param: str = "alpha",
    labels: tuple[str, str] = ("a", "b"),
) -> ExponentDifference:
    """Bootstrap test of ``param``(a) = ``param``(b) for two independently fitted groups.

    The p-value is the two-sided percentile-bootstrap one, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)), with the +1 correction
    that keeps it above zero for a finite number of resamples; the interval is at fit_a's ``ci``.
    """
    samples = []
    for fit in (fit_a, fit_b):
        resampled = fit.bootstrap_samples()
        if param not in resampled.columns:
            raise AnalysisInputError(f"param={param!r}: this fit has {', '.join(resampled.columns)}")
        samples.append(resampled[param].to_numpy())
    n = min(len(s) for s in samples)
    delta = samples[0][:n] - samples[1][:n]
    delta = delta[np.isfinite(delta)]
    difference = fit_a.params()[param].value - fit_b.params()[param].value
    tail = (1 - fit_a.options.ci) / 2
    p_value = min(1.0, 2 * (min(np.sum(delta <= 0), np.sum(delta >= 0)) + 1) / (len(delta) + 1))
    return ExponentDifference(
        param=param,
        group_a=labels[0],
        group_b=labels[1],
        difference=float(difference),
        low=float(np.quantile(delta, tail)),
        high=float(np.quantile(delta, 1 - tail)),
        p_value=float(p_value),
    )

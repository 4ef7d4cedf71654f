"""Fitting one law per group of trials and testing whether groups' exponents differ.

The complexity-control question (arXiv:2505.23013) is whether a constant initialization rate γ, or a given
weight decay λ, makes the law descend faster: a larger α (in N) or β (in D). Each group (by default the
treatment columns init_rate, init_std, weight_decay) gets its own fit with its own bootstrap; groups are
independent samples, so the difference of two groups' exponents has the bootstrap distribution of the
difference of their resampled exponents. Groups are compared in one form that every group identifies (each may
choose a different form for itself), and only where the exponent is identified in both: a difference of numbers
the data do not determine is not a finding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.fits import ChinchillaFit, PowerLawFit
from analysis.points import GROUP_COLUMNS, group_label
from analysis.selection import FormSpec, Selection, fit_spec, select_form

FORMS = ("joint", "N", "D", "C")
"""joint: L(N, D); N, D, C: the single-variable law in that variable (C on the compute-efficient frontier)."""
LAWS = ("auto", "free", "shared", "e-given", "e-given-shared")
"""Which form of the law: chosen by nested hold-out (auto, ``analysis.selection``), or one named form."""


@dataclass(frozen=True)
class GroupFit:
    """One group's keys (column → value), a readable label, its fit, and how its form was chosen.

    ``fit`` is the chosen form's fit; when no form is identified it is the free form's, whose parameters then say
    why they are not findings."""

    keys: dict[str, object]
    label: str
    fit: ChinchillaFit | PowerLawFit
    selection: Selection | None = None

    @property
    def form_name(self) -> str:
        if self.selection is None or self.selection.chosen is None:
            return "free" if self.selection is None else "none identified"
        return self.selection.chosen.spec.name

    def rows_of(self, points: pd.DataFrame) -> pd.DataFrame:
        """The rows of `points` in this group: every key column equal to its value (missing where it is missing)."""
        mask = pd.Series(True, index=points.index)
        for column, value in self.keys.items():
            mask &= points[column].isna() if pd.isna(value) else points[column] == value
        return points[mask]


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
        """One row per group: its keys, label, form, points used, objective, and every parameter with
        se/low/high/status/reason."""
        rows = []
        for group in self.groups:
            row: dict[str, object] = {**group.keys, "group": group.label, "law": group.form_name}
            row.update({"n_points": group.fit.n_points, "objective": group.fit.objective})
            for name, est in group.fit.params().items():
                row.update({name: est.value, f"{name}_se": est.se, f"{name}_low": est.low, f"{name}_high": est.high})
                row.update({f"{name}_status": est.status, f"{name}_reason": est.reason})
            rows.append(row)
        return pd.DataFrame(rows)

    def common_form(self) -> tuple[str | None, dict[str, ChinchillaFit | PowerLawFit], str]:
        """The form groups are compared in: one identified in every group (the fewest assumptions, then the lowest
        mean error on the largest size), each group's fit of it, and why there is none (empty when there is).

        Groups choose their own forms; comparing α of two different forms compares two different things, so
        comparisons use the form every group can identify, fitted already among each group's candidates."""
        if not self.groups:
            return None, {}, "no group was fitted"
        if any(g.selection is None for g in self.groups):  # a named law: every group has that one form
            name = self.groups[0].form_name
            return name, {g.label: g.fit for g in self.groups}, ""
        by_kind: dict[tuple[bool, bool], list] = {}
        for group in self.groups:
            for candidate in group.selection.candidates:  # type: ignore[union-attr]
                kind = (candidate.spec.e_given is not None, candidate.spec.shared_exponent)
                by_kind.setdefault(kind, []).append(candidate if candidate.identified else None)
        shared = [c for c in by_kind.values() if len(c) == len(self.groups) and all(x is not None for x in c)]
        if not shared:
            return None, {}, "no form is identified in every group"
        best = min(shared, key=lambda c: (c[0].spec.assumptions, np.nanmean([x.nested_error for x in c])))
        return best[0].spec.name, {g.label: c.fit for g, c in zip(self.groups, best, strict=True)}, ""

    def why_not_comparable(self, group_a: str, group_b: str, *, param: str = "alpha") -> str:
        """Why ``param`` cannot be compared between the two groups (empty when it can)."""
        self._fits(group_a, group_b)  # the labels exist
        name, fits, why = self.common_form()
        if name is None:
            return why
        for label in (group_a, group_b):
            estimate = fits[label].params().get(param)
            if estimate is None:
                return f"this fit has no {param}"
            if estimate.status != "identified":
                return f"{param} is {estimate.status} in group {label} in the common form {name} ({estimate.reason})"
        return ""

    def difference(self, group_a: str, group_b: str, *, param: str = "alpha") -> ExponentDifference:
        """Test ``param``(a) − ``param``(b) for the groups labelled ``group_a`` and ``group_b``, in the form every
        group identifies (``common_form``).

        Raises AnalysisInputError when there is no such form or the parameter is not identified in it for both
        groups: a difference of numbers the data do not determine is not a finding."""
        why = self.why_not_comparable(group_a, group_b, param=param)
        if why:
            raise AnalysisInputError(f"cannot compare {param} of {group_a} and {group_b}: {why}")
        fits = self.common_form()[1]
        return exponent_difference(fits[group_a], fits[group_b], param=param, labels=(group_a, group_b))

    def _groups(self) -> dict[str, GroupFit]:
        return {g.label: g for g in self.groups}

    def _fits(self, *labels: str) -> list[ChinchillaFit | PowerLawFit]:
        groups = self._groups()
        for label in labels:
            if label not in groups:
                raise AnalysisInputError(f"no fitted group {label!r}; groups are {sorted(groups)}")
        return [groups[label].fit for label in labels]


def fit_form(points: pd.DataFrame, *, form: str = "joint", **options: object) -> ChinchillaFit | PowerLawFit:
    """Fit the free ``form`` to a points frame (columns N, D, C, loss as ``analysis.points`` builds it)."""
    check_variation(points, form)
    fitted = compute_frontier(points) if form == "C" else points
    return fit_spec(fitted, FormSpec(), form=form, **options)


def check_variation(points: pd.DataFrame, form: str) -> None:
    """Raise ValueError when ``points`` cannot hold a law of ``form`` at all (fewer than two values of a
    variable); AnalysisInputError for an unknown form."""
    if form not in FORMS:
        raise AnalysisInputError(f"form={form!r}: use one of {', '.join(FORMS)}")
    for variable in ("N", "D") if form == "joint" else (form,):
        if points[variable].nunique() < 2:
            hint = f"; fit form {'D' if variable == 'N' else 'N'!r}" if form == "joint" else ""
            raise ValueError(f"a law in {variable} needs at least two values of {variable}{hint}")


def compute_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """Points no cheaper point beats: the compute-efficient frontier L(C_min) of Kaplan et al. (2020)."""
    ordered = points.sort_values(["C", "loss"])
    return ordered[ordered["loss"] < ordered["loss"].cummin().shift(fill_value=np.inf)]


def group_e(frame: pd.DataFrame, e_given: float | None) -> tuple[float | None, bool]:
    """E to offer as given for a group, and whether it is exact: the user's number (not exact), else the corpus's
    exact entropy rate when every point carries the same one (a synthetic corpus), else (None, False)."""
    if e_given is not None:
        return e_given, False
    if "irreducible_loss" in frame.columns and frame["irreducible_loss"].notna().all():
        values = frame["irreducible_loss"].unique()
        if len(values) == 1:
            return float(values[0]), True
    return None, False


def compare_groups(
    points: pd.DataFrame,
    *,
    by: Sequence[str] = GROUP_COLUMNS,
    form: str = "joint",
    law: str = "auto",
    e_given: float | None = None,
    warn: bool = True,
    progress: Callable[[str], None] | None = None,
    **options: object,
) -> GroupComparison:
    """One fit of ``form`` per group of ``by`` (missing values, e.g. a null init_rate, form their own group).

    ``law`` auto chooses each group's form by nested hold-out (``analysis.selection``); a named law fits that form
    only. ``progress`` is told when each group starts (fits of the candidate forms take seconds each). Each group's
    bootstrap uses its own seed (``seed`` + group index) so that groups are independent resamples. A group with too
    few points or too little variation is reported in ``unfitted``, and with a warning unless ``warn`` is false (for
    callers that print ``unfitted`` themselves).
    """
    if law not in LAWS:
        raise AnalysisInputError(f"law={law!r}: use one of {', '.join(LAWS)}")
    by = tuple(c for c in by if c in points.columns)
    seed = int(options.pop("seed", 0))
    grouped = points.groupby(list(by), dropna=False, sort=True) if by else [((), points)]
    groups, unfitted = [], {}
    for index, (values, frame) in enumerate(grouped):
        keys = dict(zip(by, values if isinstance(values, tuple) else (values,), strict=True))
        label = group_label(keys)
        if progress is not None:
            progress(f"fitting {label} ({len(frame)} points, law {law}) …")
        try:
            known_e = group_e(frame, e_given)
            group = _fit_group(frame, keys, label, form, law, known_e, seed + index, options)
        except ValueError as exc:
            if isinstance(exc, AnalysisInputError):
                raise
            if warn:
                warnings.warn(f"group {label}: not fitted ({exc})", stacklevel=2)
            unfitted[label] = str(exc)
            continue
        groups.append(group)
    return GroupComparison(form=form, by=by, groups=tuple(groups), unfitted=unfitted)


def _fit_group(
    frame: pd.DataFrame,
    keys: dict[str, object],
    label: str,
    form: str,
    law: str,
    known_e: tuple[float | None, bool],
    seed: int,
    options: dict[str, object],
) -> GroupFit:
    check_variation(frame, form)
    fitted = compute_frontier(frame) if form == "C" else frame
    e_given, e_exact = known_e
    if law == "auto":
        selection = select_form(fitted, form=form, e_given=e_given, e_exact=e_exact, seed=seed, **options)
        chosen = selection.chosen or selection.candidates[0]
        return GroupFit(keys, label, chosen.fit, selection)
    if law.startswith("e-given") and e_given is None:
        raise AnalysisInputError(f"--law {law}: no E to give; pass --E or use a synthetic corpus")
    spec = FormSpec(e_given if law.startswith("e-given") else None, law.endswith("shared"), e_exact)
    return GroupFit(keys, label, fit_spec(fitted, spec, form=form, seed=seed, **options))


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

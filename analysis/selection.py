"""Choosing the form of a law by how well it predicts a size it was not fitted on.

Five free parameters need data that bend in both directions; a laptop study or a short ladder often cannot
determine them all. The candidates are the free law and forms with fewer free parameters: E given (the exact
entropy rate of a synthetic corpus, or a number the user supplies) and one exponent shared by both terms (α = β),
alone or together. Each candidate is fitted to every point, and scored by a nested hold-out: fitted again without
the largest size (the largest N for the joint law and L(N), the largest D for L(D), the largest C for L(C)) and
asked to predict it. The chosen form is the candidate with the lowest mean |relative error| on that size among
those whose parameters are all identified (``analysis.identify``) on the full data, where a form with more
assumptions must beat one with fewer by more than the scatter of one point (``CONSTRAINT_MARGIN``); a candidate
the data cannot identify is never chosen, however well it predicts. When a study holds out its largest size to
check extrapolation (``analysis.extrapolation``), this choice is made on the other sizes only, so the final
held-out size never takes part in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fits import ChinchillaFit, PowerLawFit, fit_chinchilla, fit_power_law

CONSTRAINT_MARGIN = 0.001
"""A form with more assumptions (a shared exponent, or an E someone chose rather than the corpus's exact entropy
rate) is chosen over one with fewer only if it predicts the held-out size better by more than the scatter of a
single point about the other's fit (the RMS of its log residuals), and by at least this (0.1 percentage point of
mean |relative error|): an assumption the data do not need is not taken. An exact E is knowledge, not an
assumption."""
NESTED_BOOTSTRAP = 20
"""Resamples of a nested fit: only its point prediction is scored."""
_HOLDOUT_VARIABLE = {"joint": "N", "N": "N", "D": "D", "C": "C"}


@dataclass(frozen=True)
class FormSpec:
    """A candidate form: whether E is given (and whether that E is exact, the corpus's entropy rate, or a number
    someone chose) and whether the two exponents are shared."""

    e_given: float | None = None
    shared_exponent: bool = False
    e_exact: bool = False

    @property
    def name(self) -> str:
        parts = []
        if self.e_given is not None:
            parts.append(f"E given ({self.e_given:.4g}{', exact' if self.e_exact else ''})")
        if self.shared_exponent:
            parts.append("shared exponent")
        return ", ".join(parts) or "free"

    @property
    def n_free(self) -> int:
        return 5 - (self.e_given is not None) - self.shared_exponent

    @property
    def assumptions(self) -> int:
        """Constraints the data did not establish: a shared exponent, an E that is not known exactly."""
        return int(self.shared_exponent) + int(self.e_given is not None and not self.e_exact)


@dataclass(frozen=True)
class Candidate:
    """One form fitted to all points, and its nested hold-out score."""

    spec: FormSpec
    fit: ChinchillaFit | PowerLawFit
    nested_error: float
    """Mean |relative error| predicting the largest size from the others (nan when it could not be scored)."""
    nested_note: str = ""

    @property
    def identified(self) -> bool:
        return self.fit.identified

    def not_identified(self) -> str:
        """The parameters that are not findings, with why (empty when the form is identified)."""
        return "; ".join(
            f"{name} {est.status}"
            for name, est in self.fit.params().items()
            if not est.is_finding and est.status != "by form"
        )


@dataclass(frozen=True)
class Selection:
    """Every candidate, the chosen one (None if no candidate is identified) and why."""

    form: str
    candidates: tuple[Candidate, ...]
    chosen: Candidate | None
    reason: str

    def table(self) -> pd.DataFrame:
        """One row per candidate: free parameters, assumptions, nested hold-out error (mean |relative error| on the
        largest size), identified, chosen."""
        return pd.DataFrame(
            [
                {
                    "form": c.spec.name,
                    "free parameters": c.spec.n_free - (2 if self.form != "joint" else 0),
                    "assumptions": c.spec.assumptions,
                    "error on the largest size": c.nested_error,
                    "identified": c.identified,
                    "not identified": c.not_identified(),
                    "chosen": c is self.chosen,
                }
                for c in self.candidates
            ]
        )


def candidate_forms(form: str, e_given: float | None, *, e_exact: bool = False) -> list[FormSpec]:
    """The candidates for the law ``form`` (joint, N, D or C) given what E is known (None if unknown)."""
    shared = [False, True] if form == "joint" else [False]
    known = [None] if e_given is None else [None, e_given]
    return [FormSpec(e, s, e_exact and e is not None) for e in known for s in shared]


def fit_spec(points: pd.DataFrame, spec: FormSpec, *, form: str, **options: object) -> ChinchillaFit | PowerLawFit:
    """Fit ``spec`` of the law ``form`` to ``points`` (columns N, D, C, loss; ``weight`` if weighted)."""
    weights = points["weight"] if "weight" in points.columns else None
    if form == "joint":
        return fit_chinchilla(
            points["N"],
            points["D"],
            points["loss"],
            e_given=spec.e_given,
            shared_exponent=spec.shared_exponent,
            weights=weights,
            **options,
        )
    return fit_power_law(points[form], points["loss"], e_given=spec.e_given, weights=weights, **options)


def select_form(
    points: pd.DataFrame,
    *,
    form: str = "joint",
    e_given: float | None = None,
    e_exact: bool = False,
    **options: object,
) -> Selection:
    """Fit every candidate to ``points`` and choose by the nested hold-out (module docstring).

    Raises ValueError when no candidate can be fitted at all (too few points or values)."""
    variable = _HOLDOUT_VARIABLE[form]
    largest = points[variable].max()
    nested_points = points[points[variable] < largest]
    held = points[points[variable] == largest]
    candidates, errors = [], []
    for spec in candidate_forms(form, e_given, e_exact=e_exact):
        try:
            fit = fit_spec(points, spec, form=form, **options)
        except ValueError as exc:
            errors.append(f"{spec.name}: {exc}")
            continue
        score, note = _nested_score(nested_points, held, spec, form=form, **options)
        candidates.append(Candidate(spec, fit, score, note))
    if not candidates:
        raise ValueError("; ".join(errors))
    identified = [c for c in candidates if c.identified]
    scored = [c for c in identified if np.isfinite(c.nested_error)]
    if scored:
        chosen = None
        for candidate in sorted(scored, key=lambda c: (c.spec.assumptions, c.nested_error)):
            more = chosen is not None and candidate.spec.assumptions > chosen.spec.assumptions
            if chosen is None or candidate.nested_error < chosen.nested_error - (_margin(chosen) if more else 0.0):
                chosen = candidate
        assert chosen is not None
        reason = (
            f"lowest error predicting the largest {variable} ({largest:.3g}) from the smaller ones "
            f"({chosen.nested_error:.2%}) among the identified forms"
        )
    elif identified:
        chosen = min(identified, key=lambda c: c.spec.n_free)
        reason = (
            f"the identified form with the fewest free parameters: no form could be scored on the largest "
            f"{variable} ({identified[0].nested_note})"
        )
    else:
        chosen = None
        reason = "no form is identified by these data: " + " | ".join(
            f"{c.spec.name}: {c.not_identified()}" for c in candidates
        )
    return Selection(form, tuple(candidates), chosen, reason)


def _margin(candidate: Candidate) -> float:
    residuals = candidate.fit.points.loc[candidate.fit.points["used"], "residual"].to_numpy()
    return max(CONSTRAINT_MARGIN, float(np.sqrt(np.mean(residuals**2))))


def _nested_score(
    nested_points: pd.DataFrame, held: pd.DataFrame, spec: FormSpec, *, form: str, **options: object
) -> tuple[float, str]:
    options = {**options, "n_bootstrap": NESTED_BOOTSTRAP}
    try:
        fit = fit_spec(nested_points, spec, form=form, **options)
    except ValueError as exc:
        return float("nan"), f"without the largest size: {exc}"
    predicted = fit.predict(held["N"], held["D"]) if form == "joint" else fit.predict(held[form])
    return float(np.mean(np.abs(predicted / held["loss"].to_numpy() - 1))), ""

"""``scalesweep fit``, ``report`` and ``recommend`` as plain functions; ``orchestrator/cli.py`` parses the
arguments.

All three work on a machine that has only the results (no Ray, no torch), local or on a pyarrow filesystem. Input
a person must fix raises ``AnalysisInputError`` with a one-line message; the caller prints it and exits
non-zero.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.compare import FORMS, LAWS, GroupComparison, compare_groups
from analysis.errors import AnalysisInputError
from analysis.points import N_CONVENTIONS, default_n
from analysis.recommend import (
    GroupRecommendation,
    family_of,
    format_recommendation,
    recommend,
    study_designs,
    throughput_of,
)
from analysis.report import build_sections, write_report
from analysis.results import load
from analysis.settings import grouped_points, with_settings

_SHOWN = ("E", "A", "B", "alpha", "beta", "a")


@dataclass(frozen=True)
class FitRequest:
    """What ``scalesweep fit`` fits: the law, its form, the grouping and the fit's options."""

    form: str = "joint"
    law: str = "auto"
    by: tuple[str, ...] | None = None
    """Group columns: trials columns or config settings (``train.lr``); None: the treatment axes that vary
    (init_rate, init_std, weight_decay) and every other setting that varies (``analysis.settings``)."""
    n: str | None = None
    """N convention (``analysis.points``); None: with-head where the trials allow it."""
    e_given: float | None = None
    weight_by_se: bool = False
    drop_highest: int = 0
    n_bootstrap: int = 1000
    seed: int = 0

    def check(self) -> None:
        if self.form not in FORMS:
            raise AnalysisInputError(f"--form {self.form}: use one of {', '.join(FORMS)}")
        if self.law not in LAWS:
            raise AnalysisInputError(f"--law {self.law}: use one of {', '.join(LAWS)}")
        if self.n is not None and self.n not in N_CONVENTIONS:
            raise AnalysisInputError(f"--n {self.n}: use one of {', '.join(N_CONVENTIONS)}")
        for name, value, least in (("--drop-highest", self.drop_highest, 0), ("--bootstrap", self.n_bootstrap, 10)):
            if value < least:
                raise AnalysisInputError(f"{name} {value}: must be at least {least}")
        if self.e_given is not None and not self.e_given > 0:
            raise AnalysisInputError(f"--E {self.e_given}: must be a positive loss in nats/token")


def fit_main(results: str, *, request: FitRequest, out: str | None, strict: bool) -> int:
    """Fit per group, print the table, write ``fit.parquet`` and ``fit.json`` into ``out``.

    ``out`` defaults to ``RESULTS/analysis`` (on the results' own filesystem). Returns 0, or 1 if no group
    could be fitted.
    """
    request.check()
    loaded = load(results, strict=strict)
    request = replace(request, n=request.n or default_n(loaded.trials))
    points, by = grouped_points(*with_settings(loaded.trials), n=request.n, by=request.by)
    if points.empty:
        raise AnalysisInputError(f"{results}: no ok trials with a finite final_eval_loss to fit")
    if request.weight_by_se:
        points = _weighted(points, results)
    comparison = compare_groups(
        points,
        by=by,
        form=request.form,
        law=request.law,
        e_given=request.e_given,
        warn=False,
        progress=_stderr,
        drop_highest=request.drop_highest,
        n_bootstrap=request.n_bootstrap,
        seed=request.seed,
    )
    table = comparison.table()
    print(format_fit(comparison, request))
    for label, reason in comparison.unfitted.items():
        print(f"not fitted: {label}: {reason}", file=sys.stderr)
    if table.empty:
        return 1
    destination = out or f"{results.rstrip('/')}/analysis"
    meta = {**asdict(request), "by": list(comparison.by), "unfitted": comparison.unfitted}
    _write(table, meta, destination)
    print(f"wrote {destination}/fit.parquet and fit.json")
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _weighted(points: pd.DataFrame, results: str) -> pd.DataFrame:
    if "se" not in points.columns or not (points["se"] > 0).all():
        raise AnalysisInputError(f"--weight-by-se: {results} has trials without eval_loss_se; rerun them or drop it")
    relative = points["se"] / points["loss"]
    return points.assign(weight=(relative.mean() / relative) ** 2)


def format_fit(comparison: GroupComparison, request: FitRequest) -> str:
    """The fit as text: per group, the chosen form and every parameter as a value with its interval, or its
    status and reason when it is not a finding."""
    if not comparison.groups:
        return "no group could be fitted"
    ci = comparison.groups[0].fit.options.ci
    lines = [
        f"law {comparison.form!r} (N = {request.n} parameters), {ci:.0%} bootstrap intervals, grouped by "
        f"{', '.join(comparison.by) or 'nothing (one group)'}"
    ]
    for group in comparison.groups:
        fit = group.fit
        lines.append("")
        lines.append(f"{group.label}: {fit.n_points} points, form: {group.form_name}")
        if group.selection is not None:
            lines.append(f"  chosen: {group.selection.reason}")
            lines.append("  candidates (mean |error| predicting the largest size from the others):")
            for candidate in group.selection.candidates:
                mark = "*" if candidate is group.selection.chosen else " "
                missing = candidate.not_identified()
                lines.append(
                    f"   {mark} {candidate.spec.name}: {candidate.nested_error:.2%}"
                    + ("" if not missing else f"; not identified: {missing}")
                )
        for name, est in fit.params().items():
            if name not in _SHOWN:
                continue
            if est.is_finding or est.status == "by form":
                shown = f"{est.value:.4g}" + ("" if est.status == "given" else f" [{est.low:.4g}, {est.high:.4g}]")
                lines.append(f"  {name:>5}: {shown}" + ("" if est.status == "identified" else f" ({est.status})"))
            else:
                lines.append(f"  {name:>5}: {est.status}: {est.reason}")
    return "\n".join(lines)


def report_main(results: str, *, out_dir: str, strict: bool, n_bootstrap: int = 1000) -> int:
    """Write ``report.html`` (self-contained) and ``report.md`` with PNG figures into ``out_dir``."""
    if n_bootstrap < 10:
        raise AnalysisInputError(f"--bootstrap {n_bootstrap}: must be at least 10")
    loaded = load(results, strict=strict)
    if loaded.trials.empty and loaded.recovery.empty:
        raise AnalysisInputError(f"{results}: no trials or recovery rows to report on")
    sections = build_sections(loaded, n_bootstrap=n_bootstrap, progress=_stderr)
    html_path, md_path = write_report(sections, Path(out_dir), title=f"scalesweep report: {results}")
    print(f"wrote {html_path} and {md_path}")
    return 0


def recommend_main(
    results: str,
    *,
    flops: float | None,
    loss: float | None,
    as_json: bool,
    n_bootstrap: int = 1000,
    seed: int = 0,
    strict: bool = False,
) -> int:
    """Print the compute-optimal design at ``flops`` FLOPs, or at the budget where the joint law's compute-optimal
    loss reaches ``loss`` (``analysis.recommend``), per group; as one JSON object per group (one line each) with
    ``as_json``. Returns 0, or 1 when no approach is identified in any group."""
    if (flops is None) == (loss is None):
        raise AnalysisInputError("give exactly one of --flops C (a budget in FLOPs) or --loss L (a target loss)")
    if flops is not None and not (math.isfinite(flops) and flops > 0):
        raise AnalysisInputError(f"--flops {flops:g}: must be a positive number of FLOPs")
    if loss is not None and not (math.isfinite(loss) and loss > 0):
        raise AnalysisInputError(f"--loss {loss:g}: must be a positive loss in nats/token")
    if n_bootstrap < 10:
        raise AnalysisInputError(f"--bootstrap {n_bootstrap}: must be at least 10")
    loaded = load(results, strict=strict)
    n = default_n(loaded.trials)
    designs = study_designs(loaded, n=n, n_bootstrap=n_bootstrap, seed=seed, progress=_stderr)
    family, throughput = family_of(loaded.trials, n=n), throughput_of(loaded.trials, n=n)
    recommendations: list[GroupRecommendation] = []
    for design in designs:
        budget, interval = flops, None
        if loss is not None:
            why = design.allocation_reason()
            if why:
                print(f"{design.label}: --loss needs the joint law's allocation: {why}", file=sys.stderr)
                continue
            interval = design.joint.compute_for_loss(loss)  # type: ignore[union-attr]
            budget = interval.value
        recommendations.append(recommend(design, budget, family=family, throughput=throughput, flops_interval=interval))
    if not recommendations:
        raise AnalysisInputError(f"--loss {loss:g}: no group's joint law gives a compute-optimal allocation")
    ci = designs[0].isoflop.ci
    for rec in recommendations:
        print(
            json.dumps(_recommendation_json(rec, n, loss), allow_nan=False)
            if as_json
            else format_recommendation(rec, n=n, ci=ci)
        )
    identified = any(a.n is not None for rec in recommendations for a in rec.approaches.values())
    return 0 if identified else 1


def _recommendation_json(rec: GroupRecommendation, n: str, loss: float | None) -> dict:
    document: dict = {"flops": rec.flops, "group": rec.label, "n": n}
    if loss is not None and rec.flops_interval is not None:
        high = rec.flops_interval.high
        document.update(
            {
                "loss_target": loss,
                "flops_low": rec.flops_interval.low,
                "flops_high": high if math.isfinite(high) else None,
            }
        )
    document["approaches"] = {name: answer.to_json() for name, answer in rec.approaches.items()}
    return document


def _write(table: pd.DataFrame, meta: dict, destination: str) -> None:
    if "://" in destination:
        filesystem, root = pafs.FileSystem.from_uri(destination)
    else:
        filesystem, root = pafs.LocalFileSystem(), Path(destination).resolve().as_posix()
    filesystem.create_dir(root, recursive=True)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), f"{root}/fit.parquet", filesystem=filesystem)
    document = {**meta, "groups": json.loads(table.to_json(orient="records"))}
    with filesystem.open_output_stream(f"{root}/fit.json") as stream:
        stream.write(json.dumps(document, indent=2).encode())

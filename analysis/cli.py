"""``scalesweep fit`` and ``scalesweep report`` as plain functions; ``orchestrator/cli.py`` parses the
arguments.

Both work on a machine that has only the results (no Ray, no torch), local or on a pyarrow filesystem. Input
a person must fix raises ``AnalysisInputError`` with a one-line message; the caller prints it and exits
non-zero.
"""

from __future__ import annotations

import json
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

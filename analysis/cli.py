"""``scalesweep fit`` and ``scalesweep report`` as plain functions; ``orchestrator/cli.py`` parses the
arguments.

Both work on a machine that has only the results (no Ray, no torch), local or on a pyarrow filesystem. Input
a person must fix raises ``AnalysisInputError`` with a one-line message; the caller prints it and exits
non-zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.compare import FORMS, GroupComparison, compare_groups
from analysis.errors import AnalysisInputError
from analysis.points import scaling_points
from analysis.report import build_sections, write_report
from analysis.results import load

_SHOWN = ("E", "alpha", "beta", "a")


def fit_main(results: str, *, by: list[str] | None, form: str, out: str | None, strict: bool) -> int:
    """Fit ``form`` per group of ``by``, print the table, write ``fit.parquet`` and ``fit.json`` into ``out``.

    ``out`` defaults to ``RESULTS/analysis`` (on the results' own filesystem). Returns 0, or 1 if no group
    could be fitted.
    """
    if form not in FORMS:
        raise AnalysisInputError(f"--form {form}: use one of {', '.join(FORMS)}")
    loaded = load(results, strict=strict)
    points = scaling_points(loaded.trials, keep=by or ())
    if points.empty:
        raise AnalysisInputError(f"{results}: no ok trials with a finite final_eval_loss to fit")
    unknown = [c for c in by or () if c not in points.columns]
    if unknown:
        raise AnalysisInputError(f"--by {','.join(unknown)}: not a trials column; try init_rate,weight_decay")
    comparison = compare_groups(points, by=by or (), form=form, warn=False)
    table = comparison.table()
    print(_format_table(table, form, comparison))
    for label, reason in comparison.unfitted.items():
        print(f"not fitted: {label}: {reason}", file=sys.stderr)
    if table.empty:
        return 1
    destination = out or f"{results.rstrip('/')}/analysis"
    _write(table, {"form": form, "by": list(comparison.by), "unfitted": comparison.unfitted}, destination)
    print(f"wrote {destination}/fit.parquet and fit.json")
    return 0


def report_main(results: str, *, out_dir: str, strict: bool) -> int:
    """Write ``report.html`` (self-contained) and ``report.md`` with PNG figures into ``out_dir``."""
    loaded = load(results, strict=strict)
    if loaded.trials.empty and loaded.recovery.empty:
        raise AnalysisInputError(f"{results}: no trials or recovery rows to report on")
    sections = build_sections(loaded)
    html_path, md_path = write_report(sections, Path(out_dir), title=f"scalesweep report: {results}")
    print(f"wrote {html_path} and {md_path}")
    return 0


def _format_table(table: pd.DataFrame, form: str, comparison: GroupComparison) -> str:
    if table.empty:
        return "no group could be fitted"
    shown = pd.DataFrame({"group": table["group"], "points": table["n_points"]})
    for name in (n for n in _SHOWN if n in table.columns):
        shown[name] = [
            f"{v:.4g} [{lo:.4g}, {hi:.4g}]"
            for v, lo, hi in zip(table[name], table[f"{name}_low"], table[f"{name}_high"], strict=True)
        ]
    ci = comparison.groups[0].fit.options.ci
    return f"fit of form {form!r} ({ci:.0%} bootstrap intervals)\n" + shown.to_string(index=False)


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

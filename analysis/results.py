"""Reading a results directory into validated DataFrames, from a local path or any pyarrow filesystem URI.

A results directory holds one folder per table declared in ``sweeps.tables`` (``trials/``, ``steps/``,
``probes/``, ``recovery/``), each a set of Parquet files written atomically by the trials. Every file is
checked against its table's declaration before it is read, so a stray or stale file is named rather than
silently mixed in. Readers that only need counts (the CLI's ``status``) use ``summarize`` on the loaded
result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.errors import AnalysisInputError
from sweeps.tables import PROBES, RECOVERY, STEPS, TRIALS, SchemaError, Table


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a non-strict load, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Results:
    """The tables of one results directory; a table that is absent is an empty frame with the declared
    columns."""

    root: str
    trials: pd.DataFrame
    steps: pd.DataFrame
    probes: pd.DataFrame
    recovery: pd.DataFrame
    skipped: tuple[SkippedFile, ...] = field(default=())


@dataclass(frozen=True)
class Summary:
    """What a results directory holds, in numbers: the content of ``scalesweep status``."""

    root: str
    trials_by_status: dict[str, int]
    rows: dict[str, int]
    best_eval_loss: float | None
    skipped: tuple[SkippedFile, ...]

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{count} {status}" for status, count in self.trials_by_status.items()) or "none"
        out = [f"{self.root}: trials {statuses}"]
        out.append("rows: " + ", ".join(f"{name} {count}" for name, count in self.rows.items()))
        if self.best_eval_loss is not None:
            out.append(f"best final_eval_loss among ok trials: {self.best_eval_loss:.4f}")
        out.extend(f"skipped {s.path}: {s.reason}" for s in self.skipped)
        return out


def load(results: str | Path, *, strict: bool = False) -> Results:
    """Read every table of ``results`` (a path or a URI such as ``s3://bucket/study``).

    A file that cannot be read or does not match its table's declaration raises ``AnalysisInputError`` naming
    it when ``strict``; otherwise it is skipped with a warning and listed in ``Results.skipped``. Files whose
    names start with '.' or end in '.tmp' are a writer's unfinished work and are ignored.
    """
    filesystem, root = _filesystem(str(results))
    info = filesystem.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise AnalysisInputError(f"{results}: no results directory there (expected trials/, steps/, ... inside)")
    skipped: list[SkippedFile] = []
    frames = {
        table.name: _read_table(filesystem, f"{root}/{table.name}", table, strict, skipped)
        for table in (TRIALS, STEPS, PROBES, RECOVERY)
    }
    return Results(root=str(results), skipped=tuple(skipped), **frames)


def summarize(results: Results) -> Summary:
    """Counts for a status line: trials per status, rows per table, the best ok loss, skipped files."""
    trials = results.trials
    by_status = {str(k): int(v) for k, v in trials["status"].value_counts().sort_index().items()}
    ok_losses = trials.loc[trials["status"] == "ok", "final_eval_loss"].dropna()
    rows = {name: len(getattr(results, name)) for name in ("trials", "steps", "probes", "recovery")}
    best = float(ok_losses.min()) if len(ok_losses) else None
    return Summary(results.root, by_status, rows, best, results.skipped)


def _filesystem(results: str) -> tuple[pafs.FileSystem, str]:
    if "://" in results:
        try:
            return pafs.FileSystem.from_uri(results)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise AnalysisInputError(f"{results}: cannot open this URI with pyarrow ({exc})") from exc
    return pafs.LocalFileSystem(), Path(results).expanduser().resolve().as_posix()


def _read_table(
    filesystem: pafs.FileSystem, directory: str, table: Table, strict: bool, skipped: list[SkippedFile]
) -> pd.DataFrame:
    selector = pafs.FileSelector(directory, allow_not_found=True)
    files = sorted(
        (
            f.path
            for f in filesystem.get_file_info(selector)
            if f.type == pafs.FileType.File and _is_result(f.base_name)
        ),
    )
    parts = []
    for path in files:
        try:
            parts.append(_read_file(filesystem, path, table))
        except (SchemaError, pa.ArrowException, OSError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            if strict:
                raise AnalysisInputError(f"{path}: {reason}") from exc
            warnings.warn(f"skipping {path}: {reason}", stacklevel=3)
            skipped.append(SkippedFile(path, reason))
    if not parts:
        return table.schema().empty_table().to_pandas()
    # Columns beyond the declaration are kept (the design allows adding them); files without them get nulls.
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def _read_file(filesystem: pafs.FileSystem, path: str, table: Table) -> pa.Table:
    with filesystem.open_input_file(path) as handle:
        data = pq.read_table(handle)
    return table.conform(data, path)


def _is_result(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(".tmp")

"""Reading a results directory into validated DataFrames, from a local path or any pyarrow filesystem URI.

A results directory holds one folder per table declared in ``sweeps.tables`` (``trials/``, ``steps/``,
``probes/``, ``recovery/``, ``function_runs/``), each a set of Parquet files written atomically by the units of
work. Every file is checked against its table's declaration before it is read, so a stray or stale file is named
rather than silently mixed in. Readers that only need counts (the CLI's ``status``) use ``summarize`` on the
loaded result.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from analysis.errors import AnalysisInputError
from sweeps.tables import FUNCTION_RUNS, PROBES, RECOVERY, STEPS, TRIALS, SchemaError, Table, read_file

_TABLES = (TRIALS, STEPS, PROBES, RECOVERY, FUNCTION_RUNS)


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
    function_runs: pd.DataFrame
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
        table.name: _read_table(filesystem, f"{root}/{table.name}", table, strict=strict, skipped=skipped)
        for table in _TABLES
    }
    frames["trials"], frames["function_runs"] = _function_runs_apart(frames["trials"], frames["function_runs"])
    return Results(root=str(results), skipped=tuple(skipped), **frames)


def summarize(results: Results) -> Summary:
    """Counts for a status line: trials per status, rows per table, the best ok loss, skipped files."""
    trials = results.trials
    by_status = {str(k): int(v) for k, v in trials["status"].value_counts().sort_index().items()}
    ok_losses = trials.loc[trials["status"] == "ok", "final_eval_loss"].astype(float)
    ok_losses = ok_losses[np.isfinite(ok_losses)]  # a non-finite loss is no "best" (a hand-edited or broken row)
    rows = {table.name: len(getattr(results, table.name)) for table in _TABLES}
    best = float(ok_losses.min()) if len(ok_losses) else None
    return Summary(results.root, by_status, rows, best, results.skipped)


def _function_runs_apart(trials: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Schema 2 wrote a spikes study's function runs into ``trials`` (architecture mlp-<activation>, depth and width
    in n_layer and d_model): read them as the ``function_runs`` rows they are, unless a row of theirs is there."""
    legacy = trials["architecture"].fillna("").str.startswith("mlp-") if len(trials) else pd.Series(dtype=bool)
    if not legacy.any():
        return trials, runs
    old = trials[legacy]
    config = old["config_json"].map(lambda text: json.loads(text) if isinstance(text, str) else {})
    part = config.map(lambda c: c.get("part", {}))
    moved = pd.DataFrame(
        {
            "run_id": old["trial_id"],
            "study": old["study"],
            "status": old["status"],
            "error": old["error"],
            "activation": old["architecture"].str.removeprefix("mlp-"),
            "depth": old["n_layer"],
            "width": old["d_model"],
            "params": old["params_total"],
            "task": old["corpus"],
            "inputs": part.map(lambda p: p.get("task", {}).get("inputs")),
            "samples": old["batch_size"],
            "test_samples": part.map(lambda p: p.get("task", {}).get("test_samples")),
            "seed": old["seed"],
            "lr": old["lr"],
            "beta1": part.map(lambda p: (p.get("betas") or [None, None])[0]),
            "beta2": part.map(lambda p: (p.get("betas") or [None, None])[1]),
            "steps": old["steps"],
            "final_train_loss": old["final_train_loss"],
            "final_test_loss": old["final_eval_loss"],
            "wall_s": old["wall_s"],
            "device": old["device"],
            "config_json": old["config_json"],
            "versions_json": old["versions_json"],
            "schema_version": old["schema_version"],
            "finished_at": old["finished_at"],
        }
    )
    moved = moved[~moved["run_id"].isin(runs["run_id"])]
    runs = pd.concat([runs, moved], ignore_index=True) if len(runs) else moved.reset_index(drop=True)
    return trials[~legacy].reset_index(drop=True), runs


def _filesystem(results: str) -> tuple[pafs.FileSystem, str]:
    if "://" in results:
        try:
            return pafs.FileSystem.from_uri(results)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise AnalysisInputError(f"{results}: cannot open this URI with pyarrow ({exc})") from exc
    return pafs.LocalFileSystem(), Path(results).expanduser().resolve().as_posix()


def _read_table(
    filesystem: pafs.FileSystem, directory: str, table: Table, *, strict: bool, skipped: list[SkippedFile]
) -> pd.DataFrame:
    selector = pafs.FileSelector(directory, allow_not_found=True)
    files = sorted(
        (
            f.path
            for f in filesystem.get_file_info(selector)
            if f.type == pafs.FileType.File and _is_result(f.base_name)
        ),
    )
    parts: dict[str, pa.Table] = {}

    def skip(path: str, reason: str, exc: Exception | None = None) -> None:
        if strict:
            raise AnalysisInputError(f"{path}: {reason}") from exc
        warnings.warn(f"skipping {path}: {reason}", stacklevel=4)
        skipped.append(SkippedFile(path, reason))

    for path in files:
        try:
            parts[path] = read_file(filesystem, path, table)
        except (SchemaError, pa.ArrowException, OSError) as exc:
            skip(path, str(exc).removeprefix(f"{path}: "), exc)
    for extra, kept in _duplicate_files(parts, table).items():
        skip(extra, f"its rows repeat those of {kept} (same {', '.join(table.key)}; a copy?): kept {kept}")
        del parts[extra]
    if not parts:
        return table.schema().empty_table().to_pandas()
    # Columns beyond the declaration are kept (the design allows adding them); files without them get nulls.
    return pa.concat_tables(_undeclared_unified(parts, table), promote_options="permissive").to_pandas()


def _undeclared_unified(parts: dict[str, pa.Table], table: Table) -> list[pa.Table]:
    """The files' tables, with every undeclared column whose types differ beyond what Arrow can promote (int64 in one
    file, string in another) read as text, and a warning that names the column and its types with a file of each.

    Declared columns are already of one type (``Table.conform``). An undeclared column is someone's addition that no
    analysis computes with, so its values are kept as text rather than dropped: nothing is lost, and it can still be
    read or parsed."""
    files_of: dict[str, dict[pa.DataType, list[str]]] = {}
    for path, data in parts.items():
        for column in data.schema:
            if column.name not in table.names:
                files_of.setdefault(column.name, {}).setdefault(column.type, []).append(path)
    clashing = {name: types for name, types in files_of.items() if not _promotable(list(types))}
    for name, types in clashing.items():
        found = "; ".join(
            f"{kind} in {len(paths)} file{'s' if len(paths) > 1 else ''} ({paths[0]}{', …' if len(paths) > 1 else ''})"
            for kind, paths in types.items()
        )
        warnings.warn(
            f"{table.name} column {name!r} (not declared) has different types: {found}; read as text", stacklevel=4
        )
    return [_as_text(data, [name for name in clashing if name in data.column_names]) for data in parts.values()]


def _promotable(types: list[pa.DataType]) -> bool:
    try:
        pa.unify_schemas([pa.schema([pa.field("column", kind)]) for kind in types], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return False
    return True


def _as_text(data: pa.Table, names: list[str]) -> pa.Table:
    for name in names:
        values = [None if value is None else str(value) for value in data.column(name).to_pylist()]
        data = data.set_column(data.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return data


def _duplicate_files(parts: dict[str, pa.Table], table: Table) -> dict[str, str]:
    """Files whose rows only repeat keys of another file (a sync tool's "conflicted copy", a file copied under
    another name, an older copy of a steps file), each with the file kept in its place: the one with more rows, then
    the newest ``finished_at``, then the one named by its own key (as the writers name files)."""

    def keys(data: pa.Table) -> frozenset[tuple]:
        return frozenset(zip(*(data.column(k).to_pylist() for k in table.key), strict=True))

    def preference(path: str) -> tuple:
        data = parts[path]
        stamps = data.column("finished_at").drop_null().to_pylist() if "finished_at" in data.column_names else []
        first = data.slice(0, 1).to_pylist()[0]
        own_names = {str(first[table.key[0]]), "-".join(str(first[k]) for k in table.key)}
        return (-len(data), -max(stamps).timestamp() if stamps else 0.0, Path(path).stem not in own_names, path)

    kept: list[tuple[str, frozenset[tuple]]] = []
    extra: dict[str, str] = {}
    for path in sorted((p for p, data in parts.items() if len(data)), key=preference):
        mine = keys(parts[path])
        home = next((other for other, theirs in kept if mine <= theirs), None)
        if home is None:
            kept.append((path, mine))
        else:
            extra[path] = home
    return extra


def _is_result(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(".tmp")

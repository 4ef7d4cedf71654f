"""The results directory: where each table's files go, atomic Parquet writes, and which trials are finished.

A results location is a local path or a pyarrow filesystem URI (``s3://``, ``gs://``, NFS paths are local paths). Every
file is written under a hidden temporary name in its final directory and then moved into place, so a reader
(``pandas.read_parquet("RESULTS/trials")`` while a study runs) never sees a partial file; readers skip names starting
with a dot.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.errors import InputError
from sweeps.studies import read_yaml
from sweeps.tables import TABLES, TRIALS, NewerSchemaError, SchemaError, Table, read_file

FINISHED = ("ok", "diverged")  # deterministic outcomes: a rerun would only repeat them


class ResultsError(InputError):
    """The results location cannot be written (read-only, full, missing credentials)."""


@dataclass(frozen=True)
class ResultsDir:
    """A study's results location and its filesystem."""

    uri: str

    @classmethod
    def at(cls, location: str) -> ResultsDir:
        if "://" not in location:
            location = str(Path(location).expanduser().resolve())
        return cls(location)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        try:
            return pafs.FileSystem.from_uri(self.uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ResultsError(
                f"{self.uri}: not a results location pyarrow can open ({str(err).splitlines()[0]}); give a local "
                "path or a URI such as s3://bucket/study or gs://bucket/study"
            ) from err

    def path(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def write_rows(self, table: Table, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write `rows` as ``<table>/<key>.parquet`` atomically (replacing an earlier version of that file)."""
        fs, root = self._fs()
        directory = f"{root.rstrip('/')}/{table.name}"
        fs.create_dir(directory, recursive=True)
        data = table.to_arrow(rows)
        self._write_atomically(fs, directory, f"{key}.parquet", lambda sink: pq.write_table(data, sink))

    def write_text(self, name: str, text: str) -> None:
        fs, root = self._fs()
        self._write_atomically(fs, root.rstrip("/"), name, lambda sink: sink.write(text.encode()))

    def check_belongs_to(self, study: str) -> None:
        """Refuse a location that holds files but is not this study's results (no ``spec.yaml`` of a study named
        `study` and no results table), before anything is written there. A new or empty location is fine, as is one
        holding this study's spec or any results table (a renamed study keeps its results)."""
        fs, root = self._fs()
        try:
            entries = fs.get_file_info(pafs.FileSelector(root.rstrip("/"), allow_not_found=True))
        except OSError as err:
            raise ResultsError(
                f"cannot use {self.uri} as a results directory: {reason(err)}; choose another with --results"
            ) from err
        visible = [e for e in entries if not e.base_name.startswith(".")]
        if not visible or any(e.type == pafs.FileType.Directory and e.base_name in TABLES for e in visible):
            return
        spec = next((e for e in visible if e.base_name == "spec.yaml" and e.type == pafs.FileType.File), None)
        if spec is not None and _study_name(fs, spec.path) == study:
            return
        raise ResultsError(
            f"{self.uri} holds {len(visible)} file(s) or folder(s) but no results of study {study!r} (no spec.yaml "
            "of that study, no results table); nothing was written: choose a new or empty directory with --results"
        )

    def check_writable(self) -> None:
        """Write and remove a hidden file, so that a location that cannot be written is refused before any work
        (tokenizing a corpus can take minutes) and before anything visible is written."""
        fs, root = self._fs()
        self._write_atomically(fs, root.rstrip("/"), None, lambda sink: sink.write(b"scalesweep"))

    def _write_atomically(
        self, fs: pafs.FileSystem, directory: str, name: str | None, write: Callable[[Any], object]
    ) -> None:
        """Write under a hidden temporary name, then move into place as ``name`` (None: remove it instead); on
        failure nothing partial stays visible."""
        tmp = f"{directory}/.{name or 'write-check'}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            fs.create_dir(directory, recursive=True)
            with fs.open_output_stream(tmp) as sink:
                write(sink)
            if name is None:
                fs.delete_file(tmp)
            else:
                fs.move(tmp, f"{directory}/{name}")
        except OSError as err:
            _remove_quietly(fs, tmp)
            raise cannot_write(f"{directory}/{name}" if name else f"in {directory}", err) from err
        except BaseException:
            _remove_quietly(fs, tmp)
            raise

    def table_files(self, table: Table) -> list[str]:
        fs, root = self._fs()
        selector = pafs.FileSelector(f"{root.rstrip('/')}/{table.name}", allow_not_found=True)
        return sorted(
            info.path
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(".")
        )

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """Every row of ``table``, read by the reader the analysis uses (`sweeps.tables.read_file`), so a row is
        finished for `run` exactly when it is for ``status`` and ``fit``. A file that reader skips is left out here
        too (its units rerun and write their own file; ``scalesweep status`` names it); a file from a newer
        scalesweep stops the run, since rerunning its units would overwrite it."""
        fs, _ = self._fs()
        rows: list[dict[str, Any]] = []
        for path in self.table_files(table):
            try:
                rows.extend(read_file(fs, path, table).to_pylist())
            except NewerSchemaError as err:
                raise ResultsError(f"{err}; nothing was run") from err
            except (SchemaError, pa.ArrowException, OSError):
                continue
        return rows

    def statuses(self, table: Table = TRIALS) -> dict[str, str]:
        """key → status of every row of ``table`` (`rows`; a table without a status column: every row is finished,
        its status "ok")."""
        return {row[table.key[0]]: row.get("status", "ok") for row in self.rows(table)}

    def finished_ids(self, table: Table = TRIALS) -> set[str]:
        """Keys of ``table`` whose row is finished (ok or diverged): a rerun skips them."""
        return {key for key, status in self.statuses(table).items() if status in FINISHED}


def cannot_write(where: str, err: OSError) -> ResultsError:
    """The one-line refusal of a results location that cannot be written at `where`."""
    return ResultsError(
        f"cannot write {where}: {reason(err)}; check the permissions and free space of the results location, or "
        "choose another with --results"
    )


def reason(err: OSError) -> str:
    """The OS's words for `err` (e.g. "No space left on device"), for one-line messages."""
    return err.strerror or str(err).splitlines()[0]


def _study_name(fs: pafs.FileSystem, path: str) -> str | None:
    """The ``name`` of the study whose spec is at `path` (None if it cannot be read as one, such as a file nested or
    aliased past the limits of a spec)."""
    try:
        with fs.open_input_stream(path) as stream:
            raw = read_yaml(stream.read().decode("utf-8"), path)
    except (OSError, UnicodeDecodeError, InputError):
        return None
    return raw.get("name") if isinstance(raw, dict) else None


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)

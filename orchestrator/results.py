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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.tables import TRIALS, Table

FINISHED = ("ok", "diverged")  # deterministic outcomes: a rerun would only repeat them


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
        return pafs.FileSystem.from_uri(self.uri)

    def path(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def write_rows(self, table: Table, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write `rows` as ``<table>/<key>.parquet`` atomically (replacing an earlier version of that file)."""
        fs, root = self._fs()
        directory = f"{root.rstrip('/')}/{table.name}"
        fs.create_dir(directory, recursive=True)
        final = f"{directory}/{key}.parquet"
        tmp = f"{directory}/.{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with fs.open_output_stream(tmp) as sink:
                pq.write_table(table.to_arrow(rows), sink)
            fs.move(tmp, final)
        except BaseException:
            _remove_quietly(fs, tmp)
            raise

    def write_text(self, name: str, text: str) -> None:
        fs, root = self._fs()
        fs.create_dir(root, recursive=True)
        tmp = f"{root.rstrip('/')}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_output_stream(tmp) as sink:
            sink.write(text.encode())
        fs.move(tmp, f"{root.rstrip('/')}/{name}")

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

    def trial_statuses(self) -> dict[str, str]:
        """trial_id → status for every readable trials file; unreadable files are left out (status reports them)."""
        fs, _ = self._fs()
        statuses = {}
        for path in self.table_files(TRIALS):
            try:
                table = pq.read_table(path, columns=["trial_id", "status"], filesystem=fs)
            except (OSError, ValueError, KeyError):
                continue
            statuses.update(zip(table["trial_id"].to_pylist(), table["status"].to_pylist(), strict=True))
        return statuses

    def finished_ids(self) -> set[str]:
        return {tid for tid, status in self.trial_statuses().items() if status in FINISHED}


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)

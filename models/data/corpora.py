"""Text corpora: the documents of ``python-stdlib`` or of a ``datasets`` dataset, split into training and held-out
documents, with a fingerprint of exactly the text that was read.

The held-out split is by document and decided by a stable hash of the document's key (its relative path, or its row
index), so the same document is always on the same side, no held-out document is ever trained on, and the tokenizer
is trained on the training documents only. Every problem with the data is found here, before anything trains, and
raised as a one-line :class:`DataError`.

Both splits list their documents in a seeded random order (``DOCUMENT_ORDER_SEED``), never in the order files or rows
come in: the standard library sorted by path puts all codec tables next to each other, and so do datasets whose rows
are sorted by source. The order is part of the corpus fingerprint, so a different order is a different token cache.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.data.errors import DataError
from sweeps.spec import DatasetsCorpus

EVAL_PERCENT = 5
DOCUMENT_ORDER_SEED = 0
"""Seed of the random order of documents within each split (recorded in the fingerprint)."""
STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".txt", ".text", ".csv", ".tsv", ".md"})
SNIFF_BYTES = 65536  # how much of a text data file is checked for binary content before datasets reads it
ROWS_PER_BATCH = 1000


def held_out(key: str) -> bool:
    """Whether the document with this key (relative path or row index) belongs to the held-out split."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest(), "big") % 100 < EVAL_PERCENT


def document_order(count: int) -> list[int]:
    """The seeded random order in which a split's ``count`` documents are listed (a permutation of range(count))."""
    return [int(i) for i in np.random.default_rng(DOCUMENT_ORDER_SEED).permutation(count)]


class Documents(Protocol):
    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[str]: ...


@dataclass(frozen=True)
class Split:
    documents: Documents
    size: int  # UTF-8 bytes, for progress messages


@dataclass(frozen=True)
class TextCorpus:
    name: str
    fingerprint: str
    train: Split
    held_out: Split
    info: dict[str, Any]  # what the cache manifest records about the source


class _Hasher:
    """sha256 over length-prefixed byte strings, so that different splits of the same bytes hash differently."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


# ------------------------------------------------------------------------------------------------- python-stdlib


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[str]:
    """The corpus's files: sorted POSIX paths relative to `root` of the .py files outside site-packages and tests."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_SKIP_DIRS]
        found += [
            Path(folder, f).relative_to(root).as_posix()
            for f in files
            if f.endswith(".py") and not f.startswith("test_")
        ]
    return sorted(found)


def python_stdlib(say: Callable[[str], None]) -> TextCorpus:
    """The running interpreter's standard library as documents, one per file, read as UTF-8."""
    root = stdlib_root()
    files = stdlib_files(root)
    if not files:
        raise DataError(f"found no .py files under {root}: this Python ships no stdlib sources; use another corpus")
    hasher = _Hasher()
    hasher.add(f"document-order:{DOCUMENT_ORDER_SEED}".encode())
    train: list[str] = []
    held: list[str] = []
    undecodable = empty = 0
    for rel in files:
        data = (root / rel).read_bytes()
        hasher.add(rel.encode())
        hasher.add(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        if not text:
            empty += 1
            continue
        (held if held_out(rel) else train).append(text)
    train, held = ([texts[i] for i in document_order(len(texts))] for texts in (train, held))
    say(f"read python-stdlib: {len(files):,} files, {_size(train) / 1e6:.1f} + {_size(held) / 1e6:.1f} MB")
    info = {
        "python_version": sys.version.split()[0],
        "root": str(root),
        "documents": {
            "train": len(train),
            "eval": len(held),
            "skipped_undecodable": undecodable,
            "skipped_empty": empty,
        },
    }
    return TextCorpus("python-stdlib", hasher.hexdigest(), Split(train, _size(train)), Split(held, _size(held)), info)


def _size(texts: list[str]) -> int:
    return sum(len(t.encode()) for t in texts)


# ------------------------------------------------------------------------------------------------------ datasets


def from_datasets(spec: DatasetsCorpus, cache_dir: Path, say: Callable[[str], None]) -> TextCorpus:
    """The `text_field` of `datasets.load_dataset(path, name, data_files, split)`, one document per row.

    Local data (data files on disk, or a local dataset directory) keeps its Arrow cache under `cache_dir`, beside the
    tokens; a hub dataset uses the Hugging Face cache, where an earlier download is found without network."""
    import datasets  # slow to import; only this corpus needs it

    files = _local_files(spec)
    local = files is not None or Path(spec.path).expanduser().exists()
    shown = spec.path if files is None else f"{spec.path} ({', '.join(Path(f).name for f in files)})"
    say(f"loading dataset {shown}")
    try:
        ds = datasets.load_dataset(
            spec.path,
            spec.name,
            data_files=files if files is not None else spec.data_files,
            split=spec.split,
            cache_dir=str(cache_dir) if local else None,
        )
    except Exception as err:  # datasets raises many types here; all mean the data cannot be read as configured
        hint = "" if local else " (a hub dataset needs the hub reachable or an earlier download in the HF cache)"
        raise DataError(f"cannot load dataset {shown}: {_root_cause(err)}: check data.corpus{hint}") from None
    if spec.text_field not in ds.column_names:
        raise DataError(
            f"dataset {shown} has no text field {spec.text_field!r}; its fields are "
            f"{', '.join(map(repr, ds.column_names))}: set data.corpus.text_field to one of them"
        )
    feature = ds.features[spec.text_field]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise DataError(
            f"field {spec.text_field!r} of dataset {shown} holds {feature} values, not text: "
            f"set data.corpus.text_field to a text field"
        )
    hasher = _Hasher()
    hasher.add(f"document-order:{DOCUMENT_ORDER_SEED}".encode())
    rows: tuple[list[int], list[int]] = ([], [])  # indices of the training and the held-out documents
    sizes = [0, 0]
    n_rows = empty = 0
    column = ds.select_columns([spec.text_field])
    for batch in column.iter(batch_size=ROWS_PER_BATCH):
        for text in batch[spec.text_field]:
            data = (text or "").encode()  # a null text counts as an empty one
            hasher.add(data)
            if data:
                side = int(held_out(str(n_rows)))
                rows[side].append(n_rows)
                sizes[side] += len(data)
            else:
                empty += 1
            n_rows += 1
    if n_rows == empty:
        what = "has no rows" if n_rows == 0 else f"has only empty texts in field {spec.text_field!r} ({n_rows:,} rows)"
        raise DataError(f"dataset {shown} {what}: point data.corpus at data with text")
    say(f"read {n_rows:,} documents, {sizes[0] / 1e6:.1f} + {sizes[1] / 1e6:.1f} MB")
    info = {
        "dataset": {
            "path": spec.path,
            "name": spec.name,
            "data_files": files or spec.data_files,
            "split": spec.split,
            "text_field": spec.text_field,
        },
        "documents": {"train": len(rows[0]), "eval": len(rows[1]), "skipped_empty": empty},
    }
    ordered = [[side[i] for i in document_order(len(side))] for side in rows]
    train, held = (Split(_Column(column.select(ordered[s]), spec.text_field), sizes[s]) for s in (0, 1))
    return TextCorpus(spec.path, hasher.hexdigest(), train, held, info)


class _Column:
    """The texts of some rows of a dataset, iterated in batches from Arrow without holding them all in memory."""

    def __init__(self, ds: Any, field: str) -> None:
        self._ds, self._field = ds, field

    def __len__(self) -> int:
        return len(self._ds)

    def __iter__(self) -> Iterator[str]:
        for batch in self._ds.iter(batch_size=ROWS_PER_BATCH):
            yield from batch[self._field]


def _local_files(spec: DatasetsCorpus) -> list[str] | None:
    """The data files on disk, globs expanded and sorted, each checked to exist, be non-empty and (for text
    formats) be text; None when there are no data files or some are remote."""
    if spec.data_files is None or any("://" in f for f in spec.data_files):
        return None
    files: list[str] = []
    for pattern in spec.data_files:
        expanded = os.path.expanduser(pattern)
        matched = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        if not matched:
            raise DataError(f"data file pattern {pattern!r} matches no file: fix data.corpus.data_files")
        files += matched
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise DataError(f"data file {f} does not exist: fix data.corpus.data_files")
        if path.stat().st_size == 0:
            raise DataError(f"data file {f} is empty: fill it or remove it from data.corpus.data_files")
        if path.suffix.lower() in TEXT_SUFFIXES and not _is_text(path):
            raise DataError(
                f"data file {f} is binary, not UTF-8 text: give a {path.suffix} file with text, "
                f"or remove it from data.corpus.data_files"
            )
    return [str(Path(f).resolve()) for f in files]


def _is_text(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # tolerates a character cut at the end
    except UnicodeDecodeError:
        return False
    return True


def _root_cause(err: BaseException) -> str:
    # datasets wraps the informative error (a JSON parse error, a bad byte) in a generic one
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0].rstrip('.')}" if text else type(err).__name__

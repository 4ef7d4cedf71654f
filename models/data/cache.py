"""Where a token cache entry lives and how it is published: once, atomically, by whichever process finishes first.

Training trials call the pipeline too, each in its own process, possibly several at once on one machine or on a node
whose cache is empty. So an entry is built in a private temporary directory beside its final place and renamed into
place in one step; a process that loses the race drops its copy and uses the winner's, which is byte-identical
because building is deterministic. A reader never sees a half-written entry: the directory appears whole or not at all.
A build killed midway leaves a ``.<key>.*.tmp`` directory behind, which is safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from models.data.store import FORMAT_VERSION, MANIFEST


def entry_path(cache_dir: str, source: str, tokenizer: str) -> Path:
    """`cache_dir/tokens/<key>`, the key a short hash of the source's identity, the tokenizer and the format."""
    key = hashlib.sha256(json.dumps([source, tokenizer, FORMAT_VERSION]).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser().resolve() / "tokens" / key


def is_built(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def publish(path: Path, build: Callable[[Path], None]) -> None:
    """Run `build(tmp)` to fill a fresh directory beside `path`, then rename it to `path` unless another process
    published first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        build(tmp)
        for f in tmp.iterdir():  # the entry must survive a crash right after the rename
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache must be readable by every user
        try:
            os.rename(tmp, path)
        except OSError:
            if not is_built(path):  # not a lost race: something else is wrong
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

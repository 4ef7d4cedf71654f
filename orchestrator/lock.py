"""One driver per results directory: a lock file that names its holder and frees itself when the holder dies.

Two drivers on one results directory would each read the same unfinished units and both train them. The driver of a
study therefore holds ``RESULTS/.scalesweep.lock`` from before it reads which units are finished until it returns. The
lock is an advisory ``flock`` on that file, which the kernel releases when the holding process ends however it ends
(SIGKILL included), so a lock left by a dead driver is never in the way; the file holds the holder's pid, host and
start time, for the message the second driver prints. ``flock`` works across the nodes of an NFS mount (Linux maps
it to NFS byte-range locks). Object stores (``s3://``, ``gs://``) have no lock: there, do not run two drivers of a
study at once (the README says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from orchestrator.results import cannot_write
from sweeps.errors import InputError

LOCK_NAME = ".scalesweep.lock"  # hidden: readers of the results skip names starting with a dot


class LockedError(InputError):
    """Another driver is running this study's results directory."""


@contextlib.contextmanager
def study_lock(location: str, *, wait: bool, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of the results directory at `location` (a local or NFS path; a URI is not locked) for the
    body; raise LockedError naming the holder when another driver holds it, or wait for it with `wait`."""
    if "://" in location:
        yield
        return
    directory = Path(location)
    created = not directory.exists()
    path = directory / LOCK_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = _acquire(path, wait=wait, say=say)
    except OSError as err:
        with contextlib.suppress(OSError):
            path.unlink()
        raise cannot_write(str(path), err) from err
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the unlock: a waiter then finds the file gone and takes a fresh one
        handle.close()
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty: a run refused before writing leaves nothing behind


def _acquire(path: Path, *, wait: bool, say: Callable[[str], None]) -> BinaryIO:
    said = False
    while True:
        handle = path.open("a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                handle.close()
                raise LockedError(
                    f"{path.parent} is in use by another scalesweep driver ({holder}); wait for it to end, stop it, "
                    "or pass --wait to start when it is done"
                ) from None
            if not said:
                say(f"waiting for the other driver of these results to end ({holder})")
                said = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        if _same_file(handle, path):
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_me()).encode())
            handle.flush()
            return handle
        handle.close()  # the holder removed the file as it ended: lock the new one


def _same_file(handle: BinaryIO, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _me() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a driver that is still starting"

"""Finding the processes of this test's own Ray, to kill them for real, and starting processes that Ctrl-C reaches."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past a name that may hold spaces


def pids_of(title: str) -> list[int]:
    """Processes of this test's own Ray (descendants of this process) whose proctitle starts with `title` (e.g.
    'ray::ImplicitFunc'): another Ray on the machine, such as a parallel test worker's, is left alone."""
    me, pids = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if not cmdline.startswith(title):
                continue
            ancestor = int(entry.name)
            while ancestor > 1 and ancestor != me:
                ancestor = _parent(ancestor)
            if ancestor == me:
                pids.append(int(entry.name))
    return pids


def ctrl_c_reaches() -> None:
    """Popen's ``preexec_fn`` for a child that a SIGINT must interrupt as Ctrl-C at a terminal would: a test run
    started in the background by a non-interactive shell (a CI script's ``cmd &``) has SIGINT ignored, and every
    process it starts inherits that, so Python in the child would never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

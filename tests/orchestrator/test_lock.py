"""One driver per results directory: a second `scalesweep run` names the holder and exits 2 (or waits with --wait),
and a lock left by a driver killed with SIGKILL is never in the way."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.lock import LOCK_NAME, study_lock

HOLD = """
import sys, time
from orchestrator.lock import study_lock
with study_lock(sys.argv[1], wait=False, say=print):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(results: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process (a driver, as far as the lock is concerned) holding the lock of `results`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(results), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_driver_names_the_holder_and_exits_2_and_a_killed_holder_frees_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "r"
    holder = hold(results, 300)
    try:
        assert main(["run", "smoke", "--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"in use by another scalesweep driver (pid {holder.pid} on {socket.gethostname()} since" in err
        assert sorted(p.name for p in results.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (results / LOCK_NAME).exists()  # the killed holder could not clean up: its lock is stale, not in the way
    with study_lock(str(results), wait=False, say=print):
        pass
    assert list(results.iterdir()) == []  # the lock file goes with the lock


def test_wait_starts_when_the_other_driver_ends(tmp_path: Path) -> None:
    results = tmp_path / "r"
    results.mkdir()
    holder = hold(results, 2)
    said: list[str] = []
    started = time.monotonic()
    with study_lock(str(results), wait=True, say=said.append):
        assert time.monotonic() - started > 1.0  # the holder held it for 2 s from before this started
    assert len(said) == 1 and f"pid {holder.pid}" in said[0]
    assert holder.wait() == 0
    assert list(results.iterdir()) == []

"""A results disk that fills mid-study: one line per trial that could not write its row, a true summary, and after
space is freed a rerun finishes the study. The disk is a real 8 MB tmpfs filled for real (needs root to mount)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.study import run_study
from sweeps.studies import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill for real (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as sink:
        while True:
            sink.write(b"\0" * 65536)
            sink.flush()
    return filler


def test_a_full_disk_gives_one_line_per_trial_and_a_rerun_finishes(ray_local, tiny_study, small_disk: Path) -> None:
    results = small_disk / "r"
    spec = parse_spec(
        tiny_study(
            "full",
            results,
            grid={"tokens": [4096], "seed": [0, 1]},
            resources={"max_concurrent": 1, "retries": 0},
        )
    )
    filled: list[Path] = []

    def fill_after_the_first_row() -> None:
        deadline = time.monotonic() + 120
        while not any((results / "trials").glob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        filled.append(fill(small_disk))

    filler = threading.Thread(target=fill_after_the_first_row)
    filler.start()
    said = io.StringIO()
    first = run_study(spec, stream=said)
    filler.join()
    lines = said.getvalue().splitlines()
    failures = [line for line in lines if " failed: " in line]
    assert (first.ok, first.without_row) == (1, 1), first.summary()
    assert len(failures) == first.without_row, said.getvalue()
    assert all("No space left on device" in line or "could not be recorded" in line for line in failures)
    assert not [line for line in lines if "Traceback" in line or line.startswith(" ")], said.getvalue()

    filled[0].unlink()
    second = run_study(spec, stream=io.StringIO())
    assert (second.skipped, second.ok, second.without_row) == (1, 1, 0), second.summary()
    trials = pd.read_parquet(results / "trials")
    assert len(trials) == 2 and set(trials.status) == {"ok"}

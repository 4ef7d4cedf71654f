"""The driver dies mid-study (SIGINT, and separately SIGKILL): a second run finishes only the unfinished trials.

Real processes: `scalesweep run` runs as a subprocess with its own local Ray; the test interrupts it once some trials
have finished, then runs the study again (`run` after SIGINT, `resume RESULTS` after SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweeps.grid import expand
from sweeps.studies import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def study(results: Path, cache: Path) -> dict:
    return {
        "name": "driver-death",
        "results": str(results),
        "data": {
            "corpus": "synthetic",
            "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 200000},
            "eval_tokens": 1024,
            "cache_dir": str(cache),
        },
        "model": {"sizes": ["1x32", "2x32"], "head_dim": 16, "seq_len": 32},
        "grid": {"tokens": [8192, 12288], "init": [{"rate": 0.5}, {"std": 0.02}], "weight_decay": [0.1]},
        "train": {"batch_size": 8, "eval_interval": 16, "checkpoint_interval": 16},
        "resources": {"max_concurrent": 2},
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def finished_files(results: Path) -> dict[str, bytes]:
    directory = results / "trials"
    return {p.name: p.read_bytes() for p in directory.glob("*.parquet")} if directory.is_dir() else {}


@pytest.mark.parametrize(("sig", "again"), [(signal.SIGINT, "run"), (signal.SIGKILL, "resume")])
def test_second_run_finishes_only_the_unfinished(tmp_path: Path, token_cache: Path, sig: int, again: str) -> None:
    results = tmp_path / "r"
    raw = study(results, token_cache)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    total = len(expand(parse_spec(raw)))

    driver = subprocess.Popen(cli("run", str(spec_file)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while len(finished_files(results)) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.1)
    driver.send_signal(sig)
    output = driver.communicate(timeout=120)[0]
    before = finished_files(results)
    assert 3 <= len(before) < total, output

    second = subprocess.run(
        cli(again, str(spec_file) if again == "run" else str(results)), capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    unfinished = total - len(before)
    assert f"{total - unfinished} already finished, {unfinished} ran ({unfinished} ok" in second.stdout

    after = finished_files(results)
    assert len(after) == total
    assert {name: after[name] for name in before} == before  # finished trials' files untouched, byte for byte
    rows = pd.read_parquet(results / "trials")
    assert rows.trial_id.is_unique and set(rows.status) == {"ok"}
    steps = pd.read_parquet(results / "steps")
    assert not steps.duplicated(["trial_id", "step"]).any()
    per_trial = steps.groupby("trial_id").step.agg(["max", "count"])
    assert (per_trial["max"] == per_trial["count"]).all()  # no gaps

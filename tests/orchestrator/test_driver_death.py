"""The driver dies mid-study, twice: each later run starts only the unfinished trials and the last one finishes them.

Real processes: `scalesweep run` runs as a subprocess with its own local Ray. The test interrupts it with SIGINT once
some trials have finished, runs the study again and kills that run with SIGKILL once it has finished more, then
`resume RESULTS` finishes the rest. Finished trials' files are never touched again.
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
from tests.processes import ctrl_c_reaches

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
        "grid": {"tokens": [8192, 12288, 16384], "init": [{"rate": 0.5}, {"std": 0.02}], "weight_decay": [0.1]},
        "train": {"batch_size": 8, "eval_interval": 16, "checkpoint_interval": 16},
        "resources": {"max_concurrent": 2},
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def finished_files(results: Path) -> dict[str, bytes]:
    directory = results / "trials"
    return {p.name: p.read_bytes() for p in directory.glob("*.parquet")} if directory.is_dir() else {}


def interrupted(
    command: list[str], results: Path, *, once_finished: int, sig: int
) -> tuple[dict[str, bytes], str, int]:
    """Start `command`, send `sig` once `once_finished` trials have their row, and return the rows' files then, the
    command's output and its exit code."""
    driver = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_reaches
    )
    deadline = time.monotonic() + 180
    while len(finished_files(results)) < once_finished and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.1)
    seen, exited = len(finished_files(results)), driver.poll() is not None
    driver.send_signal(sig)
    output = driver.communicate(timeout=120)[0]
    # said on failure: whether the signal found the driver still running, and how many rows it found
    output += f"\n[test] signal {sig} sent with {seen} rows on disk; the driver had {'' if exited else 'not '}exited"
    return finished_files(results), output, driver.returncode


def test_each_run_after_a_dead_driver_finishes_only_the_unfinished(tmp_path: Path, token_cache: Path) -> None:
    results = tmp_path / "r"
    raw = study(results, token_cache)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    total = len(expand(parse_spec(raw)))

    first, output, code = interrupted(cli("run", str(spec_file)), results, once_finished=3, sig=signal.SIGINT)
    assert 3 <= len(first) < total, output
    # Ctrl-C: the truth in one line (what is finished, how to go on), exit 130; no claim of rows that do not exist
    assert code == 130, output
    assert f"scalesweep: interrupted: {len(first)} of {total} trials finished, {total - len(first)} not" in output
    assert "have status 'failed'" not in output, output

    second, output, _ = interrupted(
        cli("run", str(spec_file)), results, once_finished=len(first) + 1, sig=signal.SIGKILL
    )
    assert f"running {total - len(first)} of {total} trials" in output, output
    assert len(first) < len(second) < total, output
    assert {name: second[name] for name in first} == first  # finished trials' files untouched, byte for byte

    last = subprocess.run(cli("resume", str(results)), capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stderr
    unfinished = total - len(second)
    assert f"{total - unfinished} already finished, {unfinished} ran ({unfinished} ok" in last.stdout

    after = finished_files(results)
    assert len(after) == total
    assert {name: after[name] for name in second} == second
    rows = pd.read_parquet(results / "trials")
    assert rows.trial_id.is_unique and set(rows.status) == {"ok"}
    steps = pd.read_parquet(results / "steps")
    assert not steps.duplicated(["trial_id", "step"]).any()
    per_trial = steps.groupby("trial_id").step.agg(["max", "count"])
    assert (per_trial["max"] == per_trial["count"]).all()  # no gaps

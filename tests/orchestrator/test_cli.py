"""The installed command line as a user runs it: a real subprocess, no Ray needed for these."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec


def scalesweep(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_plan_lists_every_cell_with_totals(tmp_path: Path) -> None:
    done = scalesweep("plan", "smoke", "--results", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = expand(load_spec(builtin_spec_path("smoke")))
    for trial in trials:
        assert trial.trial_id in done.stdout
    assert f"{len(trials)} trials (0 finished, {len(trials)} to run)" in done.stdout
    assert not (tmp_path / "none").exists()  # a dry run writes nothing


def test_missing_spec_is_exit_2_one_line(tmp_path: Path) -> None:
    done = scalesweep("run", "no-such-study.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no such spec file" in done.stderr
    assert not (tmp_path / "results").exists()

"""Load: a study of 200 one-step trials completes on 2 cores with every row present."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.study import run_study
from sweeps.studies import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_two_hundred_one_step_trials_all_land(ray_local, token_cache: Path, tmp_path: Path) -> None:
    from benchmarks.driver_memory import one_step_study

    raw = one_step_study("load", 200, tmp_path / "r")
    raw["data"]["cache_dir"] = str(token_cache)
    result = run_study(parse_spec(raw), stream=io.StringIO())
    assert (result.ran, result.ok, result.failed) == (200, 200, 0)
    trials = pd.read_parquet(tmp_path / "r" / "trials")
    assert len(trials) == 200 and trials.trial_id.is_unique and set(trials.seed) == set(range(200))
    steps = pd.read_parquet(tmp_path / "r" / "steps")
    assert len(steps) == 200 and (steps.step == 1).all()

"""A results directory written before function runs had their own table still loads and analyses.

Known answer: the fixture (``tests/fixtures/results-schema2-spikes``, written by the code of commit d605e9f) holds
two function runs as ``mlp-tanh`` rows of ``trials``. Loading must give them as ``function_runs`` rows carrying the
very values of those rows, under the ids today's code gives the same spec, and leave ``trials`` with the one
language-model trial.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import load
from analysis.report import build_sections
from analysis.results import summarize
from sweeps.spikes import function_runs
from sweeps.studies import load_spec

LEGACY = Path(__file__).parents[1] / "fixtures" / "results-schema2-spikes"


@pytest.fixture(scope="module")
def legacy() -> pd.DataFrame:
    """The fixture's trials table as the old code wrote it, read without any migration."""
    return pd.read_parquet(LEGACY / "trials").set_index("trial_id")


def test_function_runs_are_read_out_of_trials_with_their_values(legacy: pd.DataFrame) -> None:
    results = load(LEGACY, strict=True)
    assert list(results.trials["architecture"]) == ["llama"]
    runs = results.function_runs.set_index("run_id")
    old = legacy[legacy["architecture"] == "mlp-tanh"]
    assert sorted(runs.index) == sorted(old.index)
    today = {run.run_id: run for run in function_runs(load_spec(LEGACY / "spec.yaml"))}
    assert set(runs.index) == set(today)
    for run_id, row in runs.iterrows():
        assert (row["activation"], row["depth"], row["width"]) == ("tanh", 2, 32)
        assert row["seed"] == today[run_id].seed and row["lr"] == today[run_id].lr
        assert row["final_test_loss"] == old.loc[run_id, "final_eval_loss"]
        assert row["final_train_loss"] == old.loc[run_id, "final_train_loss"]
        assert (row["inputs"], row["samples"], row["test_samples"]) == (4, 256, 1024)
        assert (row["beta1"], row["beta2"]) == (0.9, 0.999)
        assert row["steps"] == 40 and row["schema_version"] == 2
    steps = results.steps
    for run_id in runs.index:
        assert list(steps.loc[steps["trial_id"] == run_id, "step"].sort_values()) == list(range(1, 41))
    assert summarize(results).rows == {"trials": 1, "steps": 96, "probes": 12, "recovery": 0, "function_runs": 2}


def test_the_report_still_gives_spike_shares_for_both_kinds_of_network() -> None:
    sections = {s.title: s for s in build_sections(load(LEGACY), n_bootstrap=20)}
    spikes = sections["Loss spikes and Adam's stability edges"]
    kinds = [line.split(":")[0] for line in spikes.text if "spikes detected" in line]
    assert kinds == ["llama", "mlp-tanh"]

"""A tiny spikes study on a real local Ray through the CLI: both parts write their rows, a rerun runs nothing, and
the report relates the spikes to the probes per kind of network."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import load
from analysis.report import build_sections
from orchestrator.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def study(ray_local, tiny_study, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("spikes")
    lm = tiny_study(
        "ignored",
        root,
        grid={"tokens": [4096], "seed": [0]},  # 16 steps of 8 × 32 tokens
        train={"batch_size": 8, "warmup_steps": 2, "eval_interval": 16, "adam_stats": {"every": 1}},
        probes={"curvature": {"every": 4, "batch": 4}},
    )
    del lm["name"], lm["results"]
    spec = {
        "kind": "spikes",
        "name": "spikes-test",
        "results": str(root / "results"),
        "function": {"steps": 400, "lr": [0.01], "seed": [0, 1], "probes": {"every": 10}},
        "lm": lm,
    }
    path = root / "spikes.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert main(["run", str(path)]) == 0
    return path, root / "results"


def test_function_runs_and_trials_each_land_in_their_own_table_with_steps_and_probes(study) -> None:
    _, results = study
    trials = pd.read_parquet(results / "trials").set_index("trial_id")
    runs = pd.read_parquet(results / "function_runs").set_index("run_id")
    assert list(trials["architecture"]) == ["llama"]
    assert list(runs["activation"]) == ["tanh", "tanh"] and sorted(runs["seed"]) == [0, 1]
    assert set(trials["status"]) | set(runs["status"]) == {"ok"}
    assert set(trials["study"]) | set(runs["study"]) == {"spikes-test"}
    steps = pd.read_parquet(results / "steps")
    probes = pd.read_parquet(results / "probes")
    for unit_id, n_steps, every in [
        *((i, n, 4) for i, n in trials["steps"].items()),
        *((i, n, 10) for i, n in runs["steps"].items()),
    ]:
        assert list(steps.loc[steps.trial_id == unit_id, "step"].sort_values()) == list(range(1, n_steps + 1))
        probed = probes.loc[probes.trial_id == unit_id, "step"].sort_values()
        assert list(probed) == list(range(every, n_steps + 1, every))
    assert steps["adam_critical_share"].notna().all()


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_rerun_runs_nothing(study, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    path, results = study
    tables = [results / "trials", results / "function_runs"]
    before = sorted((p.name, p.stat().st_mtime_ns) for table in tables for p in table.iterdir())
    assert main([command, str(path if command == "run" else results)]) == 0
    assert "3 units: 3 already finished, 0 ran" in capsys.readouterr().out
    assert sorted((p.name, p.stat().st_mtime_ns) for table in tables for p in table.iterdir()) == before


def test_the_report_gives_spike_shares_per_kind_of_network(study) -> None:
    _, results = study
    sections = {s.title: s for s in build_sections(load(str(results)), n_bootstrap=20)}
    spikes = sections["Loss spikes and Adam's stability edges"]
    kinds = [line.split(":")[0] for line in spikes.text if "spikes detected" in line]
    assert kinds == ["llama", "mlp-tanh"]
    assert spikes.figures


def test_plan_lists_both_parts_and_what_is_finished(study, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = study
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "function part: 2 runs (lr 0.01 × seed 0, 1), 400 full-batch steps each" in out
    assert "2 finished, 0 to run" in out and "1 trials (1 finished, 0 to run)" in out

"""The laptop study path end to end on a real local Ray: spec → Tune grid → real transformers models → Parquet."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.study import run_study
from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec, parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_run(ray_local, token_cache: Path, relocate, tmp_path_factory: pytest.TempPathFactory):
    spec = relocate(load_spec(builtin_spec_path("smoke")), tmp_path_factory.mktemp("smoke"), token_cache)
    result = run_study(spec, stream=io.StringIO())
    return spec, result


def test_smoke_study_end_to_end(smoke_run) -> None:
    spec, result = smoke_run
    trials = expand(spec)
    assert (result.ran, result.ok, result.failed, result.diverged) == (len(trials), len(trials), 0, 0)

    rows = pd.read_parquet(Path(spec.results_path) / "trials")
    assert sorted(rows.trial_id) == sorted(t.trial_id for t in trials)
    assert set(rows.status) == {"ok"}
    assert (rows.params_embedding + rows.params_non_embedding == rows.params_total).all()
    # C = 6·N·D with N the parameters a token is multiplied by: non-embedding plus the (untied) LM head
    assert (rows.params_head == rows.vocab_size * rows.d_model).all()
    assert (rows.flops == 6 * (rows.params_non_embedding + rows.params_head) * rows.tokens).all()
    assert (rows.eval_loss_se > 0).all() and (rows.eval_loss_se < 0.05 * rows.final_eval_loss).all()
    uniform = math.log(spec.data.synthetic.vocab_size)
    assert (rows.final_eval_loss < uniform).all()  # every model beat the uniform predictor
    assert (rows.irreducible_loss < rows.final_eval_loss).all()  # and none beat the entropy rate
    assert rows.irreducible_loss.nunique() == 1

    steps = pd.read_parquet(Path(spec.results_path) / "steps")
    assert not steps.duplicated(["trial_id", "step"]).any()
    per_trial = steps.groupby("trial_id").step.agg(["min", "max", "count"])
    assert (per_trial["min"] == 1).all() and (per_trial["max"] == per_trial["count"]).all()
    last = steps.loc[steps.groupby("trial_id").step.idxmax()]
    assert last.eval_loss.notna().all()
    assert (Path(spec.results_path) / "spec.yaml").is_file()


def test_rerun_is_a_no_op(smoke_run) -> None:
    spec, _ = smoke_run
    trials_dir = Path(spec.results_path) / "trials"
    before = {p.name: p.read_bytes() for p in trials_dir.iterdir()}
    again = run_study(spec, stream=io.StringIO())
    assert again.ran == 0 and again.skipped == len(expand(spec))
    assert {p.name: p.read_bytes() for p in trials_dir.iterdir()} == before


def test_extending_an_axis_runs_only_new_cells(smoke_run) -> None:
    spec, _ = smoke_run
    old = {t.trial_id for t in expand(spec)}
    grid = spec.grid.model_copy(update={"tokens": [*spec.grid.tokens, 49152]})
    bigger = spec.model_copy(update={"grid": grid})
    new = {t.trial_id for t in expand(bigger)} - old
    result = run_study(bigger, stream=io.StringIO())
    assert result.ran == len(new) == 8 and result.ok == 8
    rows = pd.read_parquet(Path(spec.results_path) / "trials")
    assert set(rows.trial_id) == old | new


def test_diverging_cell_is_recorded_and_the_study_goes_on(ray_local, tiny_study, tmp_path: Path) -> None:
    raw = tiny_study(
        "diverge",
        tmp_path / "r",
        grid={"tokens": [4096], "lr": [3e-3, 1e30]},
        train={"batch_size": 8, "warmup_steps": 0, "eval_interval": 4},
    )
    result = run_study(parse_spec(raw), stream=io.StringIO())
    assert (result.ok, result.diverged, result.failed) == (1, 1, 0)
    rows = pd.read_parquet(tmp_path / "r" / "trials").set_index("lr")
    assert rows.loc[1e30, "status"] == "diverged" and rows.loc[3e-3, "status"] == "ok"
    assert "non-finite" in rows.loc[1e30, "error"]
    steps = pd.read_parquet(tmp_path / "r" / "steps")
    diverged_steps = steps[steps.trial_id == rows.loc[1e30, "trial_id"]]
    assert not math.isfinite(diverged_steps.sort_values("step").train_loss.iloc[-1])


def test_status_reads_the_results(smoke_run, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    spec, _ = smoke_run
    assert main(["status", spec.results_path]) == 0
    out = capsys.readouterr().out
    n_ok = (pd.read_parquet(Path(spec.results_path) / "trials").status == "ok").sum()
    assert f"{n_ok} ok" in out
    for trial in expand(spec):
        assert trial.trial_id in out

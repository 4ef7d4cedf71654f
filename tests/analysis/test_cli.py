"""``fit_main`` and ``report_main`` end to end on generated results directories and on the published minima."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import AnalysisInputError
from analysis.cli import FitRequest, fit_main, report_main
from orchestrator.cli import main
from sweeps.tables import SCHEMA_VERSION


def test_fit_prints_and_writes_the_table(tmp_path: Path, gen, capsys: pytest.CaptureFixture[str]) -> None:
    law = gen.Law()
    gen.write_trials(tmp_path / "results", gen.trial_rows(law))
    request = FitRequest(n_bootstrap=300)
    code = fit_main(str(tmp_path / "results"), request=request, out=str(tmp_path / "fit"), strict=True)
    assert code == 0
    printed = capsys.readouterr().out
    assert "alpha" in printed and "beta" in printed
    table = pd.read_parquet(tmp_path / "fit" / "fit.parquet")
    document = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert len(table) == 1 and document["form"] == "joint"
    assert table["alpha_low"].iloc[0] <= law.alpha <= table["alpha_high"].iloc[0]
    assert document["groups"][0]["alpha"] == pytest.approx(table["alpha"].iloc[0])


def test_fit_by_group_and_default_output_folder(tmp_path: Path, gen) -> None:
    rows = gen.trial_rows(gen.Law(), seed=1, extra={"weight_decay": 0.0}) + gen.trial_rows(
        gen.Law(), seed=2, extra={"weight_decay": 0.1}
    )
    gen.write_trials(tmp_path, rows)
    request = FitRequest(by=("weight_decay",), form="N", n_bootstrap=200)
    assert fit_main(str(tmp_path), request=request, out=None, strict=False) == 0
    table = pd.read_parquet(tmp_path / "analysis" / "fit.parquet")
    assert list(table["weight_decay"]) == [0.0, 0.1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"form": "quadratic"}, "--form quadratic"),
        ({"by": ("colour",)}, "--by colour"),
        ({"law": "cubic"}, "--law cubic"),
        ({"n": "embedding"}, "--n embedding"),
        ({"n_bootstrap": 3}, "--bootstrap 3"),
        ({"drop_highest": -1}, "--drop-highest -1"),
        ({"e_given": -1.0}, "--E -1"),
    ],
)
def test_fit_bad_options_are_one_line_input_errors(tmp_path: Path, gen, options: dict, message: str) -> None:
    gen.write_trials(tmp_path, gen.trial_rows(gen.Law())[:6])
    with pytest.raises(AnalysisInputError, match=message) as info:
        fit_main(str(tmp_path), request=FitRequest(**options), out=None, strict=False)
    assert "\n" not in str(info.value)


def test_fit_without_ok_trials_is_an_input_error(tmp_path: Path, gen) -> None:
    rows = [{**r, "status": "failed", "final_eval_loss": None} for r in gen.trial_rows(gen.Law())[:3]]
    gen.write_trials(tmp_path, rows)
    with pytest.raises(AnalysisInputError, match="no ok trials"):
        fit_main(str(tmp_path), request=FitRequest(), out=None, strict=False)


def _full_results(tmp_path: Path, gen) -> Path:
    results = tmp_path / "results"
    rows = gen.trial_rows(gen.Law(), seed=1, extra={"init_rate": 0.5}) + gen.trial_rows(
        gen.Law(alpha=0.4), seed=2, extra={"init_rate": 1.0}
    )
    gen.write_trials(results, rows)
    for row in rows[::7]:
        steps = [
            {
                "trial_id": row["trial_id"],
                "step": s,
                "tokens": s * row["tokens"] // 20,
                "train_loss": row["final_eval_loss"] * (1 + 2 / s),
                "eval_loss": row["final_eval_loss"] * (1 + 2 / s) if s % 5 == 0 else None,
            }
            for s in range(1, 21)
        ]
        gen.write_rows(results, "steps", row["trial_id"], steps)
    probes = [
        {
            "trial_id": rows[0]["trial_id"],
            "step": s,
            "lr": 1e-3,
            "beta1": 0.9,
            "lambda_max_hessian": 50.0 * s,
            "lambda_max_precond": 4000.0 * s,
            "threshold_gd": 2e3,
            "threshold_momentum": 3.8e4,
        }
        for s in (10, 20, 30)
    ]
    gen.write_rows(results, "probes", rows[0]["trial_id"], probes)
    recovery = [
        {
            "task_id": f"r{n}-{seed}",
            "study": "generated",
            "target": "matrix_factorization",
            "student": "mf",
            "d": 10,
            "n": int(n),
            "seed": seed,
            "init_scale": 1e-3,
            "recovered": bool(n >= 40 + 10 * seed),
            "model_rank_theory": 36,
        }
        for n in np.unique(np.geomspace(10, 200, 10).astype(int))
        for seed in range(4)
    ]
    gen.write_rows(results, "recovery", "all", recovery)
    return results


def test_report_writes_self_contained_html_markdown_and_pngs(tmp_path: Path, gen) -> None:
    results = _full_results(tmp_path, gen)
    out = tmp_path / "report"
    assert report_main(str(results), out_dir=str(out), strict=True, n_bootstrap=50) == 0
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    expected = {
        "group0_loss_vs_N.png",
        "group0_loss_vs_D.png",
        "group0_isoloss.png",
        "group0_residuals.png",
        "group_exponents.png",
        "training_curves.png",
        "recovery.png",
        "curvature.png",
    }
    assert expected <= set(pngs)
    assert html.count("data:image/png;base64,") == len(pngs)
    assert 'src="group' not in html  # nothing linked: the HTML stands alone
    for name in pngs:
        assert f"]({name})" in markdown
    assert "Extrapolation check" in markdown


def test_report_on_complexity_control_minima(tmp_path: Path, shared_data: Path, gen) -> None:
    """The published minima as a results directory: min_eval_loss is what the source logs give, so it stands in
    for final_eval_loss here."""
    raw = pd.read_csv(shared_data / "complexity_control_minima.csv").drop_duplicates(
        ["params", "tokens", "init", "init_rate", "init_std", "weight_decay"]
    )
    rows = [
        {
            "trial_id": f"cc{i}",
            "study": "complexity-control",
            "status": "ok",
            "params_non_embedding": int(r.params),
            "tokens": int(r.tokens),
            "init_rate": None if np.isnan(r.init_rate) else r.init_rate,
            "init_std": None if np.isnan(r.init_std) else r.init_std,
            "weight_decay": r.weight_decay,
            "final_eval_loss": r.min_eval_loss,
            "min_eval_loss": r.min_eval_loss,
            "schema_version": SCHEMA_VERSION,
        }
        for i, r in enumerate(raw.itertuples())
    ]
    gen.write_trials(tmp_path / "results", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert (
            report_main(str(tmp_path / "results"), out_dir=str(tmp_path / "report"), strict=True, n_bootstrap=50) == 0
        )
    markdown = (tmp_path / "report" / "report.md").read_text()
    for label in ("γ=1, λ=1", "γ=0.5, λ=0.1", "std=0.02, λ=0.1"):
        assert label in markdown
    # the exponents figure plots identified estimates only; without any, the report says so instead
    figure = (tmp_path / "report" / "group_exponents.png").is_file()
    assert figure != ("No exponent is identified in any group" in markdown)


def test_report_of_an_lr_sweep_shows_the_lr_chosen(tmp_path: Path, gen) -> None:
    law = gen.Law()
    best = gen.trial_rows(law, seed=1, extra={"lr": 0.01})
    worse = [
        {**row, "trial_id": f"{row['trial_id']}-hi", "lr": 0.03, "final_eval_loss": row["final_eval_loss"] * 1.05}
        for row in best
    ]
    gen.write_trials(tmp_path / "results", best + worse)
    assert report_main(str(tmp_path / "results"), out_dir=str(tmp_path / "report"), strict=True, n_bootstrap=100) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Learning rate chosen per size" in markdown and (tmp_path / "report" / "lr_envelope.png").is_file()
    assert f"{len(best)} trials;" in markdown  # one point per cell: the envelope, not both learning rates


def _cli(command: str, results: Path, tmp_path: Path) -> int:
    """``scalesweep COMMAND RESULTS`` through the real command line, with few resamples and a report folder."""
    options = {
        "status": [],
        "fit": ["--form", "D", "--law", "free", "--bootstrap", "10"],
        "report": ["-o", str(tmp_path / "report"), "--bootstrap", "10"],
    }
    return main([command, str(results), *options[command]])


@pytest.mark.parametrize(("command", "said"), [("status", "trials 4 ok"), ("fit", "fit.json"), ("report", "report.md")])
def test_an_added_column_of_clashing_types_is_read(
    tmp_path: Path, gen, command: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An undeclared column written as int64 by some trials and as a string by another (issue 16, item 14). One
    model size: L(D) is fitted, and the report (which fits L(N, D)) says why it cannot, so this stays quick."""
    rows = gen.trial_rows(gen.Law(), sizes=(2e6,))
    for index, row in enumerate(rows):
        value = pa.array(["gpu-a"]) if index == 3 else pa.array([index])
        path = gen.write_rows(tmp_path / "results", "trials", str(row["trial_id"]), [row])
        pq.write_table(pq.read_table(path).append_column("node", value), path)
    with pytest.warns(UserWarning, match="'node'"):
        assert _cli(command, tmp_path / "results", tmp_path) == 0
    assert said in capsys.readouterr().out


def test_a_study_whose_trials_all_failed(tmp_path: Path, gen, capsys: pytest.CaptureFixture[str]) -> None:
    """Every trial failed after logging steps (issue 16, item 15): status counts them, fit is one line and exit code
    2 with nothing written, and the report says nothing was fitted and shows the training curves."""
    results = tmp_path / "results"
    rows = [
        {**row, "status": "failed", "error": "RuntimeError: out of memory", "final_eval_loss": None}
        | {column: None for column in ("params_non_embedding", "params_embedding", "params_total", "flops")}
        for row in gen.trial_rows(gen.Law())[:4]
    ]
    gen.write_trials(results, rows)
    for row in rows:
        steps = [
            {"trial_id": row["trial_id"], "step": s, "tokens": 512 * s, "train_loss": 6.0 / s} for s in range(1, 9)
        ]
        gen.write_rows(results, "steps", str(row["trial_id"]), steps)
    assert _cli("status", results, tmp_path) == 0
    assert "trials 4 failed" in capsys.readouterr().out
    assert _cli("fit", results, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ok trials" in err[0] and not (results / "analysis").exists()
    assert _cli("report", results, tmp_path) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "No law fitted" in markdown and "![training_curves](training_curves.png)" in markdown
    assert (tmp_path / "report" / "training_curves.png").is_file()

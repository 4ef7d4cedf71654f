"""``scalesweep recommend`` on generated results: both approaches' allocation against the law that made the data, the
nearest shape and its exact count against a brute-force search, the cost against the throughput the trials recorded,
the budget of a target loss against the closed form, and bad input as one line with exit code 2."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisInputError
from analysis.fits import fit_chinchilla
from analysis.recommend import family_of, throughput_of
from orchestrator.cli import main
from sweeps.accounting import ModelShape, shape_counts

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 3.2e13  # one of the generated budgets: inside what both approaches measured


def _true_n_opt(law, flops: float) -> float:
    total = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / total)
    return g * (flops / 6) ** (law.beta / total)


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory, gen) -> dict:
    """``recommend --json`` at BUDGET on an IsoFLOP grid generated from the default law (one run: it fits)."""
    results = gen.write_trials(tmp_path_factory.mktemp("isoflop"), gen.isoflop_rows(gen.Law()))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["recommend", str(results), "--flops", str(BUDGET), "--json", "--bootstrap", "200"])
    assert code == 0
    (line,) = out.getvalue().splitlines()  # one group: one JSON object
    return json.loads(line)


def test_both_approaches_recover_the_allocation_of_the_law(answer: dict, gen) -> None:
    law = gen.Law()
    assert set(answer) == {"flops", "group", "n", "approaches"} and answer["flops"] == BUDGET
    assert answer["n"] == "with-head"
    truth = _true_n_opt(law, BUDGET)
    for name in ("isoflop", "joint"):
        approach = answer["approaches"][name]
        assert set(approach) == {"a", "b", "N", "D", "loss", "shape", "cost", "extrapolated", "reason"}
        assert approach["reason"] is None and approach["extrapolated"] is False
        n, d, loss = approach["N"], approach["D"], approach["loss"]
        assert n["low"] <= truth <= n["high"]
        assert d["value"] == pytest.approx(BUDGET / (6 * n["value"]))
        assert approach["a"]["low"] <= law.beta / (law.alpha + law.beta) <= approach["a"]["high"]
        assert loss["low"] <= law(np.float64(n["value"]), np.float64(d["value"])) <= loss["high"]


def test_the_shape_is_the_nearest_of_the_family_and_its_cost_the_measured_rate(answer: dict) -> None:
    for approach in answer["approaches"].values():
        shape, cost, n = approach["shape"], approach["cost"], approach["N"]["value"]
        # brute force over the family (depth 2, widths multiples of head_dim 16): the nearest count in log
        counts = {w: shape_counts(ModelShape("llama", 2, w, 16, 32), 512).compute for w in range(16, 2049, 16)}
        nearest = min(counts, key=lambda w: abs(math.log(counts[w] / n)))
        assert (shape["n_layer"], shape["d_model"], shape["params"]) == (2, nearest, counts[nearest])
        assert shape["rule"] == "depth 2 fixed, d_model a multiple of head_dim 16"
        batch = 8 * 32
        assert shape["tokens"] % batch == 0
        assert 6 * shape["params"] * shape["tokens"] <= BUDGET < 6 * shape["params"] * (shape["tokens"] + batch)
        assert cost["flops"] == 6 * shape["params"] * shape["tokens"]
        # the generated trials ran at exactly 3e8·N^-0.8 tokens/s
        assert cost["tokens_per_s"] == pytest.approx(3e8 * shape["params"] ** -0.8, rel=1e-9)
        assert cost["hours"] == pytest.approx(shape["tokens"] / cost["tokens_per_s"] / 3600, rel=1e-12)
        assert cost["extrapolated"] is False and cost["device"] == "cpu"


def test_family_rules_and_throughput_extrapolation(gen) -> None:
    ladder = pd.DataFrame(
        [
            {"status": "ok", "architecture": "llama", "n_layer": n_layer, "d_model": 32 * n_layer, "head_dim": 16}
            | {"seq_len": 64, "vocab_size": 1000, "batch_size": 4}
            for n_layer in (2, 4, 8)
        ]
    )
    family = family_of(ladder, n="total")
    assert family.depth == pytest.approx((1 / 32, 1.0))  # n_layer = d_model / 32
    assert family.rule.startswith("n_layer = round(0.031") and family.rule.endswith("multiple of head_dim 16")
    target = shape_counts(ModelShape("llama", 16, 512, 16, 64), 1000).total
    shape, count = family.nearest(target * 1.01)
    assert (shape.n_layer, shape.d_model, count) == (16, 512, target)
    assert family_of(ladder.assign(head_dim=[16, 16, 32]), n="total") == "the trials mix head_dim: no one model family"
    rows = pd.DataFrame(gen.isoflop_rows(gen.Law()))
    throughput = throughput_of(rows, n="with-head")
    assert throughput.slope == pytest.approx(-0.8)
    n = rows["params_non_embedding"] + 16 * 512  # the smallest model, width 16
    assert throughput.tokens_per_s(float(n.min()))[1] is False
    assert throughput.tokens_per_s(float(n.min()) / 2)[1] is True  # below the sizes measured
    assert "at 1 size(s)" in throughput_of(rows[rows["d_model"] == 64], n="with-head")


def test_the_budget_of_a_target_loss_is_the_closed_form(gen) -> None:
    law = gen.Law()
    points = pd.DataFrame(gen.trial_rows(law))
    n = points["params_non_embedding"] + 32_768
    fit = fit_chinchilla(n, points["tokens"], points["final_eval_loss"], n_bootstrap=100)
    target = float(fit.compute_optimal([1e18])["loss"][0])
    budget = fit.compute_for_loss(target)
    assert budget.value == pytest.approx(1e18, rel=1e-8)  # the frontier's loss at that budget is the target
    assert budget.low < 1e18 < budget.high
    e = math.exp(fit.theta[2])
    with pytest.raises(AnalysisInputError, match="not reachable"):
        fit.compute_for_loss(e * 0.99)


def test_without_a_budget_grid_isoflop_is_not_identified_and_ray_never_starts(tmp_path: Path, gen) -> None:
    gen.write_trials(tmp_path, gen.trial_rows(gen.Law()))  # a tokens grid, without model shapes
    code = (
        "import sys\nfrom orchestrator.cli import main\n"
        f"code = main(['recommend', {str(tmp_path)!r}, '--flops', '1e18', '--bootstrap', '100'])\n"
        "print('exit', code, sorted(m for m in ('ray', 'torch', 'transformers') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    printed = run.stdout
    assert "exit 0 []" in printed
    assert "IsoFLOP minima (Approach 2): not identified: a is not identified: no trial has a compute budget" in printed
    assert "joint law L(N, D) (Approach 3) (extrapolated beyond the compute measured), 95% intervals" in printed
    assert "shape: the trials do not record architecture" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--flops", "1e18"], "no results directory there"),
        (["--flops", "-5"], "--flops -5: must be a positive number"),
        (["--flops", "1e18", "--loss", "3"], "give exactly one of --flops"),
        ([], "give exactly one of --flops"),
        (["--loss", "0"], "--loss 0: must be a positive loss"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["recommend", str(tmp_path / "absent"), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("scalesweep: error: ") and message in line

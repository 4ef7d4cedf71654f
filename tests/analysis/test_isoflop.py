"""The IsoFLOP-minimum fit (Approach 2) against known laws, its edge rules, its figures and its report section; beside
Approach 3 (the joint law) on the same trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer

from analysis import plots
from analysis.fits import fit_chinchilla
from analysis.isoflop import KEPT, NO_BUDGETS, fit_isoflop
from analysis.report import build_sections
from analysis.results import load


def _points(rows: list[dict]) -> pd.DataFrame:
    """N with the LM head (the trials' flops convention), D, loss and the budget of generated trials."""
    frame = pd.DataFrame(rows)
    n = frame["params_non_embedding"] + frame["d_model"] * frame["vocab_size"]
    return pd.DataFrame(
        {"N": n, "D": frame["tokens"], "loss": frame["final_eval_loss"], "flops_budget": frame["flops_budget"]}
    )


def _truth(law) -> tuple[float, float, float]:
    """a = β/(α+β), b = α/(α+β) and G of N_opt = G·(C/6)^a (Hoffmann et al. 2022, eq. 4)."""
    total = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / total)
    return law.beta / total, law.alpha / total, g


def test_recovers_the_known_exponents_beside_the_joint_law(gen) -> None:
    law = gen.Law()
    a_true, b_true, g = _truth(law)
    points = _points(gen.isoflop_rows(law))
    fit = fit_isoflop(points, n_bootstrap=1000)
    assert [b.status for b in fit.budgets] == [KEPT] * 4
    assert fit.identified
    assert fit.a.low <= a_true <= fit.a.high and fit.b.low <= b_true <= fit.b.high
    assert fit.a.high - fit.a.low < 0.08  # measured 0.035 on 0.5% noise: a finding, not a shrug
    assert fit.a.value + fit.b.value == pytest.approx(1.0)  # D* = C/(6·N*): b = 1 − a
    for budget in fit.kept:  # every minimum where the law puts it, within a few percent
        assert budget.n_opt.value == pytest.approx(g * (budget.flops / 6) ** a_true, rel=0.06)
    allocation = fit.compute_optimal([3.2e13])
    assert allocation["n_opt_low"][0] <= g * (3.2e13 / 6) ** a_true <= allocation["n_opt_high"][0]
    assert allocation["d_opt"][0] == pytest.approx(3.2e13 / (6 * allocation["n_opt"][0]))
    # Approach 3 on the same trials: the joint law is identified on an IsoFLOP grid and agrees.
    joint = fit_chinchilla(points["N"], points["D"], points["loss"], n_bootstrap=200).params()
    assert joint["a"].status == "identified"
    assert joint["a"].low <= a_true <= joint["a"].high and joint["b"].low <= b_true <= joint["b"].high
    assert joint["a"].low <= fit.a.high and fit.a.low <= joint["a"].high


def test_a_minimum_at_the_edge_of_its_sizes_is_flagged_and_left_out(gen) -> None:
    law = gen.Law()
    budgets = (1e11, 2e12, 8e12, 3.2e13, 1.28e14)  # at 1e11 the optimum (1.35e4) lies below the smallest size (1.5e4)
    points = _points(gen.isoflop_rows(law, budgets=budgets))
    fit = fit_isoflop(points, n_bootstrap=300)
    edge = fit.budgets[0]
    assert not edge.kept and edge.status.startswith("minimum at the edge") and "smallest" in edge.status
    assert [b.kept for b in fit.budgets[1:]] == [True] * 4
    without = fit_isoflop(points[points["flops_budget"] > budgets[0]], n_bootstrap=300)
    assert fit.a.value == pytest.approx(without.a.value, rel=1e-12)  # the edge budget takes no part
    figure = plots.isoflop_curves(fit)
    ax = figure.axes[0]
    assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == 4  # a minimum per kept budget
    assert len([c for c in ax.collections if isinstance(c, PathCollection)]) == 5  # the points of every budget
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 5 and "left out" in legend[0]


def test_too_few_budgets_sizes_or_points_are_not_identified(gen) -> None:
    law = gen.Law()
    two = fit_isoflop(_points(gen.isoflop_rows(law, budgets=(8e12, 3.2e13))), n_bootstrap=100)
    assert two.a.status == "not identified" and "at least 3" in two.a.reason and len(two.kept) == 2
    with pytest.raises(ValueError, match="not identified"):
        two.compute_optimal([1e13])
    assert fit_isoflop(_points(gen.isoflop_rows(law)).drop(columns="flops_budget")).a.reason == NO_BUDGETS
    parts = [
        _points(gen.isoflop_rows(law, budgets=(8e12,), widths=(32, 64))),
        _points(gen.isoflop_rows(law, budgets=(3.2e13,), widths=(64, 96, 128))),
    ]
    budgets = fit_isoflop(pd.concat(parts, ignore_index=True), n_bootstrap=100).budgets
    assert budgets[0].status.startswith("2 size(s)") and budgets[0].coefficients is None
    assert "fit the parabola exactly" in budgets[1].status


def test_a_parabola_opening_downward_has_no_minimum() -> None:
    n = np.geomspace(1e4, 1e6, 6)
    loss = 3.0 - 0.05 * (np.log(n) - np.log(1e5)) ** 2  # a maximum, not a minimum
    budget = fit_isoflop(pd.DataFrame({"N": n, "loss": loss, "flops_budget": 1e12}), n_bootstrap=50).budgets[0]
    assert budget.n_opt is None and "opens downward" in budget.status


def test_the_minimum_of_an_exact_parabola_is_its_vertex() -> None:
    n = np.geomspace(1e4, 1e6, 7)
    wobble = 1e-4 * np.array([1, -1, 1, -1, 1, -1, 1])
    loss = 3.0 + 0.04 * (np.log(n) - np.log(7e4)) ** 2 + wobble
    budget = fit_isoflop(pd.DataFrame({"N": n, "loss": loss, "flops_budget": 1e12}), n_bootstrap=500).budgets[0]
    assert budget.kept
    assert budget.n_opt.value == pytest.approx(7e4, rel=0.01)
    assert budget.n_opt.low < 7e4 < budget.n_opt.high


def test_compute_optimal_figure_draws_both_approaches(gen) -> None:
    law = gen.Law()
    points = _points(gen.isoflop_rows(law))
    fit = fit_isoflop(points, n_bootstrap=200)
    joint = fit_chinchilla(points["N"], points["D"], points["loss"], n_bootstrap=100)
    for ax in plots.compute_optimal(fit, joint).axes:
        labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert labels == ["IsoFLOP minima (Approach 2)", "joint law (Approach 3)"]
        (minima,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(minima.lines[0].get_xdata()) == 4
    alone = plots.compute_optimal(fit, None)
    assert "Approach 3: no allocation" in alone.texts[0].get_text()
    assert len([line for line in alone.axes[0].get_lines() if not line.get_label().startswith("_")]) == 1


def test_report_has_an_isoflop_section_when_the_trials_have_budgets(tmp_path: Path, gen) -> None:
    gen.write_trials(tmp_path / "results", gen.isoflop_rows(gen.Law()))
    sections = build_sections(load(tmp_path / "results", strict=True), n_bootstrap=50)
    (section,) = [s for s in sections if s.title.startswith("IsoFLOP minima")]
    assert section.title.endswith("— all")
    assert any(line.startswith("a (N_opt ∝ C^a) = 0.4") and "from the joint law: 0.4" in line for line in section.text)
    assert list(section.figures) == ["isoflop0_curves", "isoflop0_allocation"]
    assert len(section.tables[0]) == 4


def test_on_an_isoflop_grid_a_term_the_data_do_not_move_is_still_not_identified(gen) -> None:
    flat = gen.Law(A=0.5)  # the N term changes the loss by ~0.2% across the sizes: not measured
    points = _points(gen.isoflop_rows(flat, noise=0.001))
    alpha = fit_chinchilla(points["N"], points["D"], points["loss"], n_bootstrap=50).params()["alpha"]
    assert alpha.status == "not identified" and "the fitted N term: no two points share D" in alpha.reason

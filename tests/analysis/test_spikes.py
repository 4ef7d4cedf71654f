"""Spike detection and the probe quantities before each spike, against planted series and the Adam quadratic.

Known answers: loss series with spikes planted at exact steps (and decoys the rule must ignore), probe series with
crossings planted at exact steps, and the one-dimensional quadratic L = hθ²/2 under Adam at ηh < 2, simulated here in
numpy, whose spikes and threshold crossings are read off the simulation itself (``tests/models/probes/
test_adam_spikes.py`` checks the same dynamics against torch's Adam).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import report_main
from analysis.spikes import SpikeRule, analyze_spikes, detect_spikes, momentum_edge, spike_shares
from sweeps.tables import SCHEMA_VERSION

BETA2, EPS = 0.999, 1e-8


def _planted_loss(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """600 steps at loss ≈ 2 (0.5% noise) with spikes at 120 (10 steps), 300 (25 steps, rise then decay) and 400
    (oscillating: one step back at baseline inside it), and decoys: a 2-step blip at 480, a 3-step rise of 30% at
    530 and a spike at 30, inside the first window, where no baseline exists."""
    rng = np.random.default_rng(seed)
    step = np.arange(1, 601)
    loss = 2.0 * (1 + 0.005 * rng.standard_normal(600))
    factor = np.ones(600)
    factor[119:129] = 4.0
    factor[299:324] = np.concatenate([np.linspace(2.0, 50.0, 10), np.geomspace(40.0, 1.6, 15)])
    factor[399:410] = [3, 6, 9, 1, 8, 6, 3, 3, 3, 3, 3]
    factor[479:481] = 10.0
    factor[529:532] = 1.3
    factor[29:35] = 5.0
    return step, loss * factor


def test_planted_spikes_are_found_at_their_exact_steps() -> None:
    step, loss = _planted_loss()
    spikes = detect_spikes(step, loss)
    assert [(s.onset, s.end) for s in spikes] == [(120, 129), (300, 324), (400, 410)]
    assert [s.peak for s in spikes] == [120 + int(np.argmax(loss[119:129])), 309, 402]
    assert spikes[1].peak_ratio == pytest.approx(50.0, rel=0.05)
    # The decoys become spikes only when the rule allows them: 2 steps with min_length 2; 30% with margin 0.25.
    assert 480 in [s.onset for s in detect_spikes(step, loss, rule=SpikeRule(min_length=2))]
    assert 530 in [s.onset for s in detect_spikes(step, loss, rule=SpikeRule(margin=0.25))]


def test_a_loss_at_exactly_zero_makes_any_rise_an_infinite_spike() -> None:
    """A memorized batch can round the loss to 0.0: the baseline is then 0 and the rise has no finite ratio."""
    step = np.arange(1, 101)
    loss = np.zeros(100)
    loss[70:75] = 1e-7
    (spike,) = detect_spikes(step, loss, rule=SpikeRule(window=50, margin=0.5, min_length=3))
    assert (spike.onset, spike.end, spike.baseline) == (71, 75, 0.0)
    assert spike.peak_ratio == float("inf")


def test_a_noisy_decaying_loss_has_no_spikes() -> None:
    """10,000 steps of a decaying loss with 10% log-normal noise: a 50% rise is a 4σ event, three in a row never."""
    rng = np.random.default_rng(1)
    step = np.arange(1, 10_001)
    loss = (2.0 + 5.0 / np.sqrt(step)) * np.exp(0.1 * rng.standard_normal(step.size))
    assert detect_spikes(step, loss) == []


def _probe_rows(trial_id: str, steps: np.ndarray, precond_eta: np.ndarray, dir_eta: np.ndarray, lr: float) -> list:
    return [
        {
            "trial_id": trial_id,
            "step": int(s),
            "lr": lr,
            "beta1": 0.9,
            "lambda_max_hessian": 0.5 / lr,
            "lambda_max_precond": float(c) / lr,
            "dir_curvature": 0.1 / lr,
            "dir_curvature_precond": float(d) / lr,
            "threshold_gd": 2 / lr,
            "threshold_momentum": 38 / lr,
            "cosine_precond": 0.9 if s == 110 else 0.1,
        }
        for s, c, d in zip(steps, precond_eta, dir_eta, strict=True)
    ]


def _planted_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trial "a": the planted loss; probes every 10 steps with λ_max(Ĥ)·η crossing 2 at 60 and 38 at 90 and staying
    above until 110 (the last probe before the spike at 120), back at 1 from 120, above 2 at 290 only (a single probe
    before the spike at 300), below 2 before 400. Trial "b": one spike, no probes. Critical share 1 in [70, 120)."""
    step, loss = _planted_loss()
    critical = np.where((step >= 70) & (step < 120), 1.0, 0.2)
    steps = pd.DataFrame({"trial_id": "a", "step": step, "train_loss": loss, "adam_critical_share": critical})
    other = pd.DataFrame({"trial_id": "b", "step": step, "train_loss": _planted_loss(seed=2)[1]})
    probe_steps = np.arange(10, 601, 10)
    precond = np.select(
        [probe_steps < 60, probe_steps < 90, probe_steps < 120, probe_steps == 290], [1.0, 10.0, 50.0, 5.0], 1.0
    )
    dir_eta = np.where(probe_steps == 110, 3.0, 0.5)
    probes = pd.DataFrame(_probe_rows("a", probe_steps, precond, dir_eta, lr=0.01))
    return pd.concat([steps, other], ignore_index=True), probes


def test_planted_probes_give_crossings_durations_and_alignment() -> None:
    steps, probes = _planted_tables()
    spikes = analyze_spikes(steps, probes).set_index(["trial_id", "onset_step"])
    first = spikes.loc[("a", 120)]
    assert first["probe_step"] == 110 and first["probe_gap"] == 10
    assert first["precond_eta"] == pytest.approx(50.0)
    assert (first["gd_crossing_step"], first["gd_sustained_steps"], first["gd_sustained_probes"]) == (60, 60, 6)
    assert (first["momentum_crossing_step"], first["momentum_sustained_probes"]) == (90, 3)
    assert first["momentum_edge"] == pytest.approx(38.0)
    assert first["sustained_gd"] and first["sustained_momentum"] and first["dir_crossed"]
    assert first["dir_precond_eta"] == pytest.approx(3.0) and first["dir_eta"] == pytest.approx(0.1)
    assert first["cosine_precond"] == pytest.approx(0.9)
    assert first["critical_share_before"] == pytest.approx(1.0)
    single = spikes.loc[("a", 300)]
    assert (single["gd_crossing_step"], single["gd_sustained_probes"]) == (290, 1)
    assert not single["sustained_gd"] and not single["dir_crossed"]
    assert single["critical_share_before"] == pytest.approx(0.2)
    quiet = spikes.loc[("a", 400)]
    assert pd.isna(quiet["gd_crossing_step"]) and quiet["gd_sustained_probes"] == 0
    unprobed = spikes.loc["b"]
    assert unprobed["probe_step"].isna().all() and unprobed["critical_share_before"].isna().all()

    shares = spike_shares(spikes.reset_index())
    assert (shares.spikes, shares.probed) == (6, 3)
    assert shares.sustained_gd == pytest.approx(1 / 3)
    assert shares.sustained_momentum == pytest.approx(1 / 3)
    assert shares.dir_crossed == pytest.approx(1 / 3)


def _adam_quadratic(h: float, lr: float, theta0: float, beta1: float, steps: int, rho: float) -> dict[str, np.ndarray]:
    """Adam (torch's update, bias-corrected, ε outside the root) on L = hθ²/2, in float64.

    Step t (1-based) logs the loss before update t, and the state after it: C_t = ηh/(√v̂_t + ε) (the λ_max(Ĥ)·η of
    a probe at step t) and whether g_t² < ρ·v̂_t (the inline critical share of this one coordinate).
    """
    theta, m, v = theta0, 0.0, 0.0
    out = {name: np.empty(steps) for name in ("loss", "curvature", "critical")}
    for t in range(1, steps + 1):
        g = h * theta
        m = beta1 * m + (1 - beta1) * g
        v = BETA2 * v + (1 - BETA2) * g * g
        v_hat = v / (1 - BETA2**t)
        d = 1 / (np.sqrt(v_hat) + EPS)
        out["loss"][t - 1] = 0.5 * h * theta**2
        out["curvature"][t - 1] = lr * h * d
        out["critical"][t - 1] = float(g * g < rho * v_hat)
        theta -= lr * m / (1 - beta1**t) * d
        assert theta != 0.0  # an exact zero would freeze the dynamics and fake stability
    return out


@pytest.mark.parametrize(
    ("h", "lr", "theta0", "beta1", "steps"),
    [(1.0, 1.0, 0.05, 0.9, 6000), (4.0, 0.3, 0.5, 0.0, 1000)],
)
def test_adam_quadratic_spikes_follow_the_momentum_edge_crossing(
    h: float, lr: float, theta0: float, beta1: float, steps: int
) -> None:
    """ηh < 2, so gradient descent would be stable; Adam spikes. Every spike is found, each one after the
    preconditioned curvature crossed the momentum edge (2+2β1)/(1−β1) and stayed above it up to the onset, and the
    crossing step the analysis reports is the simulation's own crossing."""
    assert lr * h < 2
    run = _adam_quadratic(h, lr, theta0, beta1, steps, rho=1e-3)
    step = np.arange(1, steps + 1)
    edge = float(momentum_edge(beta1))
    above = run["curvature"] > edge
    crossings = step[1:][above[1:] & ~above[:-1]]
    steps_table = pd.DataFrame(
        {"trial_id": "q", "step": step, "train_loss": run["loss"], "adam_critical_share": run["critical"]}
    )
    probes = pd.DataFrame(
        {
            "trial_id": "q",
            "step": step,
            "lr": lr,
            "beta1": beta1,
            "lambda_max_hessian": h,
            "lambda_max_precond": run["curvature"] / lr,
            # In one dimension u = D·g is parallel to g: the directional curvatures are the eigenvalues.
            "dir_curvature": h,
            "dir_curvature_precond": run["curvature"] / lr,
        }
    )
    spikes = analyze_spikes(steps_table, probes)
    window = SpikeRule().window
    # One spike per crossing once a baseline exists (a crossing inside the first window spikes inside it too).
    expected = crossings[crossings > window]
    assert len(spikes) == len(expected) >= 5
    np.testing.assert_array_equal(spikes["momentum_crossing_step"].to_numpy(dtype=int), expected)
    lag = (spikes["onset_step"] - spikes["momentum_crossing_step"]).to_numpy(dtype=int)
    assert ((lag >= 1) & (lag <= 30)).all(), lag
    assert spikes["sustained_momentum"].all() and spikes["sustained_gd"].all() and spikes["dir_crossed"].all()
    assert (spikes["probe_gap"] == 1).all()
    assert (spikes["peak_ratio"] > 50).all()
    shares = spike_shares(spikes)
    assert (shares.sustained_gd, shares.sustained_momentum) == (1.0, 1.0)
    if beta1 == 0.9:
        # Spikes ~1000 steps apart: the whole window before each lies in the g² ≪ v̂ regime.
        assert (spikes["critical_share_before"] == 1.0).all()


def test_report_shows_spike_panels_when_probes_exist(tmp_path: Path, gen) -> None:
    results = tmp_path / "results"
    steps, probes = _planted_tables()
    trial = {
        "trial_id": "a",
        "study": "spikes",
        "status": "ok",
        "params_non_embedding": 1000,
        "schema_version": SCHEMA_VERSION,
    }
    gen.write_rows(results, "trials", "a", [trial])
    steps = steps[steps["trial_id"] == "a"].assign(tokens=lambda f: 64 * f["step"])
    gen.write_rows(results, "steps", "a", steps.to_dict("records"))
    gen.write_rows(results, "probes", "a", probes.to_dict("records"))
    assert report_main(str(results), out_dir=str(tmp_path / "report"), strict=True) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "![spikes0](spikes0.png)" in markdown
    assert "3 spikes detected, 3 with probes before the onset" in markdown
    assert (tmp_path / "report" / "spikes0.png").stat().st_size > 10_000

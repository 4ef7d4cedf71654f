"""Loss spikes and the curvature that precedes them: the analysis side of the Adam spike mechanism.

arXiv:2506.04805 explains Adam loss spikes: once g² ≪ v̂, v̂ decays like β2^t, the preconditioned Hessian
Ĥ = diag(1/(√v̂+ε))·H grows until λ_max(Ĥ)·η stays above the stability edge, and a spike begins when the
gradient-directional curvature crosses 2/η. This module owns how a spike is detected in a loss series and how
each spike is related to the probe rows (``probes`` table) and the inline Adam statistics (``steps`` table)
before it. It uses pandas and numpy only.

**Detection rule** (``SpikeRule``; the defaults were fixed before any study was run, for noisy minibatch losses,
and are not tuned toward a paper's number). With B_t the median of the ``window`` losses before step t (the
current loss excluded, so a spike cannot raise its own baseline), step t is *elevated* when
L_t > (1 + ``margin``)·B_t. A spike begins at the first of ``min_length`` consecutive elevated steps and ends
at its last elevated step before ``min_length`` consecutive non-elevated steps. The same m on both sides is a
hysteresis: one noisy batch neither starts a spike nor splits one whose loss oscillates on the way up. B_t
needs a full window, so no spike is detected in a trial's first ``window`` logged steps (training's initial
descent). Default ``window`` = 50 steps (long enough for a stable median of minibatch noise), ``margin`` = 0.5
(a 50% rise: an MSE loss on a 32-sample batch exceeds 1.5× its mean with probability ≈ 0.03, three times in a
row ≈ 4e-5), ``min_length`` = 3.

**Step conventions.** A ``steps`` row at step t holds the loss of the batch that update t consumed, i.e. the
loss at the parameters after t − 1 updates; a ``probes`` row at step s describes the checkpoint after s
updates, with the v̂ that update s used. So the probes *before* a spike with onset t are those with s < t,
and the last of them (s = t − 1 when probing every step) is the state whose step produced the first elevated
loss. All curvatures are reported in units of 1/η (multiplied by the row's ``lr``): the edges are then 2
(gradient descent) and (2 + 2β1)/(1 − β1) (EMA momentum; 38 at β1 = 0.9), see
``models/probes/curvature.py``.

**Per spike** (``SPIKE_COLUMNS`` documents every column of ``analyze_spikes``): where the uninterrupted run of
probes with λ_max(Ĥ)·η above each edge that reaches the last probe before the onset began, and how long it
lasted (in steps and in probe rows; *sustained* = at least ``sustained`` probe rows); whether the
preconditioned directional curvature·η was above 2 at that last probe; the mean share of g² ≪ v̂ coordinates
over the ``window`` steps before the onset (when the steps table has it); the gradient–top-eigenvector
alignment at the last probe. ``spike_shares`` summarizes a set of trials.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

GD_EDGE = 2.0
"""λ·η above which gradient descent on a quadratic is unstable."""


def momentum_edge(beta1: ArrayLike) -> np.ndarray:
    """(2 + 2β1)/(1 − β1): λ·η above which EMA-momentum gradient descent (Adam's m) is unstable."""
    beta1 = np.asarray(beta1, dtype=float)
    return (2.0 + 2.0 * beta1) / (1.0 - beta1)


@dataclass(frozen=True, kw_only=True)
class SpikeRule:
    """The detection rule of the module docstring: rolling-median baseline, relative margin, minimum length."""

    window: int = 50
    """Steps in the trailing median baseline (the current step excluded)."""
    margin: float = 0.5
    """Relative rise over the baseline that makes a step elevated: L_t > (1 + margin)·B_t."""
    min_length: int = 3
    """Consecutive elevated steps that start a spike, and consecutive non-elevated steps that end one."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_length < 1 or not self.margin > 0:
            raise ValueError(f"need window >= 1, min_length >= 1 and margin > 0, got {self}")

    def describe(self) -> str:
        return (
            f"a spike starts at {self.min_length} consecutive steps whose loss exceeds (1 + {self.margin:g}) × the "
            f"median of the previous {self.window} steps, and ends before {self.min_length} consecutive steps that "
            "do not"
        )


DEFAULT_RULE = SpikeRule()


@dataclass(frozen=True)
class Spike:
    """One detected spike: steps of its onset, peak and last elevated step; the baseline at the onset."""

    onset: int
    peak: int
    end: int
    baseline: float
    peak_loss: float

    @property
    def peak_ratio(self) -> float:
        # A loss that reached exactly zero (float underflow of a memorized batch) makes any rise infinitely large.
        return self.peak_loss / self.baseline if self.baseline > 0 else float("inf")


SPIKE_COLUMNS: dict[str, str] = {
    "trial_id": "Trial the spike belongs to.",
    "onset_step": "First elevated step of the spike.",
    "peak_step": "Step of the highest loss between onset and end.",
    "end_step": "Last elevated step of the spike.",
    "baseline_loss": "Median loss of the window before the onset.",
    "peak_loss": "Highest loss of the spike.",
    "peak_ratio": "peak_loss / baseline_loss.",
    "probe_step": "Last probe before the onset (null when the trial has none before it).",
    "probe_gap": "onset_step − probe_step: how stale the probe quantities at the onset are.",
    "precond_eta": "λ_max(Ĥ)·η at probe_step.",
    "gd_crossing_step": "First probe step of the run of probes with λ_max(Ĥ)·η > 2 reaching probe_step (else null).",
    "gd_sustained_steps": "onset_step − gd_crossing_step.",
    "gd_sustained_probes": "Probe rows in that run (0 when λ_max(Ĥ)·η ≤ 2 at probe_step).",
    "sustained_gd": "gd_sustained_probes ≥ the `sustained` option: a sustained λ_max(Ĥ)·η > 2 preceded the spike.",
    "momentum_crossing_step": "As gd_crossing_step for the edge (2 + 2β1)/(1 − β1).",
    "momentum_sustained_steps": "onset_step − momentum_crossing_step.",
    "momentum_sustained_probes": "Probe rows in the run above (2 + 2β1)/(1 − β1).",
    "sustained_momentum": "momentum_sustained_probes ≥ the `sustained` option.",
    "momentum_edge": "(2 + 2β1)/(1 − β1) at probe_step.",
    "dir_precond_eta": "Preconditioned gradient-directional curvature·η at probe_step.",
    "dir_eta": "Plain gradient-directional curvature gᵀHg/‖g‖²·η at probe_step.",
    "dir_crossed": "dir_precond_eta > 2: Adam's step increased the loss to second order at the onset.",
    "cosine_precond": "Alignment of D^½g with the top eigenvector of D^½HD^½ at probe_step (null if not probed).",
    "cosine_hessian": "Alignment of g with the top eigenvector of H at probe_step (null if not probed).",
    "critical_share_before": "Mean adam_critical_share (share of g² ≪ v̂ coordinates) over the window before "
    "the onset; null when the steps table does not have it.",
    "median_g2_over_v_before": "Median adam_median_g2_over_v over the window before the onset; null when absent.",
}


def _dtype(column: str) -> str | type:
    # Steps and counts are nullable integers ("no probe before the onset" is missing, not a float NaN).
    if column.endswith(("_step", "_steps", "_probes")) or column == "probe_gap":
        return "Int64"
    if column.startswith("sustained_") or column == "dir_crossed":
        return bool
    return float


_DTYPES = {name: _dtype(name) for name in SPIKE_COLUMNS if name != "trial_id"}


@dataclass(frozen=True)
class SpikeShares:
    """How often spikes over a set of trials were preceded by the mechanism's signatures.

    Shares are over ``probed`` spikes (those with at least one probe row before the onset); a spike without
    one can neither confirm nor refute the mechanism.
    """

    spikes: int
    probed: int
    sustained_gd: float
    """Share preceded by a sustained λ_max(Ĥ)·η > 2."""
    sustained_momentum: float
    """Share preceded by a sustained λ_max(Ĥ)·η > (2 + 2β1)/(1 − β1)."""
    dir_crossed: float
    """Share with the preconditioned directional curvature·η above 2 at the last probe before the onset."""

    def lines(self) -> list[str]:
        if not self.probed:
            return [f"{self.spikes} spikes detected, none with a probe before its onset."]
        return [
            f"{self.spikes} spikes detected, {self.probed} with probes before the onset. Of those:",
            f"preceded by a sustained λ_max(Ĥ)·η > 2: {self.sustained_gd:.0%};",
            f"preceded by a sustained λ_max(Ĥ)·η > (2+2β1)/(1−β1): {self.sustained_momentum:.0%};",
            f"preconditioned directional curvature·η > 2 at the onset: {self.dir_crossed:.0%}.",
        ]


def spike_baseline(loss: ArrayLike, *, window: int) -> np.ndarray:
    """B_t: the median of the ``window`` values before t (NaN until a full window exists)."""
    series = pd.Series(np.asarray(loss, dtype=float))
    return series.rolling(window, min_periods=window).median().shift(1).to_numpy()


def detect_spikes(step: ArrayLike, loss: ArrayLike, *, rule: SpikeRule = DEFAULT_RULE) -> list[Spike]:
    """The spikes of one loss series by ``rule`` (module docstring). Steps with a NaN loss are left out."""
    frame = pd.DataFrame({"step": np.asarray(step), "loss": np.asarray(loss, dtype=float)})
    frame = frame[frame["loss"].notna()].sort_values("step")
    steps, values = frame["step"].to_numpy(), frame["loss"].to_numpy()
    baseline = spike_baseline(values, window=rule.window)
    first = rule.window  # B_t exists from here on
    spikes = []
    for start, stop in _spike_ranges(values[first:] > (1 + rule.margin) * baseline[first:], rule.min_length):
        start, stop = start + first, stop + first
        peak = start + int(np.argmax(values[start:stop]))
        spikes.append(
            Spike(
                onset=int(steps[start]),
                peak=int(steps[peak]),
                end=int(steps[stop - 1]),
                baseline=float(baseline[start]),
                peak_loss=float(values[peak]),
            )
        )
    return spikes


def analyze_spikes(
    steps: pd.DataFrame,
    probes: pd.DataFrame,
    *,
    rule: SpikeRule = DEFAULT_RULE,
    loss: str = "train_loss",
    sustained: int = 2,
) -> pd.DataFrame:
    """Every spike of every trial in ``steps`` with the probe and Adam quantities before it (``SPIKE_COLUMNS``).

    ``steps``/``probes`` are the tables of that name (``analysis.load``); ``loss`` names the steps column
    searched for spikes. ``sustained``: probe rows above an edge, ending at the last probe before the onset,
    that make the excursion *sustained* (default 2, the fewest that a single outlying probe cannot produce).
    """
    rows = []
    for trial_id, trial_steps in steps.groupby("trial_id", sort=True):
        trial_probes = scaled_probes(probes[probes["trial_id"] == trial_id])
        for spike in detect_spikes(trial_steps["step"], trial_steps[loss], rule=rule):
            before = trial_steps[
                (trial_steps["step"] < spike.onset) & (trial_steps["step"] >= spike.onset - rule.window)
            ]
            rows.append(
                {
                    "trial_id": trial_id,
                    "onset_step": spike.onset,
                    "peak_step": spike.peak,
                    "end_step": spike.end,
                    "baseline_loss": spike.baseline,
                    "peak_loss": spike.peak_loss,
                    "peak_ratio": spike.peak_ratio,
                    **_at_onset(trial_probes[trial_probes["step"] < spike.onset], spike.onset, sustained),
                    "critical_share_before": _reduce(before, "adam_critical_share", "mean"),
                    "median_g2_over_v_before": _reduce(before, "adam_median_g2_over_v", "median"),
                }
            )
    return pd.DataFrame(rows, columns=list(SPIKE_COLUMNS)).astype(_DTYPES)


def spike_shares(spikes: pd.DataFrame) -> SpikeShares:
    """The shares of ``SpikeShares`` over the rows of ``analyze_spikes`` (filter them to choose the trials)."""
    probed = spikes[spikes["probe_step"].notna()]

    def share(column: str) -> float:
        return float(probed[column].astype(bool).mean()) if len(probed) else float("nan")

    return SpikeShares(
        spikes=len(spikes),
        probed=len(probed),
        sustained_gd=share("sustained_gd"),
        sustained_momentum=share("sustained_momentum"),
        dir_crossed=share("dir_crossed"),
    )


def scaled_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """One trial's probe rows sorted by step, with curvatures in units of 1/η and the momentum edge per row.

    Adds ``precond_eta``, ``hessian_eta``, ``dir_precond_eta``, ``dir_eta`` (the probe columns times ``lr``) and
    ``momentum_edge``; the edges to compare them with are ``GD_EDGE`` and ``momentum_edge``.
    """
    out = probes.sort_values("step").reset_index(drop=True)
    lr = out["lr"].astype(float)
    for name, column in (
        ("precond_eta", "lambda_max_precond"),
        ("hessian_eta", "lambda_max_hessian"),
        ("dir_precond_eta", "dir_curvature_precond"),
        ("dir_eta", "dir_curvature"),
    ):
        out[name] = out[column].astype(float) * lr
    out["momentum_edge"] = momentum_edge(out["beta1"].astype(float))
    return out


def _spike_ranges(elevated: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """[start, stop) index ranges of spikes: runs of elevated steps with the min_length hysteresis.

    The detector starts as if inside a spike of unknown onset, so a rise already under way when the first
    full window is reached (its onset unobserved) is not reported: only a rise out of min_length quiet steps is.
    """
    if not len(elevated):
        return []
    change = np.flatnonzero(np.diff(elevated.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [len(elevated)]])
    ranges: list[tuple[int, int]] = []
    unobserved = -1
    start: int | None = unobserved
    last_elevated = 0
    for lo, hi in itertools.pairwise(bounds):
        if elevated[lo]:
            if start is None and hi - lo >= min_length:
                start = int(lo)
            last_elevated = int(hi)
        elif start is not None and hi - lo >= min_length:
            if start != unobserved:
                ranges.append((start, last_elevated))
            start = None
    if start is not None and start != unobserved:
        ranges.append((start, last_elevated))
    return ranges


def _at_onset(before: pd.DataFrame, onset: int, sustained: int) -> dict[str, object]:
    """The probe columns of SPIKE_COLUMNS from the probe rows before the onset (scaled, sorted by step)."""
    if before.empty:
        return {
            "gd_sustained_probes": 0,
            "momentum_sustained_probes": 0,
            "sustained_gd": False,
            "sustained_momentum": False,
            "dir_crossed": False,
        }
    last = before.iloc[-1]
    out: dict[str, object] = {
        "probe_step": int(last["step"]),
        "probe_gap": onset - int(last["step"]),
        "precond_eta": float(last["precond_eta"]),
        "momentum_edge": float(last["momentum_edge"]),
        "dir_precond_eta": float(last["dir_precond_eta"]),
        "dir_eta": float(last["dir_eta"]),
        "dir_crossed": bool(last["dir_precond_eta"] > GD_EDGE),
        "cosine_precond": _optional(last, "cosine_precond"),
        "cosine_hessian": _optional(last, "cosine_hessian"),
    }
    for name, above in (
        ("gd", before["precond_eta"] > GD_EDGE),
        ("momentum", before["precond_eta"] > before["momentum_edge"]),
    ):
        start, count = _final_run(before["step"].to_numpy(), above.to_numpy())
        out[f"{name}_crossing_step"] = start
        out[f"{name}_sustained_steps"] = onset - start if start is not None else None
        out[f"{name}_sustained_probes"] = count
        out[f"sustained_{name}"] = count >= sustained
    return out


def _final_run(steps: np.ndarray, above: np.ndarray) -> tuple[int | None, int]:
    """(first step, length) of the run of True that ends at the last element; (None, 0) if that one is False."""
    below = np.flatnonzero(~above)
    count = len(above) - (below[-1] + 1 if len(below) else 0)
    return (int(steps[-count]), count) if count else (None, 0)


def _optional(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return None if value is None or pd.isna(value) else float(value)


def _reduce(frame: pd.DataFrame, column: str, how: str) -> float | None:
    if column not in frame.columns:
        return None
    values = frame[column].dropna().astype(float)
    return float(values.agg(how)) if len(values) else None

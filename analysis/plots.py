"""The report's figures, one function per figure, each returning a matplotlib Figure.

Figures are built with matplotlib's object API (``Figure``, never ``pyplot``): saving renders with Agg, no GUI
backend is ever selected and no global figure state accumulates across a report. Power laws are drawn on log
axes, every axis names its quantity and unit, and a family of curves gets one colour per level with a legend
(continuous sizes are binned into a few log-spaced levels so that the legend stays readable).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from analysis.compare import GroupComparison
from analysis.fits import ChinchillaFit
from analysis.isoflop import IsoFlopFit
from analysis.points import group_label
from analysis.spikes import GD_EDGE, SpikeRule, scaled_probes, spike_baseline
from analysis.thresholds import Threshold

LABELS = {
    "N": "parameters N (non-embedding + LM head)",
    "D": "training tokens D",
    "C": "training compute C = 6ND (FLOPs)",
    "loss": "eval loss (nats/token)",
}
_MAX_LEVELS = 6


def loss_curves(fit: ChinchillaFit, *, x: str, n_label: str = LABELS["N"]) -> Figure:
    """Loss against ``x`` ("N" or "D"), one colour per level of the other variable, with the fitted law."""
    other = "D" if x == "N" else "N"
    points = fit.points
    levels, values = _levels(points[other].to_numpy())
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    colours = colormaps["viridis"](np.linspace(0, 0.9, len(values)))
    grid = np.geomspace(points[x].min() / 1.5, points[x].max() * 1.5, 200)
    for level, (value, colour) in enumerate(zip(values, colours, strict=True)):
        at = points[levels == level]
        used = at[at["used"]]
        ax.scatter(used[x], used["loss"], color=colour, s=22, zorder=3)
        ax.scatter(at.loc[~at["used"], x], at.loc[~at["used"], "loss"], facecolors="none", edgecolors=colour, s=22)
        curve = fit.predict(grid, value) if x == "N" else fit.predict(value, grid)
        ax.plot(grid, curve, color=colour, lw=1.5, label=f"{other} = {_si(value)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(n_label if x == "N" else LABELS["D"])
    ax.set_ylabel(LABELS["loss"])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_title(f"Loss vs {x}: data (dots; hollow = dropped) and fitted L(N, D) (lines)")
    ax.legend(title=f"curve at {other}", fontsize=8, title_fontsize=9, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def isoloss(fit: ChinchillaFit, *, n_label: str = LABELS["N"]) -> Figure:
    """Contours of fitted loss over (C, N), the data, and the compute-optimal frontier N_opt(C) with its
    interval."""
    points = fit.points
    c_range = np.geomspace((6 * points["N"] * points["D"]).min() / 3, (6 * points["N"] * points["D"]).max() * 30, 160)
    n_range = np.geomspace(points["N"].min() / 3, points["N"].max() * 10, 160)
    cc, nn = np.meshgrid(c_range, n_range)
    loss = fit.predict(nn, cc / (6 * nn))
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.subplots()
    levels = np.quantile(loss, np.linspace(0.02, 0.9, 12))
    contour = ax.contour(cc, nn, loss, levels=np.unique(np.round(levels, 3)), cmap="viridis_r", linewidths=1)
    ax.clabel(contour, fmt="%.2f", fontsize=7)
    a = fit.params()["a"]
    why = fit.why_no_allocation()
    usable = not why
    if usable:
        frontier = fit.compute_optimal(c_range)
        ax.plot(frontier["compute"], frontier["n_opt"], color="crimson", lw=2, label="compute-optimal N_opt(C)")
        ax.fill_between(
            frontier["compute"],
            frontier["n_opt_low"],
            frontier["n_opt_high"],
            color="crimson",
            alpha=0.15,
            label=f"{fit.options.ci:.0%} bootstrap interval",
        )
        title = f"Iso-loss contours (nats/token); N_opt ∝ C^{a.value:.3f} [{a.low:.3f}, {a.high:.3f}]"
    else:
        title = "Iso-loss contours (nats/token); no compute-optimal frontier:\n" + _wrap(why, 90)
    ax.scatter(6 * points["N"] * points["D"], points["N"], c="k", s=10, label="trials", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(n_range[0], n_range[-1])
    ax.set_xlabel(LABELS["C"])
    ax.set_ylabel(n_label)
    ax.set_title(title, fontsize=9 if not usable else None)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def isoflop_curves(fit: IsoFlopFit, *, n_label: str = LABELS["N"]) -> Figure:
    """Loss against N at each compute budget: the points, the fitted parabola in log N, and the minimum N*(C) with
    its bootstrap interval for kept budgets; a budget left out is drawn hollow and dashed, and named in the legend
    with why."""
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(fit.budgets), 1)))
    for budget, colour in zip(fit.budgets, colours, strict=False):
        points = budget.points
        kept = budget.kept
        label = f"C = {budget.flops:.3g}" + ("" if kept else f" (left out: {budget.status.split(':')[0]})")
        face = colour if kept else "none"
        ax.scatter(points["N"], points["loss"], s=22, facecolors=face, edgecolors=colour, zorder=3)
        if budget.coefficients is not None:
            grid = np.geomspace(points["N"].min() / 1.2, points["N"].max() * 1.2, 200)
            ax.plot(grid, budget.parabola(grid), color=colour, lw=1.5, ls="-" if kept else "--", label=label)
        else:
            ax.plot([], [], color=colour, ls="--", label=label)
        if kept and budget.n_opt is not None:
            n_opt = budget.n_opt
            err = [[n_opt.value - n_opt.low], [n_opt.high - n_opt.value]]
            ax.errorbar(
                [n_opt.value], budget.parabola([n_opt.value]), xerr=err, fmt="*", ms=11, color=colour, capsize=3
            )
    ax.set_xscale("log")
    ax.set_xlabel(n_label)
    ax.set_ylabel(LABELS["loss"])
    a = fit.a
    exponent = f"a = {a.value:.3f} [{a.low:.3f}, {a.high:.3f}]" if fit.identified else f"a {a.status}"
    ax.set_title(f"IsoFLOP curves: parabolas in log N, minima N*(C) (stars, {fit.ci:.0%} intervals)\n{exponent}")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def compute_optimal(isoflop: IsoFlopFit, joint: ChinchillaFit | None, *, n_label: str = LABELS["N"]) -> Figure:
    """N_opt(C) and D_opt(C) from both approaches: the IsoFLOP minima (points with intervals) and the line through
    them, and the joint law's allocation, each with its bootstrap band, only where it is identified (the title says
    why one is missing)."""
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    kept = isoflop.kept
    flops = [b.flops for b in isoflop.budgets] or [np.nan]
    c_range = np.geomspace(np.nanmin(flops) / 2, np.nanmax(flops) * 2, 100) if np.isfinite(flops).all() else None
    missing = []
    lines: list[tuple[str, pd.DataFrame, str]] = []
    if isoflop.identified and c_range is not None:
        lines.append(("IsoFLOP minima (Approach 2)", isoflop.compute_optimal(c_range), "tab:blue"))
    else:
        missing.append(f"Approach 2: a {isoflop.a.status}")
    why = "no joint law" if joint is None else joint.why_no_allocation()
    if not why and c_range is not None:
        lines.append(("joint law (Approach 3)", joint.compute_optimal(c_range), "crimson"))  # type: ignore[union-attr]
    else:
        missing.append("Approach 3: no allocation")
    for ax, column, label in ((axes[0], "n_opt", n_label), (axes[1], "d_opt", LABELS["D"])):
        for name, frame, colour in lines:
            ax.plot(frame["compute"], frame[column], color=colour, lw=1.8, label=name)
            ax.fill_between(
                frame["compute"], frame[f"{column}_low"], frame[f"{column}_high"], color=colour, alpha=0.15, lw=0
            )
        if kept:
            c = np.array([b.flops for b in kept])
            n = np.array([b.n_opt.value for b in kept])  # type: ignore[union-attr]
            low = np.array([b.n_opt.low for b in kept])  # type: ignore[union-attr]
            high = np.array([b.n_opt.high for b in kept])  # type: ignore[union-attr]
            y, y_low, y_high = (n, low, high) if column == "n_opt" else (c / (6 * n), c / (6 * high), c / (6 * low))
            ax.errorbar(
                c,
                y,
                yerr=[y - y_low, y_high - y],
                fmt="o",
                color="tab:blue",
                capsize=3,
                label="budget minima (Approach 2)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(LABELS["C"])
        ax.set_ylabel(label if column == "n_opt" else "compute-optimal tokens D_opt = C/(6N)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    title = f"Compute-optimal N and D ({isoflop.ci:.0%} bootstrap bands)"
    fig.suptitle(title + ("" if not missing else "; not drawn: " + ", ".join(missing)))
    fig.tight_layout()
    return fig


def residuals(fit: ChinchillaFit, *, n_label: str = LABELS["N"]) -> Figure:
    """Log residuals (log L − log L̂) against N and against D; dropped points hollow."""
    points = fit.points
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x, label in ((axes[0], "N", n_label), (axes[1], "D", LABELS["D"])):
        used = points[points["used"]]
        ax.scatter(used[x], used["residual"], s=14, color="tab:blue", label="fitted points")
        dropped = points[~points["used"]]
        if len(dropped):
            ax.scatter(
                dropped[x],
                dropped["residual"],
                s=14,
                facecolors="none",
                edgecolors="tab:red",
                label="dropped",
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("residual log L − log L̂ (≈ relative error)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fit residuals (summed Huber objective {fit.objective:.3g} over {fit.n_points} points)")
    fig.tight_layout()
    return fig


def group_exponents(comparison: GroupComparison) -> Figure | None:
    """Per-group exponents and E with their bootstrap intervals in the form every group identifies (else each
    group's own), one panel per parameter, identified estimates only (a group whose estimate is not identified is
    named on the axis with its status instead of a point); None when nothing is identified."""
    common, fits, _ = comparison.common_form()
    params = [fits.get(g.label, g.fit).params() for g in comparison.groups]
    found = {name: [p.get(name) for p in params] for name in ("alpha", "beta", "E")}
    names = [n for n, estimates in found.items() if any(e is not None and e.status == "identified" for e in estimates)]
    if not names:
        return None
    symbols = {
        "alpha": "α (exponent in N)" if comparison.form == "joint" else f"α (exponent in {comparison.form})",
        "beta": "β (exponent in D)",
        "E": "E (irreducible loss, nats/token)",
    }
    labels = [g.label for g in comparison.groups]
    fig = Figure(figsize=(4.2 * len(names), 0.5 * len(labels) + 2.2))
    axes = fig.subplots(1, len(names), squeeze=False)
    y = np.arange(len(labels))
    for ax, name in zip(axes[0], names, strict=True):
        for row, est in enumerate(found[name]):
            if est is not None and est.status == "identified":
                err = [[max(est.value - est.low, 0)], [max(est.high - est.value, 0)]]
                ax.errorbar([est.value], [row], xerr=err, fmt="o", capsize=4, color="tab:blue")
            else:
                status = "—" if est is None else est.status
                ax.annotate(
                    status, (0.5, row), xycoords=("axes fraction", "data"), ha="center", color="grey", fontsize=8
                )
        ax.set_yticks(y, labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(symbols[name])
        ax.grid(True, axis="x", alpha=0.3)
    form = f"form {common}" if common else "each group's own form"
    fig.suptitle(f"Per-group fits ({form}): identified estimates with {_ci_label(comparison)} intervals")
    fig.tight_layout()
    return fig


def training_curves(
    steps: pd.DataFrame,
    trials: pd.DataFrame,
    *,
    by: Sequence[str] = ("init_rate", "init_std", "weight_decay"),
    n_column: str = "params_non_embedding",
) -> Figure:
    """One panel per group (the columns of ``by`` that vary): each trial's train loss smoothed over a window of 5% of
    its steps (lines) and its eval losses (dots) against tokens, coloured by model size; grey where the size is not
    known (a failed trial's row has none, a running trial no row)."""
    trials = trials.set_index("trial_id")
    by = [c for c in by if c in trials.columns and trials[c].nunique(dropna=False) > 1]
    keys = trials[by].apply(lambda row: group_label(row.to_dict()), axis=1) if by else pd.Series("all", trials.index)
    panels = sorted(keys.reindex(steps["trial_id"].unique()).fillna("unknown").unique())
    sizes = trials[n_column].astype(float)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    norm = LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01)) if len(sizes) else None
    columns = min(2, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    fig = Figure(figsize=(6.2 * columns + 1.2, 4.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        members = [t for t in steps["trial_id"].unique() if keys.get(t, "unknown") == panel]
        for trial_id in members:
            curve = steps[steps["trial_id"] == trial_id].sort_values("step")
            size = sizes.get(trial_id)
            colour = "grey" if size is None else colormaps["viridis"](norm(size))
            window = max(1, len(curve) // 20)
            smooth = curve["train_loss"].rolling(window, min_periods=1, center=True).mean()
            ax.plot(curve["tokens"], smooth, color=colour, lw=1.0, alpha=0.8)
            evals = curve.dropna(subset=["eval_loss"])
            ax.scatter(evals["tokens"], evals["eval_loss"], color=colour, s=10, zorder=3)
        ax.set_title(f"{panel} ({len(members)} trials)", fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("tokens seen")
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats/token)")
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Training curves: smoothed train loss (lines), eval loss (dots)")
    if norm is not None:
        fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=axes.ravel().tolist(), label=n_column)
    return fig


def lr_envelope(points: pd.DataFrame, by: Sequence[str]) -> Figure:
    """The learning rate of the envelope (the best lr of each cell) against N, one line per D and group."""
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    groups = points.groupby(list(by), dropna=False) if by else [((), points)]
    markers = "osD^v<>"
    for (values, frame), marker in zip(groups, markers * 10, strict=False):
        keys = dict(zip(by, values if isinstance(values, tuple) else (values,), strict=True))
        levels, centres = _levels(frame["D"].to_numpy())
        colours = colormaps["viridis"](np.linspace(0, 0.9, len(centres)))
        for level, (value, colour) in enumerate(zip(centres, colours, strict=True)):
            at = frame[levels == level].groupby("N")["lr"].median()
            ax.plot(at.index, at.to_numpy(), marker=marker, color=colour, label=f"{group_label(keys)}, D={_si(value)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["N"])
    ax.set_ylabel("learning rate with the lowest loss")
    ax.set_title("Learning rate chosen by the envelope, against model size")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def recovery_curves(thresholds: Sequence[Threshold]) -> Figure:
    """Success rate against n per setting, the fitted logistic, n* with its interval and the theoretical n."""
    columns = min(3, len(thresholds))
    rows = int(np.ceil(len(thresholds) / columns))
    fig = Figure(figsize=(4.6 * columns, 3.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, t in zip(axes.ravel(), thresholds, strict=False):
        ax.plot(t.success["n"], t.success["rate"], "o", color="tab:blue", label="success rate")
        n_star = t.n_star_logistic
        if np.isfinite(n_star.value):
            grid = np.geomspace(t.success["n"].min(), t.success["n"].max(), 200)
            ax.plot(grid, 1 / (1 + (grid / n_star.value) ** -t.slope), color="tab:blue", lw=1)
            ax.axvline(n_star.value, color="tab:blue", ls="-", lw=1, label=f"n* = {n_star.value:.3g}")
            if np.isfinite(n_star.low):
                ax.axvspan(n_star.low, n_star.high, color="tab:blue", alpha=0.12)
        if np.isfinite(t.model_rank_theory):
            ax.axvline(t.model_rank_theory, color="crimson", ls="--", label=f"model rank {t.model_rank_theory:.0f}")
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("training samples n")
        ax.set_ylabel("fraction recovered")
        names = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.keys.items()]
        half = (len(names) + 1) // 2  # two short lines fit a panel; one long line is cut off
        ax.set_title(", ".join(names[:half]) + "\n" + ", ".join(names[half:]), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(thresholds) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def lifting(recovery: pd.DataFrame) -> Figure:
    """The embedding principle in depth at every solution found by a two-layer tanh student: gradient norms and
    smallest Hessian eigenvalues of the lifted point against the shallow one, coloured by the samples n."""
    rows = recovery.dropna(subset=["lifting_grad_norm_shallow"])
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    norm = LogNorm(vmin=rows["n"].min(), vmax=max(rows["n"].max(), rows["n"].min() + 1))
    for ax, column, label, scale in (
        (axes[0], "grad_norm", "‖∇L‖", "log"),
        (axes[1], "hessian_min", "smallest Hessian eigenvalue", "symlog"),
    ):
        x, y = rows[f"lifting_{column}_shallow"], rows[f"lifting_{column}_lifted"]
        ax.scatter(x, y, c=rows["n"], cmap="viridis", norm=norm, s=18, zorder=3)
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="lifted = shallow")
        ax.set_xscale(scale)
        ax.set_yscale(scale)
        ax.set_xlabel(f"{label} at the solution found")
        ax.set_ylabel(f"{label} at its lifted point")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    change = rows["lifting_output_change"].max()
    fig.suptitle(f"Lifting to a deeper network ({len(rows)} runs): outputs change by at most {change:.1e}")
    fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=axes.tolist(), label="training samples n")
    return fig


def curvature(probes: pd.DataFrame) -> Figure:
    """Preconditioned and plain λ_max against step beside the stability thresholds 2/η and
    (2+2β1)/((1−β1)η)."""
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    ordered = probes.sort_values("step")
    for (trial_id, curve), colour in zip(ordered.groupby("trial_id"), colormaps["tab10"].colors * 10, strict=False):
        ax.plot(curve["step"], curve["lambda_max_precond"], "-o", ms=3, color=colour, label=f"{trial_id}: λmax(Ĥ)")
        ax.plot(curve["step"], curve["lambda_max_hessian"], ":", color=colour, label=f"{trial_id}: λmax(H)")
        ax.plot(curve["step"], curve["threshold_momentum"], "--", color=colour, lw=0.8, alpha=0.7)
    ax.plot([], [], "--", color="grey", label="(2+2β1)/((1−β1)η)")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("largest eigenvalue (log scale)")
    ax.set_title("Curvature probes against the Adam stability threshold")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def spike_panels(
    steps: pd.DataFrame, probes: pd.DataFrame, spikes: pd.DataFrame, *, rule: SpikeRule, loss: str = "train_loss"
) -> Figure:
    """One trial's spikes against its curvature: stacked panels over the optimizer step, spikes shaded in all.

    Loss with the detection line (1 + margin)·rolling median; λ_max(Ĥ)·η and λ_max(H)·η; the directional
    curvatures·η; each curvature panel with the edges 2 and (2+2β1)/(1−β1); and the share of g² ≪ v̂
    coordinates when the steps table logged it. Curvatures ≤ 0 cannot be drawn on the log axis and are left out.
    """
    steps = steps.sort_values("step")
    probes = scaled_probes(probes)
    critical = steps["adam_critical_share"] if "adam_critical_share" in steps.columns else pd.Series(dtype=float)
    has_critical = bool(critical.notna().any())
    fig = Figure(figsize=(12, 2.4 * (3 + has_critical) + 0.6))
    axes = fig.subplots(3 + has_critical, 1, sharex=True)
    curve = steps.dropna(subset=[loss])
    axes[0].plot(curve["step"], curve[loss], color="k", lw=0.8, label=loss.replace("_", " "))
    line = (1 + rule.margin) * spike_baseline(curve[loss], window=rule.window)
    axes[0].plot(
        curve["step"],
        line,
        color="tab:orange",
        lw=1,
        ls="--",
        label=f"detection line:\n(1+{rule.margin:g})·median of\nprevious {rule.window} steps",
    )
    onsets = curve[curve["step"].isin(spikes["onset_step"])]
    axes[0].plot(onsets["step"], onsets[loss], "v", color="crimson", ms=7, label="spike onset")
    axes[0].set_ylabel("loss (log)")
    marker = "o" if len(probes) <= 200 else None
    for ax, pairs, ylabel in (
        (
            axes[1],
            (("precond_eta", r"$\lambda_{\max}(\hat H)\,\eta$"), ("hessian_eta", r"$\lambda_{\max}(H)\,\eta$")),
            r"top eigenvalue $\times\,\eta$",
        ),
        (
            axes[2],
            (
                ("dir_precond_eta", r"$\eta\,u^\top H u / u^\top D^{-1} u$" + "\n(u = Adam's step D·g)"),
                ("dir_eta", r"$\eta\,g^\top H g / \|g\|^2$"),
            ),
            r"directional curvature $\times\,\eta$",
        ),
    ):
        for (column, label), style in zip(pairs, ("-", ":"), strict=True):
            shown = probes[probes[column] > 0]
            ax.plot(shown["step"], shown[column], style, marker=marker, ms=3, lw=1.2, label=label)
        ax.axhline(GD_EDGE, color="tab:blue", lw=1, ls="--", label="2: gradient-descent edge")
        for edge in np.unique(probes["momentum_edge"].dropna()):
            ax.axhline(
                edge,
                color="crimson",
                lw=1,
                ls="--",
                label=rf"$(2+2\beta_1)/(1-\beta_1)$ = {edge:g}:" + "\nmomentum edge",
            )
        ax.set_ylabel(ylabel)
    if has_critical:
        axes[3].plot(steps["step"], critical, color="tab:purple", lw=1)
        axes[3].set_ylim(-0.03, 1.03)
        axes[3].set_ylabel("share of coordinates\n" + r"with $g^2 \ll \hat v$")
    for ax in axes:
        if ax is not axes[-1] or not has_critical:
            ax.set_yscale("log")
        for spike in spikes.itertuples():
            ax.axvspan(spike.onset_step, spike.end_step, color="crimson", alpha=0.12, lw=0)
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes[-1].set_xlabel("optimizer step")
    trial = steps["trial_id"].iloc[0] if len(steps) else ""
    fig.suptitle(f"{trial}: {len(spikes)} loss spike(s) (shaded) against Adam's stability edges")
    fig.tight_layout()
    return fig


def _levels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A level index per value and each level's representative value; ≤ _MAX_LEVELS log-spaced bins."""
    distinct = np.unique(values)
    if len(distinct) <= _MAX_LEVELS:
        return np.searchsorted(distinct, values), distinct
    edges = np.geomspace(distinct[0], distinct[-1] * (1 + 1e-9), _MAX_LEVELS + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, _MAX_LEVELS - 1)
    present = np.unique(index)
    centres = np.array([np.exp(np.log(values[index == i]).mean()) for i in present])
    return np.searchsorted(present, index), centres


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _si(value: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _ci_label(comparison: GroupComparison) -> str:
    return f"{comparison.groups[0].fit.options.ci:.0%}" if comparison.groups else ""

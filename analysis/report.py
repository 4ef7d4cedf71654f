"""The study report: every fit, table and figure of a results directory, as one HTML file and as Markdown +
PNGs.

The HTML embeds its images (base64), so it can be mailed or attached as a single file; the Markdown links the
PNGs written next to it, so it renders on GitHub and diffs well. Sections appear only for the tables that
exist: per-group joint fits (the candidate forms side by side and the one chosen, every parameter with its
identifiability status, loss vs N and vs D, iso-loss with the compute-optimal frontier when it is identified,
residuals, and an extrapolation check on the largest size), IsoFLOP curves and the compute-optimal allocation of
both approaches when the trials have budgets (``analysis.isoflop``), the per-group comparison of identified exponents,
the learning rate chosen per size when the study swept it, training curves per group, recovery thresholds and
curvature probes (with the loss spikes of the probed trials against Adam's stability edges, ``analysis.spikes``).
A number the data do not determine is never shown as one: its status and reason are shown instead.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.compare import GroupComparison, GroupFit, compare_groups, group_e
from analysis.extrapolation import extrapolation_check
from analysis.fits import Estimate
from analysis.isoflop import BUDGET
from analysis.points import GROUP_COLUMNS, default_n, varying_lr
from analysis.recommend import GroupDesign, group_designs
from analysis.results import Results, summarize
from analysis.settings import grouped_points, with_settings
from analysis.spikes import DEFAULT_RULE, analyze_spikes, spike_shares
from analysis.thresholds import recovery_thresholds, thresholds_table


@dataclass
class Section:
    """A titled part of the report: prose, tables and figures (name → figure, written as ``name.png``)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)


def build_sections(
    results: Results, *, n_bootstrap: int = 1000, progress: Callable[[str], None] | None = None
) -> list[Section]:
    """Everything the report shows, computed from ``results``; no files are written. ``progress`` hears of the
    slow steps (the fits)."""
    say = progress or (lambda _: None)
    sections = [Section("Summary", text=summarize(results).lines())]
    n = default_n(results.trials) if len(results.trials) else "with-head"
    trials, settings = with_settings(results.trials)
    points, by = grouped_points(trials, settings, n=n, by=None)
    if points.empty and len(trials):
        sections[0].text.append("No law fitted: no ok trial has a finite, positive final_eval_loss.")
    if len(points):
        comparison = compare_groups(points, by=by, form="joint", n_bootstrap=n_bootstrap, warn=False, progress=progress)
        sections[0].text.append(
            f"Fits: N = {n} parameters; groups by "
            f"{', '.join(by) or 'nothing (one group)'}; each group's form chosen by nested hold-out among the "
            "identified forms (README 'Reading a fit')."
        )
        for index, group in enumerate(comparison.groups):
            say(f"extrapolation check of {group.label} …")
            frame = group.rows_of(points)
            sections.append(_group_section(group, index, frame, n_bootstrap))
        if BUDGET in points.columns and points[BUDGET].notna().any():
            for index, design in enumerate(group_designs(points, comparison, n_bootstrap=n_bootstrap)):
                sections.append(_isoflop_section(design, index))
        if comparison.unfitted:
            sections[0].text.extend(f"not fitted: {label}: {why}" for label, why in comparison.unfitted.items())
        if len(comparison.groups) > 1:
            sections.append(_comparison_section(comparison))
        if varying_lr(points):
            sections.append(
                Section(
                    "Learning rate chosen per size",
                    text=[
                        "The study tried several learning rates per cell; every fit uses the envelope (the best lr of "
                        "each N, D and group). The lr chosen against N:"
                    ],
                    figures={"lr_envelope": plots.lr_envelope(points, by)},
                )
            )
    lm_steps = results.steps[results.steps["tokens"].notna()]  # against tokens: a function run has none
    if len(lm_steps):
        sections.append(
            Section(
                "Training curves",
                text=["Smoothed train loss (lines) and eval loss (dots) per trial, one panel per group."],
                # a panel per fitted group; with one group or none, per treatment that varies among all trials
                figures={"training_curves": plots.training_curves(lm_steps, trials, by=by or GROUP_COLUMNS)},
            )
        )
    if len(results.recovery):
        thresholds = recovery_thresholds(results.recovery, n_bootstrap=n_bootstrap)
        sections.append(
            Section(
                "Recovery thresholds",
                text=[
                    "n*: logistic fit of success in log n, and the smallest n with success rate ≥ 50%, "
                    "beside the optimistic sample size (model rank) from theory."
                ],
                tables=[thresholds_table(thresholds)],
                figures={"recovery": plots.recovery_curves(thresholds)},
            )
        )
    if "lifting_grad_norm_shallow" in results.recovery and results.recovery["lifting_grad_norm_shallow"].notna().any():
        sections.append(
            Section(
                "Embedding principle in depth",
                text=[
                    "Every solution a two-layer tanh student (with biases) found, lifted to a network with a ReLU "
                    "layer inserted before its hidden layer (arXiv:2205.13283): the outputs are unchanged, a critical "
                    "point stays critical, and a local minimum's Hessian stays positive semidefinite.",
                    _lifting_measured(results.recovery),
                ],
                figures={"lifting": plots.lifting(results.recovery)},
            )
        )
    if len(results.probes):
        sections.append(Section("Curvature probes", figures={"curvature": plots.curvature(results.probes)}))
        if len(results.steps):
            sections.append(_spike_section(results))
    return sections


def _lifting_measured(recovery: pd.DataFrame) -> str:
    rows = recovery.dropna(subset=["lifting_grad_norm_shallow"])
    ratio = rows["lifting_grad_norm_lifted"] / rows["lifting_grad_norm_shallow"]
    shallow, lifted = rows["lifting_hessian_min_shallow"], rows["lifting_hessian_min_lifted"]
    return (
        f"Measured over {len(rows)} runs: outputs change by at most {rows['lifting_output_change'].max():.1e}; "
        f"gradient norm lifted ÷ shallow {ratio.min():.3g} to {ratio.max():.3g}; smallest Hessian eigenvalue "
        f"{shallow.min():.2e} to {shallow.max():.2e} at the solutions found, {lifted.min():.2e} to "
        f"{lifted.max():.2e} at their lifted points."
    )


def write_report(sections: list[Section], out_dir: Path, *, title: str) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` + PNGs into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        md += [f"## {section.title}", ""] + [f"{line}  " for line in section.text] + [""]
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{html.escape(line)}</p>" for line in section.text]
        for table in section.tables:
            md += [_markdown_table(table), ""]
            body.append(table.to_html(index=False, float_format=_format_number, na_rep="", border=0, classes="fit"))
        for name, figure in section.figures.items():
            png = _png(figure)
            (out_dir / f"{name}.png").write_bytes(png)
            md += [f"![{name}]({name}.png)", ""]
            encoded = base64.b64encode(png).decode()
            body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{encoded}"></figure>')
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(_HTML.format(title=html.escape(title), body="\n".join(body)), encoding="utf-8")
    md_path.write_text("\n".join(md), encoding="utf-8")
    return html_path, md_path


def parameter_table(fit: object) -> pd.DataFrame:
    """A fit's parameters as the report shows them: value and interval for findings, status and reason
    otherwise."""
    rows = []
    for name, est in fit.params().items():  # type: ignore[attr-defined]
        shown = est.is_finding or est.status == "by form"
        rows.append(
            {
                "parameter": name,
                "value": est.value if shown else None,
                "low": est.low if shown and est.status != "given" else None,
                "high": est.high if shown and est.status != "given" else None,
                "status": est.status,
                "why not a finding": est.reason,
            }
        )
    return pd.DataFrame(rows)


def _group_section(group: GroupFit, index: int, frame: pd.DataFrame, n_bootstrap: int) -> Section:
    fit = group.fit
    slug = f"group{index}"
    section = Section(f"Joint fit L(N, D) = E + A/N^α + B/D^β — {group.label}")
    section.text.append(
        f"{fit.n_points} trials; form: {group.form_name}; best of {fit.n_starts} starts, {fit.n_at_best} screened "
        f"starts reached it; {len(fit.bootstrap_theta)} bootstrap resamples, {fit.options.ci:.0%} percentile intervals."
    )
    if group.selection is not None:
        section.text.append(f"Form chosen: {group.selection.reason}.")
        candidates = group.selection.table()
        candidates["error on the largest size"] = candidates["error on the largest size"].map(lambda e: f"{e:.2%}")
        section.tables.append(candidates)
    section.tables.append(parameter_table(fit))
    section.figures.update(
        {
            f"{slug}_loss_vs_N": plots.loss_curves(fit, x="N"),
            f"{slug}_loss_vs_D": plots.loss_curves(fit, x="D"),
            f"{slug}_isoloss": plots.isoloss(fit),
            f"{slug}_residuals": plots.residuals(fit),
        }
    )
    e_given, e_exact = group_e(frame, None)
    try:
        check = extrapolation_check(
            frame["N"], frame["D"], frame["loss"], e_given=e_given, e_exact=e_exact, n_bootstrap=n_bootstrap
        )
    except ValueError as exc:
        section.text.append(f"Extrapolation check not run: {exc}.")
        return section
    if check.fit is None:
        section.text.append(
            f"Extrapolation check: without the largest model size, {check.selection.reason}; nothing to predict with."
        )
        return section
    section.text.append(
        f"Extrapolation check: fitted without the largest model size (form chosen on the smaller sizes: "
        f"{check.selection.chosen.spec.name}), the law predicts the held-out points with mean |relative error| "
        f"{check.mean_abs_relative_error:.2%} (largest {check.max_abs_relative_error:.2%}); "
        f"{int(check.held_out['covered'].sum())}/{len(check.held_out)} inside their 95% prediction interval."
    )
    held = check.held_out.assign(relative_error=check.held_out["relative_error"].map(lambda e: f"{e:+.2%}"))
    section.tables.append(held)
    return section


def _isoflop_section(design: GroupDesign, index: int) -> Section:
    """Approach 2 beside Approach 3 for one group: the budgets' minima, a and b from each, and the figures."""
    fit = design.isoflop
    section = Section(f"IsoFLOP minima (Approach 2) and the compute-optimal allocation — {design.label}")
    section.text.append(
        f"{len(fit.budgets)} budgets, {len(fit.kept)} with a bracketed minimum: per budget a parabola of loss in "
        f"log N, its minimum N*(C) with a residual-bootstrap {fit.ci:.0%} interval; budgets whose minimum is at the "
        "edge of their sizes, or not a minimum, are left out with why (README 'Compute-optimal design')."
    )
    why_joint = design.allocation_reason()
    joint = design.joint.params() if design.joint is not None and not why_joint else {}
    for name in ("a", "b"):
        approach2 = _shown(getattr(fit, name), f"{name} (N_opt ∝ C^a)" if name == "a" else f"{name} (D_opt ∝ C^b)")
        approach3 = _shown(joint[name], "") if joint else f"not identified: {why_joint}"
        section.text.append(f"{approach2} from the IsoFLOP minima; from the joint law: {approach3}.")
    if fit.identified and joint:
        a2, a3 = fit.a, joint["a"]
        overlap = a2.low <= a3.high and a3.low <= a2.high
        section.text.append(f"The two approaches' intervals for a {'overlap' if overlap else 'do not overlap'}.")
    if fit.budgets:
        section.tables.append(fit.table())
        section.figures[f"isoflop{index}_curves"] = plots.isoflop_curves(fit)
    section.figures[f"isoflop{index}_allocation"] = plots.compute_optimal(fit, None if why_joint else design.joint)
    return section


def _shown(est: Estimate, name: str) -> str:
    prefix = f"{name} = " if name else ""
    if est.status == "identified":
        return f"{prefix}{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]"
    return f"{name or 'it'}: {est.status} ({est.reason})"


def _comparison_section(comparison: GroupComparison) -> Section:
    labels = [g.label for g in comparison.groups]
    common, fits, why_none = comparison.common_form()
    differences, refused = [], []
    # in a shared-exponent form β is α: comparing it again says nothing new
    beta = next(iter(fits.values())).params().get("beta") if fits else None
    shared = beta is not None and beta.status == "by form"
    compared = ("alpha",) if shared else ("alpha", "beta")
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            for param in compared:
                why = comparison.why_not_comparable(a, b, param=param)
                if why:
                    refused.append(f"{param}: {a} vs {b}: cannot be compared: {why}.")
                else:
                    differences.append(vars(comparison.difference(a, b, param=param)))
    rows = []
    for group in comparison.groups:
        fit = fits.get(group.label, group.fit)
        row: dict[str, object] = {"group": group.label, "own form": group.form_name, "n_points": fit.n_points}
        for name, est in fit.params().items():
            if name in ("E", "alpha", "beta", "a"):
                row[name] = (
                    f"{est.value:.4g} [{est.low:.4g}, {est.high:.4g}]"
                    if est.status == "identified"
                    else (
                        f"{est.value:.4g} ({est.status})" if est.is_finding or est.status == "by form" else est.status
                    )
                )
        rows.append(row)
    where = (
        f"in the form every group identifies: {common}"
        if common
        else f"in each group's own form ({why_none}, so nothing is compared)"
    )
    section = Section(
        "Comparison across groups",
        text=[
            f"Exponents and E per group {where}; values only where identified. Differences are tested with the "
            "groups' independent bootstraps (two-sided percentile p-values), only where the exponent is identified "
            "in both groups.",
            *refused,
        ],
        tables=[pd.DataFrame(rows)] + ([pd.DataFrame(differences)] if differences else []),
    )
    figure = plots.group_exponents(comparison)
    if figure is None:
        section.text.append("No exponent is identified in any group: no exponent figure.")
    else:
        section.figures["group_exponents"] = figure
    return section


def _spike_section(results: Results) -> Section:
    """Spikes of the probed trials, the shares of the mechanism's signatures, and panels for the spikiest."""
    # Spikes are searched in the losses of probed trials only: elsewhere there is nothing to relate them to.
    logged = set(results.steps["trial_id"])
    probed_trials = [t for t in results.probes["trial_id"].unique() if t in logged]
    steps = results.steps[results.steps["trial_id"].isin(probed_trials)]
    spikes = analyze_spikes(steps, results.probes, rule=DEFAULT_RULE)
    section = Section("Loss spikes and Adam's stability edges", text=[f"Rule: {DEFAULT_RULE.describe()}."])
    # Shares per kind of network: a study may mix networks whose spikes need not share a cause.
    kinds = pd.concat(
        [
            results.trials.set_index("trial_id")["architecture"],
            ("mlp-" + results.function_runs.set_index("run_id")["activation"]).rename_axis("trial_id"),
        ]
    )
    kinds = kinds[~kinds.index.duplicated()].reindex(probed_trials).fillna("unknown")
    if kinds.nunique() > 1:
        for name, members in kinds.groupby(kinds, sort=True):
            lines = spike_shares(spikes[spikes["trial_id"].isin(members.index)]).lines()
            section.text.extend([f"{name}: {lines[0]}", *lines[1:]])
    else:
        section.text.extend(spike_shares(spikes).lines())
    if len(spikes):
        section.tables.append(spikes[list(_SPIKE_TABLE)].rename(columns=_SPIKE_TABLE))
    counts = spikes["trial_id"].value_counts().reindex(probed_trials, fill_value=0)
    shown = counts.sort_values(ascending=False, kind="stable").index[:_MAX_SPIKE_FIGURES]
    if len(counts) > len(shown):
        section.text.append(f"Panels for the {len(shown)} trials with the most spikes of {len(counts)} probed.")
    for index, trial_id in enumerate(shown):
        section.figures[f"spikes{index}"] = plots.spike_panels(
            steps[steps["trial_id"] == trial_id],
            results.probes[results.probes["trial_id"] == trial_id],
            spikes[spikes["trial_id"] == trial_id],
            rule=DEFAULT_RULE,
        )
    return section


_MAX_SPIKE_FIGURES = 6
# The spike table's columns as the report shows them (analysis.spikes.SPIKE_COLUMNS documents all of them).
_SPIKE_TABLE = {
    "trial_id": "trial",
    "onset_step": "onset",
    "peak_ratio": "peak/baseline",
    "probe_gap": "steps since probe",
    "gd_crossing_step": "λη>2 since",
    "gd_sustained_probes": "probes λη>2",
    "momentum_crossing_step": "λη>edge since",
    "momentum_sustained_probes": "probes λη>edge",
    "dir_precond_eta": "dir. curv.·η",
    "cosine_precond": "cos(D^½g, y1)",
    "critical_share_before": "g²≪v̂ share",
}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _format_number(value: float) -> str:
    return f"{value:.4g}"


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""  # a number that is not shown (not a finding) or not measured
    return _format_number(value) if isinstance(value, float) else str(value)


def _markdown_table(table: pd.DataFrame) -> str:
    cells = [[_cell(v) for v in row] for row in table.itertuples(False)]
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    return "\n".join([header, rule] + ["| " + " | ".join(row) + " |" for row in cells])


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table.fit {{ border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }}
table.fit th, table.fit td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""

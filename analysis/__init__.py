"""The analysis layer: results Parquet → fitted scaling laws, comparisons, thresholds, tables and a report.

Uses pandas, pyarrow, numpy, scipy and matplotlib only (never torch, transformers or ray), so ``scalesweep
fit`` and ``report`` run on any machine that can read the results. The public surface is what this module
exports.
"""

from analysis.compare import (
    FORMS,
    ExponentDifference,
    GroupComparison,
    GroupFit,
    compare_groups,
    compute_frontier,
    exponent_difference,
    fit_form,
)
from analysis.errors import AnalysisInputError
from analysis.extrapolation import ExtrapolationCheck, extrapolation_check
from analysis.fits import ChinchillaFit, Estimate, FitOptions, PowerLawFit, fit_chinchilla, fit_power_law
from analysis.isoflop import IsoFlopFit, fit_isoflop
from analysis.points import scaling_points
from analysis.results import Results, SkippedFile, Summary, load, summarize
from analysis.selection import Selection, select_form
from analysis.spikes import SPIKE_COLUMNS, SpikeRule, SpikeShares, analyze_spikes, detect_spikes, spike_shares
from analysis.thresholds import Threshold, recovery_thresholds, thresholds_table

__all__ = [
    "FORMS",
    "SPIKE_COLUMNS",
    "AnalysisInputError",
    "ChinchillaFit",
    "Estimate",
    "ExponentDifference",
    "ExtrapolationCheck",
    "FitOptions",
    "GroupComparison",
    "GroupFit",
    "IsoFlopFit",
    "PowerLawFit",
    "Results",
    "Selection",
    "SkippedFile",
    "SpikeRule",
    "SpikeShares",
    "Summary",
    "Threshold",
    "analyze_spikes",
    "compare_groups",
    "compute_frontier",
    "detect_spikes",
    "exponent_difference",
    "extrapolation_check",
    "fit_chinchilla",
    "fit_form",
    "fit_isoflop",
    "fit_power_law",
    "load",
    "recovery_thresholds",
    "scaling_points",
    "select_form",
    "spike_shares",
    "summarize",
    "thresholds_table",
]

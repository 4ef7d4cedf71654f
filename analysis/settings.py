"""Which settings the trials of one fitted law differ in, read from each trial's ``config_json``, and the groups a
law is fitted per.

A law is fitted across model size N and data size D. Trials that also differ in anything else (the learning rate a
rerun was given, the schedule, Adam's betas, gradient clipping, the corpus) follow different laws, and fitting one
law to them pools two. Every trial records its full resolved config (``sweeps.grid.TrialConfig.to_config``);
flattened to dotted names (``train.lr``, ``train.betas``, ``data.synthetic.seed``) its entries are the trial's
*settings*, grouped by like trials columns (``scalesweep fit --by train.lr``). A setting that has a trials column of
its own goes by that column's name (``init.rate`` is ``init_rate``, ``train.batch_size`` is ``batch_size``).

Not settings, because a law is meant to span them or they do not change what a trial computes:

* the law's variables: ``n_layer``, ``d_model`` (N) and ``tokens`` (D); what follows from D (steps, the fork step
  of a cooldown branch) is not in the config at all, and what D was designed from (``flops_budget``,
  ``tokens_per_param`` of a budget grid) varies with D;
* ``seed``: replicates, fitted together as points of one law;
* ``lr``, the trial's own learning rate: one per cell when it follows width (``train.width_scaling``), several when
  the study sweeps it (``grid.lr``), and then every fit takes the envelope (``analysis.points``). The spec's
  ``train.lr`` it is derived from is a setting: a rerun with another ``train.lr`` is another study, not an lr sweep;
* bookkeeping, resources and what only reads the state or changes how a trial runs, not what it computes (the
  study's name, the trial id, ``resources``, ``probes``, ``data.cache_dir``, and ``train.checkpoint_interval``,
  ``adam_stats``, ``width_scaling``, ``branching``, ``compile``, which ``sweeps.grid`` leaves out of trial ids);
* ``warmup_steps`` may follow width (``train.width_scaling.warmup_exponent``): it counts as varying only when it
  differs between trials of one model size.

The default groups are the treatment axes that vary (``analysis.points.GROUP_COLUMNS``) and every other setting that
varies within them. Groups a user chooses must separate every setting that varies: otherwise the fit is refused
with one line that names the settings and the ``--by`` that separates them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.points import GROUP_COLUMNS, scaling_points

_NOT_SETTINGS = (
    "n_layer",
    "d_model",
    "tokens",
    "flops_budget",
    "tokens_per_param",
    "seed",
    "lr",
    "study",
    "trial_id",
    "resources",
    "probes",
    "data.cache_dir",
    "train.checkpoint_interval",
    "train.adam_stats",
    "train.width_scaling",
    "train.branching",
    "train.compile",
)
_COLUMN_OF = {
    "init.rate": "init_rate",
    "init.std": "init_std",
    "train.batch_size": "batch_size",
    "train.warmup_steps": "warmup_steps",
}
"""Config entries that the trials table holds as columns (``models.train.config_columns``), by the column's name."""
_FOLLOWS_WIDTH = ("warmup_steps",)
_SHOWN_VALUES = 4


def with_settings(trials: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``trials`` with a column for every config setting it lacks, and the names of all settings (the treatment
    columns first, then the config's in name order). Trials without a ``config_json`` have no config settings."""
    texts = trials["config_json"] if "config_json" in trials.columns else pd.Series(None, index=trials.index)
    configs = pd.DataFrame([_settings(text, trial) for text, trial in zip(texts, trials["trial_id"], strict=True)])
    configs.index = trials.index
    names = [c for c in GROUP_COLUMNS if c in trials.columns]
    names += sorted(c for c in configs.columns if c not in names)
    added = [c for c in configs.columns if c not in trials.columns]
    return pd.concat([trials, configs[added]], axis=1), tuple(names)


def grouped_points(
    trials: pd.DataFrame, settings: Sequence[str], *, n: str, by: Sequence[str] | None
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The scaling points of ``trials`` and their ``settings`` (both as ``with_settings`` returns them) with a column
    per setting, and the columns to fit one law per group of.

    ``by`` None: the treatment columns that vary, then every other setting that varies within their groups. A ``by``
    given (``scalesweep fit --by``) is used as given, and must separate every setting that varies: otherwise
    AnalysisInputError names the settings and the ``--by`` that does. No points: empty points and no groups."""
    points = scaling_points(trials, n=n, keep=(*settings, *(by or ())))
    if points.empty:
        return points, ()
    if by is not None:
        unknown = [c for c in by if c not in points.columns]
        if unknown:
            raise AnalysisInputError(
                f"--by {' '.join(unknown)}: not a trials column or a setting of config_json (such as train.lr); "
                "try init_rate weight_decay"
            )
        mixed = _varying(points, tuple(by), settings)
        if mixed:
            raise AnalysisInputError(
                f"{_describe(points, mixed)} within the groups of --by {' '.join(by)}: one law would pool trials of "
                f"different settings; fit them apart with --by {' '.join([*by, *mixed])}"
            )
        return points, tuple(by)
    treatments = tuple(c for c in GROUP_COLUMNS if c in points.columns and points[c].nunique(dropna=False) > 1)
    return points, (*treatments, *_varying(points, treatments, settings))


def _varying(points: pd.DataFrame, by: tuple[str, ...], settings: Sequence[str]) -> list[str]:
    """The settings outside ``by`` that take more than one value within one of its groups (within one model size N
    too, for those that may follow width)."""
    mixed = []
    for setting in settings:
        if setting in by:
            continue
        cells = [*by, "N"] if setting in _FOLLOWS_WIDTH else list(by)
        values = points.groupby(cells, dropna=False)[setting] if cells else [((), points[setting])]
        if any(column.nunique(dropna=False) > 1 for _, column in values):
            mixed.append(setting)
    return mixed


def _describe(points: pd.DataFrame, settings: list[str]) -> str:
    parts = []
    for setting in settings:
        values = points[setting].drop_duplicates().sort_values(na_position="last").tolist()
        shown = ", ".join(_text(v) for v in values[:_SHOWN_VALUES]) + (", …" if len(values) > _SHOWN_VALUES else "")
        parts.append(f"{setting} ({shown})")
    return f"{' and '.join(parts)} {'varies' if len(parts) == 1 else 'vary'}"


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "unset"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings(text: object, trial: object) -> dict[str, object]:
    """One trial's settings from its config_json: dotted names, lists as JSON text (so values can be grouped)."""
    if not isinstance(text, str):
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        warnings.warn(f"trial {trial}: config_json is not a JSON object; its settings are unknown", stacklevel=2)
        return {}
    flat = _flatten(config, "")
    return {_COLUMN_OF.get(k, k): v for k, v in flat.items() if not any(_within(k, p) for p in _NOT_SETTINGS)}


def _flatten(value: object, prefix: str) -> dict[str, object]:
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, (list, dict)) else value}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(f"{prefix}.")

"""Trials that differ in a setting besides N, D and the seed are never fitted as one law.

Known answers: a study rerun into the same results with one training setting changed (``train.lr``, which has a
trials column only through the lr it gives, and ``train.betas``, which has none) gets one fit per value of that
setting, each with the very numbers of a fit to that rerun's trials alone; a ``--by`` that does not separate them
is one line naming the setting and the ``--by`` that does, exit code 2, and nothing is written. What a law is meant
to span (sizes, tokens, seeds, an lr and warmup that follow width) is not a setting that varies.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import load
from analysis.cli import FitRequest, fit_main
from analysis.settings import grouped_points, with_settings
from orchestrator.cli import main
from sweeps.studies import builtin_spec_path

SPEC = {
    "name": "rerun",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 512, "zipf_exponent": 1.1, "branching": 32, "tokens": 4_000_000, "seed": 0},
    },
    "model": {"architecture": "llama", "sizes": ["1x32", "2x64", "3x96", "4x128"], "head_dim": 16},
    "grid": {"tokens": [163_840, 655_360, 2_621_440], "init": [{"rate": 0.5}], "weight_decay": [0.1]},
    "train": {"batch_size": 8},
}
FITTED = ["E", "A", "B", "alpha", "beta"]


def _rerun(gen, tmp_path: Path, changed: dict[str, object]) -> tuple[Path, list[Path]]:
    """The study and its rerun with ``changed`` train settings, each following its own law: both written into one
    results directory, and each into a directory of its own."""
    first = gen.study_rows(SPEC, gen.Law(A=60.0, B=150.0), seed=1)
    again = gen.study_rows(
        {**SPEC, "train": {**SPEC["train"], **changed}}, gen.Law(E=2.3, A=40.0, B=400.0, alpha=0.28), seed=2
    )
    alone = [gen.write_trials(tmp_path / name, rows) for name, rows in (("first", first), ("again", again))]
    return gen.write_trials(tmp_path / "both", first + again), alone


def _fit(results: Path, out: Path) -> pd.DataFrame:
    assert fit_main(str(results), request=FitRequest(law="free", n_bootstrap=10), out=str(out), strict=True) == 0
    return pd.read_parquet(out / "fit.parquet")


def _points(results: Path, by: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    return grouped_points(*with_settings(load(results, strict=True).trials), n="with-head", by=by)


@pytest.mark.parametrize(
    ("changed", "setting", "values"),
    [
        ({"lr": 0.01}, "train.lr", [0.003, 0.01]),
        ({"betas": [0.9, 0.99]}, "train.betas", ["[0.9, 0.95]", "[0.9, 0.99]"]),
    ],
)
def test_a_rerun_with_another_setting_is_grouped_apart_or_refused(
    tmp_path: Path, gen, changed: dict, setting: str, values: list, capsys: pytest.CaptureFixture[str]
) -> None:
    both, alone = _rerun(gen, tmp_path, changed)
    points, by = _points(both)
    assert by == (setting,)
    groups = [group for _, group in points.groupby(setting, sort=True)]
    assert [group[setting].iloc[0] for group in groups] == values  # the first study's value, then the rerun's
    for group, results in zip(groups, alone, strict=True):
        own = _points(results)[0]
        assert group[["N", "D", "loss"]].to_numpy().tolist() == own[["N", "D", "loss"]].to_numpy().tolist()
    assert _points(both, by=(setting,))[1] == (setting,)

    out = tmp_path / "refused"
    code = main(["fit", str(both), "--by", "weight_decay", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"scalesweep: error: {setting} (")
    assert err[0].endswith(f"fit them apart with --by weight_decay {setting}")
    assert not out.exists()


def test_each_group_of_a_rerun_is_fitted_as_if_alone(tmp_path: Path, gen) -> None:
    both, alone = _rerun(gen, tmp_path, {"lr": 0.01})
    table = _fit(both, tmp_path / "fit")
    assert list(table["train.lr"]) == [0.003, 0.01] and list(table["n_points"]) == [12, 12]
    for row, results in zip(table.to_dict("records"), alone, strict=True):
        by_itself = _fit(results, tmp_path / f"fit-{results.name}").loc[0]
        assert [row[p] for p in FITTED] == pytest.approx([by_itself[p] for p in FITTED], rel=1e-9)


def test_what_a_law_spans_is_not_a_varying_setting(gen) -> None:
    """The laptop study as shipped (two init/weight-decay cases, lr and warmup that follow width, wsd cooldowns), with
    two seeds and warmup scaled too: its groups are its two cases, fitted by the treatment columns alone."""
    spec = yaml.safe_load(builtin_spec_path("laptop").read_text())
    spec["grid"]["seed"] = [0, 1]
    spec["train"]["width_scaling"]["warmup_exponent"] = 0.5
    rows = gen.study_rows(spec, gen.Law())
    trials, settings = with_settings(pd.DataFrame(rows))
    assert trials.groupby("d_model")["warmup_steps"].nunique().eq(1).all() and trials["warmup_steps"].nunique() > 1
    assert trials["lr"].nunique() > 1 and trials["seed"].nunique() == 2
    points, by = grouped_points(trials, settings, n="with-head", by=None)
    assert by == ("init_rate", "init_std", "weight_decay")
    assert len(points) == len(rows)  # seeds are replicates, each cell a single lr: every trial is a point
    assert grouped_points(trials, settings, n="with-head", by=("init_rate",))[1] == ("init_rate",)


def test_warmup_that_differs_within_a_size_is_a_setting(gen) -> None:
    rows = gen.study_rows(SPEC, gen.Law()) + gen.study_rows(
        {**SPEC, "train": {**SPEC["train"], "warmup_steps": 40}}, gen.Law(), seed=1
    )
    trials, settings = with_settings(pd.DataFrame(rows))
    assert grouped_points(trials, settings, n="with-head", by=None)[1] == ("warmup_steps",)

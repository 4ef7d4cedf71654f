"""From trials rows to fit points: the N conventions and the learning-rate envelope."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import AnalysisInputError, scaling_points
from analysis.points import default_n, varying_lr


def _trial(**row: object) -> dict[str, object]:
    base = {
        "status": "ok",
        "params_non_embedding": 50_000,
        "params_total": 82_768,
        "vocab_size": 512,
        "d_model": 32,
        "tokens": 1_000_000,
        "final_eval_loss": 3.0,
        "init_std": 0.02,
        "weight_decay": 0.0,
        "seed": 0,
        "lr": 0.01,
    }
    return {**base, **row}


def test_n_conventions() -> None:
    trials = pd.DataFrame([_trial()])
    assert scaling_points(trials, n="with-head")["N"].iloc[0] == 50_000 + 512 * 32  # the parameters of C = 6ND
    assert scaling_points(trials, n="non-embedding")["N"].iloc[0] == 50_000
    assert scaling_points(trials, n="total")["N"].iloc[0] == 82_768
    points = scaling_points(trials)
    assert points["C"].iloc[0] == 6 * points["N"].iloc[0] * 1_000_000
    with pytest.raises(AnalysisInputError, match="N convention 'embedding'"):
        scaling_points(trials, n="embedding")


def test_results_without_width_or_vocabulary_fall_back_to_non_embedding() -> None:
    assert default_n(pd.DataFrame([_trial()])) == "with-head"
    assert default_n(pd.DataFrame([_trial(vocab_size=None)])) == "non-embedding"
    assert default_n(pd.DataFrame([_trial()]).drop(columns=["d_model"])) == "non-embedding"


def test_an_lr_sweep_is_fitted_on_its_envelope() -> None:
    rows = []
    for tokens, best in ((1e6, 0.01), (2e6, 0.003)):
        for lr, loss in ((0.003, 3.1), (0.01, 3.2), (0.03, 3.5)) if best == 0.003 else ((0.003, 3.3), (0.01, 3.0)):
            rows.append(_trial(tokens=int(tokens), lr=lr, final_eval_loss=loss))
    points = scaling_points(pd.DataFrame(rows))
    assert varying_lr(points)
    best = points.set_index("D")
    assert best.loc[1e6, "lr"] == 0.01 and best.loc[1e6, "loss"] == 3.0 and best.loc[1e6, "lr_tried"] == 2
    assert best.loc[2e6, "lr"] == 0.003 and best.loc[2e6, "loss"] == 3.1 and best.loc[2e6, "lr_tried"] == 3
    # grouping by lr fits each learning rate on its own instead
    assert len(scaling_points(pd.DataFrame(rows), keep=("lr",))) == 5


def test_an_lr_that_only_follows_width_is_not_an_envelope() -> None:
    rows = [_trial(d_model=d, params_non_embedding=12 * d * d, lr=0.32 / d) for d in (16, 32, 64)]
    points = scaling_points(pd.DataFrame(rows))
    assert len(points) == 3 and not varying_lr(points)

"""Inline Adam statistics in the training loop: filled at the requested steps, equal to a hand-made measurement of
the same optimizer, and invisible to the training numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.batches import batch_order
from models.data import prepare_tokens
from models.probes.adam import adam_step_stats
from models.state import new_state
from models.train import TrialOutcome, lr_at, train
from sweeps.base import SpecError
from sweeps.grid import expand
from sweeps.studies import parse_spec

EVERY, RHO = 4, 0.05
SPEC = {
    "name": "adam-stats-test",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 60000},
        "eval_tokens": 2048,
    },
    "model": {"sizes": ["2x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [4096], "init": [{"rate": 0.5}], "weight_decay": [0.1], "seed": [3]},
    "train": {"batch_size": 8, "warmup_steps": 4, "eval_interval": 8, "log_interval": 2},
}
STATS = ("adam_critical_share", "adam_median_g2_over_v", "update_rms")


def _trial(token_cache: Path, **adam_stats: float):
    train_spec = {**SPEC["train"], **({"adam_stats": adam_stats} if adam_stats else {})}
    raw = {**SPEC, "data": {**SPEC["data"], "cache_dir": str(token_cache)}, "train": train_spec}
    return expand(parse_spec(raw))[0]


def _by_hand(trial, store) -> dict[int, tuple[float, float, float]]:
    """The loop's steps written out, with `adam_step_stats` called directly after every EVERY-th update."""
    state = new_state(trial, store.vocab_size, torch.device("cpu"))
    steps = trial.steps
    sequences = store.training_sequences(trial.shape.seq_len)
    order = batch_order(trial, steps, len(sequences))
    model, optimizer = state.model, state.optimizer
    expected = {}
    for step in range(steps):
        kw = {"warmup": trial.train.warmup_steps, "total": steps, "schedule": trial.train.schedule}
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, peak=trial.lr, min_ratio=trial.train.min_lr_ratio, **kw)
        batch = torch.from_numpy(sequences[order[step]].astype(np.int64))
        model(input_ids=batch, labels=batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trial.train.grad_clip)
        optimizer.step()
        if (step + 1) % EVERY == 0:
            s = adam_step_stats(optimizer, rho=RHO)
            expected[step + 1] = (s.critical_share, s.median_g2_over_v, s.update_rms)
        optimizer.zero_grad(set_to_none=True)
    return expected


def test_stats_fill_the_requested_steps_with_adam_step_stats(token_cache: Path) -> None:
    trial = _trial(token_cache, every=EVERY, rho=RHO)
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    outcome, logged = _run(trial, store)
    assert outcome.status == "ok"
    rows = {r["step"]: r for r in logged}
    steps = trial.steps
    assert sorted(rows) == list(range(2, steps + 1, 2))
    measured = {s for s, r in rows.items() if "adam_critical_share" in r}
    assert measured == set(range(EVERY, steps + 1, EVERY))
    expected = _by_hand(trial, store)
    for step in measured:
        assert tuple(rows[step][c] for c in STATS) == pytest.approx(expected[step], rel=1e-12)
        assert 0 <= rows[step]["adam_critical_share"] <= 1 and rows[step]["update_rms"] > 0


def _run(trial, store) -> tuple[TrialOutcome, list[dict]]:
    """The trial's outcome and its logged rows (as the last report hands them to the trainable)."""
    reports = []
    outcome = train(trial, store, on_report=reports.append)
    return outcome, reports[-1].state.rows


def test_stats_change_no_training_number_and_no_trial_id(token_cache: Path) -> None:
    plain = _trial(token_cache)
    measured = _trial(token_cache, every=EVERY, rho=RHO)
    assert measured.trial_id == plain.trial_id  # a measurement, not a different trial
    store = prepare_tokens(plain.data, min_train_tokens=plain.tokens)
    (a, a_rows), (b, b_rows) = _run(plain, store), _run(measured, store)
    for column in ("train_loss", "grad_norm", "eval_loss"):
        assert [r[column] for r in a_rows] == [r[column] for r in b_rows]
    assert math.isfinite(a.row["final_eval_loss"])
    assert a.row["final_eval_loss"] == b.row["final_eval_loss"]


def test_stats_interval_must_hit_logged_steps(token_cache: Path) -> None:
    with pytest.raises(SpecError, match=r"adam_stats\.every 3 is not a multiple of log_interval 2"):
        _trial(token_cache, every=3)
    raw = {**SPEC, "train": {**SPEC["train"], "adam_stats": {"every": 2}}, "resources": {"workers": 2}}
    with pytest.raises(SpecError, match=r"needs resources\.workers: 1"):
        parse_spec(raw)

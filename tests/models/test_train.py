"""The training loop without Ray: reproducible from the seed, exact resume from a checkpoint, divergence detection."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.batches import batch_order
from models.checkpoint import load_state, save_state
from models.data import TokenStore, prepare_tokens
from models.state import new_state
from models.train import Report, evaluate, lr_at, train
from sweeps.grid import expand
from sweeps.studies import parse_spec

SPEC = {
    "name": "train-test",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 60000},
        "eval_tokens": 2048,
    },
    "model": {"sizes": ["2x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [8192], "init": [{"rate": 0.5}], "weight_decay": [0.1], "seed": [3]},
    "train": {"batch_size": 8, "warmup_steps": 4, "eval_interval": 8, "checkpoint_interval": 12},
}


@pytest.fixture
def trial_and_store(token_cache: Path):
    raw = {**SPEC, "data": {**SPEC["data"], "cache_dir": str(token_cache)}}
    trial = expand(parse_spec(raw))[0]
    return trial, prepare_tokens(trial.data, min_train_tokens=trial.tokens)


def test_lr_schedule_warmup_then_cosine_to_floor() -> None:
    kw = {"peak": 1.0, "warmup": 10, "total": 110, "schedule": "cosine", "min_ratio": 0.1}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(109, **kw) == pytest.approx(0.1)
    assert lr_at(59, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_schedule_is_warmup_then_peak_then_the_decay_formula(shape: str) -> None:
    """Hägele et al. (2024): warmup to the peak, the peak until the decay starts, then 1 − p or 1 − √p to the floor."""
    total, warmup, start, floor = 100, 10, 80, 0.1
    kw = {"peak": 2.0, "warmup": warmup, "total": total, "schedule": "wsd", "min_ratio": floor}
    lrs = [lr_at(step, decay_start=start, decay_shape=shape, **kw) for step in range(total)]
    decay = (lambda p: 1 - p) if shape == "linear" else (lambda p: 1 - math.sqrt(p))

    def floored(step: int) -> float:  # decay step k = 1..20 of 20: p = k/20
        return 2.0 * (floor + (1 - floor) * decay((step - start + 1) / (total - start)))

    expected = [2.0 * (s + 1) / warmup if s < warmup else 2.0 if s < start else floored(s) for s in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[-1] == pytest.approx(2.0 * floor)  # the last step lands on the floor
    # before the decay the lr does not depend on the run's length: what lets every D share one stable run
    longer = [lr_at(step, decay_start=400, decay_shape=shape, **{**kw, "total": 500}) for step in range(start)]
    assert longer == lrs[:start]


def test_each_sequence_is_visited_once_and_batches_do_not_depend_on_d(trial_and_store) -> None:
    trial, store = trial_and_store
    windows = len(store.training_sequences(trial.shape.seq_len))
    steps = trial.steps
    order = batch_order(trial, steps, windows)
    assert len(set(order.ravel().tolist())) == order.size == steps * trial.train.batch_size
    # drawn from the whole stream, not from its first D tokens
    assert order.max() >= steps * trial.train.batch_size
    longer = dataclasses.replace(trial, tokens=4 * trial.tokens)
    np.testing.assert_array_equal(batch_order(longer, longer.steps, windows)[:steps], order)
    with pytest.raises(ValueError, match="holds"):
        batch_order(trial, steps, windows=steps)


def test_eval_loss_and_its_standard_error_over_sequences(trial_and_store) -> None:
    """Known answer: the mean of transformers' own per-sequence losses, and their sd / √n."""
    trial, store = trial_and_store
    state = new_state(trial, store.vocab_size, torch.device("cpu"))
    sequences = store.eval_sequences(trial.shape.seq_len)
    assert sequences.shape == (2048 // 32, 32)
    got = evaluate(state.model, sequences, torch.device("cpu"))
    with torch.no_grad():
        per_sequence = np.array(
            [
                float(state.model(input_ids=s[None], labels=s[None]).loss)
                for s in torch.from_numpy(sequences.astype(np.int64))
            ]
        )
    assert got.mean == pytest.approx(per_sequence.mean(), rel=1e-6)
    assert got.se == pytest.approx(per_sequence.std(ddof=1) / math.sqrt(len(per_sequence)), rel=1e-5)


def test_eval_windows_spread_over_the_whole_held_out_stream(tmp_path: Path) -> None:
    raw = {**SPEC, "data": {**SPEC["data"], "cache_dir": str(tmp_path), "eval_tokens": 4096}}
    held = prepare_tokens(parse_spec(raw).data)  # 4,096 held-out tokens: 128 windows of 32 tie it exactly
    np.testing.assert_array_equal(held.eval_sequences(32).ravel(), held.held_out)
    few = TokenStore.open(held.path, eval_tokens=4 * 32 + 5)  # 4 whole windows: the 5 spare tokens are unused
    all_windows = np.lib.stride_tricks.sliding_window_view(np.asarray(held.held_out), 32)
    starts = [int(np.flatnonzero((all_windows == w).all(axis=1))[0]) for w in few.eval_sequences(32)]
    assert starts[0] == 0 and starts[-1] == len(held.held_out) - 32  # from the first window to the last
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced


def test_same_seed_same_numbers_and_loss_falls(trial_and_store) -> None:
    trial, store = trial_and_store
    a = train(trial, store)
    b = train(trial, store)
    assert a.status == "ok"
    assert a.row["final_eval_loss"] == b.row["final_eval_loss"]
    # learned something: below the loss of predicting uniformly over the vocabulary
    assert a.row["final_eval_loss"] < math.log(store.vocab_size)
    assert a.row["tokens"] == trial.steps * 8 * 32


def test_resume_from_checkpoint_matches_uninterrupted(trial_and_store, tmp_path: Path) -> None:
    trial, store = trial_and_store
    uninterrupted = train(trial, store)

    class Stop(Exception):
        pass

    def save_then_die(report: Report) -> None:
        if report.checkpoint:
            save_state(report.state, tmp_path)
            raise Stop

    with pytest.raises(Stop):
        train(trial, store, on_report=save_then_die)
    state = load_state(trial, store.vocab_size, tmp_path, torch.device("cpu"))
    assert state.step == trial.train.checkpoint_interval
    resumed = train(trial, store, state=state)
    assert resumed.row["final_eval_loss"] == pytest.approx(uninterrupted.row["final_eval_loss"], abs=1e-6)
    steps = [r["step"] for r in state.rows]
    assert steps == sorted(set(steps)) == list(range(1, trial.steps + 1))


def test_absurd_lr_diverges_with_metrics_kept(trial_and_store) -> None:
    trial, store = trial_and_store
    outcome = train(trial.__class__(**{**trial.__dict__, "lr": 1e30}), store)
    assert outcome.status == "diverged"
    assert "non-finite" in outcome.error
    assert outcome.row["steps"] < trial.steps
    assert not math.isfinite(outcome.row["final_train_loss"])

"""``train.compile``: a compiled training step trains what the eager one trains (losses within 1e-4 over 20 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.data import prepare_tokens
from models.state import new_state, ready_for
from models.train import train
from sweeps.grid import trials_of
from sweeps.studies import parse_spec

pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


def test_compiled_and_eager_losses_agree_over_20_steps(tiny_study, tmp_path: Path) -> None:
    raw = tiny_study(
        "compile",
        tmp_path,
        model={"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
        grid={"tokens": [20 * 8 * 32], "init": [{"rate": 0.5}], "seed": [0]},
        train={"batch_size": 8, "lr": 0.01, "warmup_steps": 4, "eval_interval": 20},
    )
    losses = {}
    for compiled in (False, True):
        (trial,) = trials_of(parse_spec({**raw, "train": {**raw["train"], "compile": compiled}}), "compile")
        store = prepare_tokens(trial.data)
        state = new_state(trial, store.vocab_size, CPU)
        ready_for(state, CPU, compile_step=compiled)
        assert (state.loss_of is not None) == compiled
        outcome = train(trial, store, state=state, device=CPU)
        losses[compiled] = [row["train_loss"] for row in state.rows] + [outcome.row["final_eval_loss"]]
    assert len(losses[True]) == 21
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True)) <= 1e-4

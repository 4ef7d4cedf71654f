"""A trial's training state and how it starts: the model of its shape with its initialization, and its optimizer.

Everything that changes during training lives in a :class:`TrainState`, so one object is saved and restored to resume
a trial exactly (`models.checkpoint`, `models.distributed`); `models.train` runs the loop on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from models.init import apply_init
from models.lm import build_lm, use_bf16_autocast
from sweeps.grid import TrialConfig


@dataclass
class TrainState:
    """Everything that changes during training; enough to resume a trial exactly (and, not saved, how its training
    step computes the loss)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    elapsed_offset: float = 0.0
    loss_of: Callable[[torch.Tensor], torch.Tensor] | None = None
    """The training step's loss of a batch, when it is not the model's own (a compiled one: `ready_for`)."""


def lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The mean next-token loss of `batch` (sequences × seq_len token ids) under `model`."""
    return model(input_ids=batch, labels=batch).loss


def ready_for(state: TrainState, device: torch.device, *, compile_step: bool | None) -> None:
    """Get a trial's state ready to train on `device`, in place: bf16 autocast on a GPU, and the training step's
    forward and backward compiled with ``torch.compile`` when `compile_step` says so (None: on a GPU only, the rule
    `benchmarks/throughput.py` measured; README "Compiled training"). The model itself stays eager, so the eval pays
    no second compile and checkpoints are the eager model's; compiled graphs are cached per process and on disk
    (Inductor's cache), so later trials of the same shape reuse them."""
    if device.type == "cuda":
        use_bf16_autocast(state.model, "cuda")
    if compile_step if compile_step is not None else device.type == "cuda":
        state.loss_of = torch.compile(partial(lm_loss, state.model))


def make_optimizer(model: nn.Module, trial: TrialConfig) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay on matrices and embeddings; biases and norm gains are not decayed."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": trial.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=trial.lr, betas=trial.train.betas, eps=trial.train.eps)


def new_state(trial: TrialConfig, vocab_size: int, device: torch.device) -> TrainState:
    """The trial's model, initialized as its spec says with its seed, on `device`, and a fresh optimizer."""
    torch.manual_seed(trial.seed)
    model = build_lm(trial.shape, vocab_size)
    apply_init(model, d_model=trial.shape.d_model, rate=trial.init.rate, std=trial.init.std, seed=trial.seed)
    model.to(device).train()
    return TrainState(model=model, optimizer=make_optimizer(model, trial))

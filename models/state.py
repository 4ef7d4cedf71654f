"""A trial's training state and how it starts: the model of its shape with its initialization, and its optimizer.

Everything that changes during training lives in a :class:`TrainState`, so one object is saved and restored to resume
a trial exactly (`models.checkpoint`, `models.distributed`); `models.train` runs the loop on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.init import apply_init
from models.lm import build_lm
from sweeps.grid import TrialConfig


@dataclass
class TrainState:
    """Everything that changes during training; enough to resume a trial exactly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    elapsed_offset: float = 0.0


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

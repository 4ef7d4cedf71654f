"""Save and restore a trial's :class:`~models.train.TrainState` so a retried trial continues exactly where it stopped.

One file per checkpoint, written to a temporary name and renamed, loaded with ``weights_only=True`` (no pickle of
arbitrary objects: a checkpoint holds tensors, numbers, strings and the logged rows).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from models.train import TrainState, new_state
from sweeps.grid import TrialConfig

STATE_FILE = "state.pt"


def save_state(state: TrainState, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "rows": state.rows,
        "train_seconds": state.train_seconds,
        "elapsed_offset": state.elapsed_offset,
    }
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.tmp-{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, target)
    return target


def load_state(trial: TrialConfig, vocab_size: int, directory: str | Path, device: torch.device) -> TrainState:
    payload = torch.load(Path(directory) / STATE_FILE, map_location=device, weights_only=True)
    state = new_state(trial, vocab_size, device)
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.step = payload["step"]
    state.rows = payload["rows"]
    state.train_seconds = payload["train_seconds"]
    state.elapsed_offset = payload["elapsed_offset"]
    return state

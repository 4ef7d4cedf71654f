"""Save and restore a trial's :class:`~models.train.TrainState` so a retried trial continues exactly where it stopped.

One file per checkpoint, written to a temporary name and renamed, loaded with ``weights_only=True`` (no pickle of
arbitrary objects: a checkpoint holds tensors, numbers, strings and the logged rows).

A *probe checkpoint* is the same state plus ``probe.json``: the trial's config and the curvature probe's settings
(probe batch size, its seed, top_k), so the checkpoint alone says what to probe (`models.probes.lm`).
``probe.json`` is written after ``state.pt``, so its presence marks a complete probe checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.state import TrainState, new_state
from sweeps.grid import TrialConfig

STATE_FILE = "state.pt"
PROBE_FILE = "probe.json"


@dataclass(frozen=True)
class ProbeSettings:
    """What a curvature probe of a checkpoint measures: `batch` training sequences drawn with `seed`, top-`top_k`."""

    batch: int
    top_k: int
    seed: int


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
    return _write_atomically(directory / STATE_FILE, lambda tmp: torch.save(payload, tmp))


def save_probe_checkpoint(
    state: TrainState, directory: str | Path, *, trial: TrialConfig, settings: ProbeSettings
) -> Path:
    """Save `state` with the trial and probe settings that `load_probe_checkpoint` needs; returns ``probe.json``."""
    save_state(state, directory)
    meta = {"trial": trial.to_config(), "step": state.step, "probe": asdict(settings)}
    return _write_atomically(Path(directory) / PROBE_FILE, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))


def read_probe_meta(directory: str | Path) -> tuple[TrialConfig, int, ProbeSettings]:
    """The trial, step and probe settings of a probe checkpoint (without loading its tensors)."""
    meta = json.loads((Path(directory) / PROBE_FILE).read_text())
    return TrialConfig.from_config(meta["trial"]), meta["step"], ProbeSettings(**meta["probe"])


def _write_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    write(tmp)
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

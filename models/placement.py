"""Where a unit's training state lives: in this one process, or sharded over the ranks of a process group.

Code that trains from a saved state (a distributed trial's worker, a stretch of a stable run, a cooldown branch:
`models.branching`) is written once against :class:`Placement`, which says how a fresh state is made, how a state is
saved and loaded, which share of every global batch this process trains (`models.train.Shard`), and whether this
process writes the files its ranks share. Two placements:

* :class:`OneProcess`: the whole model here; a state is one ``state.pt`` (`models.checkpoint`), and the training step
  is made ready for the device (bf16 autocast on a GPU, ``train.compile``: `models.state.ready_for`).
* :class:`Ranks`: one rank of k; FSDP2 or DDP by ``resources.fsdp_min_params``, a state is sharded
  (``torch.distributed.checkpoint``, one safetensors file per rank, ``train_state.json`` written last:
  `models.distributed`) and loads at any world size. Every rank calls every method (saving and loading are
  collective); rank 0 alone writes and removes shared files. Multi-worker steps are not compiled.

Each placement's ``marker`` is the file whose presence marks a complete saved state of its format, so a reader
without a process (the study's driver) can tell which states are on disk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Protocol

import torch

from models.checkpoint import STATE_FILE, load_state, save_state
from models.distributed import (
    TRAIN_STATE_FILE,
    DistContext,
    load_sharded_state,
    local_indices,
    mean_over_ranks,
    save_sharded_state,
    sharded_state,
    strategy_of,
)
from models.state import TrainState, new_state, ready_for
from models.train import Shard
from sweeps.grid import TrialConfig


class Placement(Protocol):
    """How this process holds a trial's training state (module docstring)."""

    marker: ClassVar[str]

    @property
    def device(self) -> torch.device: ...

    @property
    def main(self) -> bool:
        """Whether this process writes (and removes) the files all its ranks share: Parquet rows, saved states."""
        ...

    def fresh(self, trial: TrialConfig, vocab_size: int) -> TrainState:
        """The trial's initialized model and a new optimizer, ready to train here."""
        ...

    def load(self, trial: TrialConfig, vocab_size: int, directory: Path) -> TrainState:
        """The state saved in `directory`, ready to train here."""
        ...

    def save(self, state: TrainState, directory: Path) -> None: ...

    def shard(self, state: TrainState) -> Shard:
        """This process's share of every global batch of `state`'s training."""
        ...

    def remove(self, directory: Path) -> None:
        """Remove a saved state (rank 0 only)."""
        ...


@dataclass(frozen=True)
class OneProcess:
    """The whole trial in this process, on `device`."""

    device: torch.device
    marker: ClassVar[str] = STATE_FILE
    main: ClassVar[bool] = True

    def fresh(self, trial: TrialConfig, vocab_size: int) -> TrainState:
        return self._ready(trial, new_state(trial, vocab_size, self.device))

    def load(self, trial: TrialConfig, vocab_size: int, directory: Path) -> TrainState:
        return self._ready(trial, load_state(trial, vocab_size, directory, self.device))

    def _ready(self, trial: TrialConfig, state: TrainState) -> TrainState:
        ready_for(state, self.device, compile_step=trial.train.compile)
        return state

    def save(self, state: TrainState, directory: Path) -> None:
        save_state(state, directory)

    def shard(self, state: TrainState) -> Shard:
        return Shard()

    def remove(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Ranks:
    """This process as one rank of the default process group (`models.distributed.setup_process_group`)."""

    ctx: DistContext
    marker: ClassVar[str] = TRAIN_STATE_FILE

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def main(self) -> bool:
        return self.ctx.is_main

    def fresh(self, trial: TrialConfig, vocab_size: int) -> TrainState:
        return sharded_state(
            trial,
            vocab_size,
            self.ctx,
            mixed_precision=self.ctx.device.type == "cuda",
            min_params_for_fsdp=trial.resources.fsdp_min_params,
        )

    def load(self, trial: TrialConfig, vocab_size: int, directory: Path) -> TrainState:
        return load_sharded_state(self.fresh(trial, vocab_size), directory)

    def save(self, state: TrainState, directory: Path) -> None:
        save_sharded_state(state, directory)

    def shard(self, state: TrainState) -> Shard:
        ctx = self.ctx
        return Shard(
            rows_of=partial(local_indices, rank=ctx.rank, world_size=ctx.world_size),
            reduce_loss=partial(mean_over_ranks, device=ctx.device),
            parallelism=strategy_of(state.model),
            workers=ctx.world_size,
        )

    def remove(self, directory: Path) -> None:
        if self.main:
            shutil.rmtree(directory, ignore_errors=True)

"""Distribution applied from outside: process groups, FSDP2 or DDP wrapping, the batch split, sharded checkpoints.

This is the one module of `models/` that knows a trial may run on several processes (torchtitan's ``parallelize.py``
and ``distributed/fsdp.py`` are the model): `models.lm` builds a plain `transformers` model, `models.train` trains
whatever module it is handed, and this module turns a model into a distributed one and back into files. It never
imports ray; Ray Train's ``TorchTrainer`` (or torchrun) only sets the environment variables read here.

Sharding or replication. :func:`shard_model` applies FSDP2 (``fully_shard`` on every decoder block, then on the root)
to a model of at least ``min_params_for_fsdp`` parameters and plain DDP below that. FSDP buys memory, not speed: per
step it all-gathers the parameters twice (forward and backward) and reduce-scatters the gradients, 1.5x the bytes of
DDP's single gradient all-reduce, in one latency-bound collective per block where DDP fuses gradients into a few large
buckets. A model whose replicated training state fits on every device usually trains faster under DDP at the same
world size. :data:`DEFAULT_MIN_PARAMS_FOR_FSDP` (1e9) is a memory argument, not a measured crossover: fp32 weights,
gradients and both AdamW moments take 16 bytes per parameter, so a 1e9-parameter model needs 16 GB replicated, the
most that still leaves room for activations on a 24 GB A10G (the g5 workers of ``cluster.yaml``). Measured on this
project's 2-core CPU (2 gloo ranks, fp32 llama, 4×128 tokens per rank, median of 5 steps, two runs on a loaded
machine): at 0.6M and 5M parameters the two were within noise (their order flipped between runs); at 23M and 63M DDP
was 1.2–1.3× faster in both runs; FSDP was never reliably faster. That supports DDP below the threshold but fixes no
crossover, and says nothing about NCCL on GPUs: measure the crossover on the GPUs in question before lowering it.

The batch split. A step's global batch is the row of :func:`models.train.batch_order` that the single-process run
uses; rank r of k takes the contiguous r-th k-th of it (:func:`local_indices`), so a world-size-k run consumes exactly
the same sequences per step. Every sequence has ``seq_len − 1`` predicted tokens (no padding), so the global-batch mean
loss is the mean of the per-rank means (:func:`mean_over_ranks`), and the gradient FSDP and DDP average over ranks is
the gradient of that global mean. ``torch.nn.utils.clip_grad_norm_`` is correct on FSDP2's sharded DTensor gradients:
it returns a replicated DTensor holding the global norm, so `models.train.train_step` needs no change (verified on
torch 2.13 by ``tests/models/test_distributed.py``: 2-rank gradient norms match the single-process ones to 3e-7).

Sharded checkpoints. :func:`save_sharded_state` writes the model and optimizer tensors with
``torch.distributed.checkpoint`` through its safetensors storage (one file per rank, each holding that rank's shards
and their offsets, so a checkpoint loads at any world size), and the loop's bookkeeping (step, logged rows, timers) as
JSON from rank 0, written last: the JSON marks a checkpoint complete. Nothing is unpickled on load, which DCP's default
storage cannot promise: its ``.metadata`` is read with ``pickle.load`` and non-tensor entries with
``torch.load(weights_only=False)``. The optimizer's param groups are not saved because they are rebuilt from the trial
(`models.state.make_optimizer`) and the learning rate is set at every step. The stable-run states of a multi-worker
study (`models.branching`, through `models.placement.Ranks`) are such checkpoints too, saved into fixed directories:
a save killed before its marker leaves shards that the next save there removes first.

Torch versions: public ``torch.distributed.fsdp.fully_shard`` and DCP's safetensors storage with per-rank shards are
recent additions (about 2.6 and 2.8); this module is tested on 2.13 only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from models.lm import use_bf16_autocast
from models.state import TrainState, make_optimizer, new_state
from sweeps.grid import TrialConfig
from sweeps.spec import ResourcesSpec

Strategy = Literal["fsdp", "ddp"]

DEFAULT_MIN_PARAMS_FOR_FSDP: int = ResourcesSpec.model_fields["fsdp_min_params"].default  # one default, in the spec
TRAIN_STATE_FILE = "train_state.json"
SHARD_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except KeyError:
        raise RuntimeError(
            f"environment variable {name} is not set: start this process with torchrun or under Ray Train's "
            "TorchTrainer, which set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
        ) from None


def setup_process_group(device: torch.device | None = None, *, timeout_s: float = 1800.0) -> DistContext:
    """Join the default process group (nccl for a CUDA device, gloo for CPU), or reuse the one Ray Train created.

    Rank and world size come from RANK and WORLD_SIZE, the rendezvous from MASTER_ADDR and MASTER_PORT. Without a
    `device`, a process uses cuda:LOCAL_RANK when CUDA is available and the CPU otherwise; under Ray Train pass
    ``ray.train.torch.get_device()``, because Ray may renumber the visible GPUs.
    """
    rank, world_size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise RuntimeError(
            f"the existing process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but RANK={rank} and WORLD_SIZE={world_size}"
        )
    return DistContext(rank, world_size, local_rank, device)


def teardown_process_group() -> None:
    """Leave the default process group, if there is one (safe to call twice, and after Ray Train's own teardown)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def decoder_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated decoder blocks of a `transformers` model (llama ``model.layers``, gpt2 ``transformer.h``).

    Found through ``_no_split_modules``, the classes each `transformers` architecture declares must stay whole on one
    device: exactly the unit FSDP should gather at a time, for any architecture, without a table of attribute paths.
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(
            f"found no decoder blocks in {type(model).__name__} (its _no_split_modules is {names or None})"
        )
    return blocks


def shard_model(
    model: nn.Module, *, device: torch.device, mixed_precision: bool, min_params_for_fsdp: int
) -> nn.Module:
    """Distribute `model` over the default process group: FSDP2 at or above `min_params_for_fsdp`, DDP below.

    Returns the module to train (the same object under FSDP, whose class FSDP2 swaps in place; a DDP wrapper
    otherwise, see :func:`unwrap`; :func:`strategy_of` says which). With `mixed_precision`, compute runs in bf16
    with fp32 weights and fp32 gradient reduction (GPU runs pass ``device.type == "cuda"``). Build the optimizer after
    this call: FSDP replaces every parameter by a sharded DTensor.
    """
    if not dist.is_initialized():
        raise RuntimeError("no process group: call setup_process_group() before shard_model()")
    n_params = sum(p.numel() for p in model.parameters())
    if n_params < min_params_for_fsdp:
        model.to(device)
        if mixed_precision:
            # DDP has no parameter-dtype policy; autocast keeps fp32 master weights and fp32 gradients, as FSDP's does
            use_bf16_autocast(model, device.type)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # the default policy (all None) computes and reduces in the parameters' own dtype, fp32
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision
        else MixedPrecisionPolicy()
    )
    blocks = decoder_blocks(model)
    for i, block in enumerate(blocks):
        # the last block's parameters are needed again at once by the backward pass: keeping them saves an all-gather
        fully_shard(block, mesh=mesh, reshard_after_forward=i < len(blocks) - 1, mp_policy=policy)
    # the root holds what no block owns (embeddings, final norm, LM head; a tied head stays one parameter)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def strategy_of(model: nn.Module) -> Strategy:
    """How :func:`shard_model` distributed `model` (the module it returned)."""
    return "ddp" if isinstance(model, DistributedDataParallel) else "fsdp"


def unwrap(model: nn.Module) -> nn.Module:
    """The `transformers` model inside `model` (for accounting and probes; train and checkpoint the wrapper): a DDP
    wrapper holds it as ``.module``; FSDP2 shards it in place, so it is the model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def sharded_state(
    trial: TrialConfig, vocab_size: int, ctx: DistContext, *, mixed_precision: bool, min_params_for_fsdp: int
) -> TrainState:
    """A fresh :class:`TrainState` for `trial` on this rank: the single-process model and init, then distributed
    (:func:`strategy_of` its model says how).

    Every rank builds the whole model on the CPU and draws the same seeded init, so the sharded or replicated weights
    are exactly those of the single-process run; the optimizer is made from the distributed parameters.
    """
    model = shard_model(
        new_state(trial, vocab_size, torch.device("cpu")).model,
        device=ctx.device,
        mixed_precision=mixed_precision,
        min_params_for_fsdp=min_params_for_fsdp,
    )
    return TrainState(model=model, optimizer=make_optimizer(model, trial))


def local_indices(global_indices: np.ndarray, *, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous share of one step's global batch (a row of `models.batches.batch_order`)."""
    if len(global_indices) % world_size:
        raise ValueError(
            f"batch_size {len(global_indices)} is not divisible by the world size {world_size}: "
            f"choose a batch size that is a multiple of the number of workers"
        )
    per_rank = len(global_indices) // world_size
    return global_indices[rank * per_rank : (rank + 1) * per_rank]


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of `value` over all ranks (each rank's local-batch loss → the global-batch loss), on every rank."""
    # float64 so the reduction adds no rounding of its own; SUM because gloo has no AVG
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total) / dist.get_world_size()


def _tensor_state(state: TrainState) -> tuple[dict, dict]:
    """The model's and the optimizer's tensors (FQN-keyed, sharded as trained), and the optimizer's param groups."""
    model_sd, optim_sd = get_state_dict(state.model, state.optimizer)
    return {"model": model_sd, "optim": optim_sd["state"]}, optim_sd["param_groups"]


def save_sharded_state(state: TrainState, directory: str | Path) -> Path:
    """Write `state` into `directory` from every rank; returns once the checkpoint is complete. A directory that
    holds a complete checkpoint is refused; the shards of an incomplete one (a save killed before its marker) are
    removed first, since they would be read back together with the new ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / TRAIN_STATE_FILE).exists():
        raise FileExistsError(f"checkpoint directory {directory} already holds a checkpoint; save each one anew")
    if dist.get_rank() == 0:
        for stale in directory.glob(f"*{SHARD_SUFFIX}"):
            stale.unlink()
    dist.barrier()  # no rank writes until the directory is clear
    tensors, _ = _tensor_state(state)
    dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(str(directory), save_distributed=True))
    if dist.get_rank() == 0:
        bookkeeping = {
            "step": state.step,
            "rows": state.rows,
            "train_seconds": state.train_seconds,
            "elapsed_offset": state.elapsed_offset,
        }
        tmp = directory / f".{TRAIN_STATE_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(bookkeeping))
        os.replace(tmp, directory / TRAIN_STATE_FILE)
    dist.barrier()
    return directory


def load_sharded_state(state: TrainState, directory: str | Path) -> TrainState:
    """Fill a fresh, distributed `state` (see :func:`sharded_state`) from a checkpoint, at any world size."""
    directory = Path(directory)
    marker = directory / TRAIN_STATE_FILE
    if not marker.exists():
        raise FileNotFoundError(f"{directory} holds no complete checkpoint (no {TRAIN_STATE_FILE})")
    tensors, param_groups = _tensor_state(state)
    dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(directory)))
    set_state_dict(
        state.model,
        state.optimizer,
        model_state_dict=tensors["model"],
        optim_state_dict={"state": tensors["optim"], "param_groups": param_groups},
    )
    bookkeeping = json.loads(marker.read_text())
    state.step = bookkeeping["step"]
    state.rows = bookkeeping["rows"]
    state.train_seconds = bookkeeping["train_seconds"]
    state.elapsed_offset = bookkeeping["elapsed_offset"]
    return state

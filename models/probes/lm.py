"""The curvature probe of a language-model probe checkpoint: load it, draw its probe batch, run `curvature_probe`.

Runs in any plain Python process (the orchestrator calls it from a Ray task; `scalesweep probe` after the fact).

- **Probe batch**: ``batch`` of the sequences the trial trains on (`models.train.batch_order`), chosen without
  replacement by ``numpy.random.default_rng(seed).choice``. The seed is saved in the
  checkpoint; the trial uses its own seed, so every probe of a trial sees the same batch and a change of λ_max between
  steps is a change of the parameters, not of the data.
- **Loss**: the model's mean next-token loss on that batch, at the checkpoint's parameters. Double backward through
  attention needs the math SDPA kernel (the fused CPU/GPU kernels have no second derivative), so the forward runs
  under ``sdpa_kernel(SDPBackend.MATH)``; the model has no dropout, so the loss is deterministic as a probe needs.
- **Optimizer state**: the AdamW restored from the checkpoint, so D = diag(1/(√v̂+ε)) and η are those of the saved
  step (`models.probes.adam`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.batches import batch_order
from models.checkpoint import load_state, read_probe_meta
from models.data import TokenStore, prepare_tokens
from models.probes.curvature import curvature_probe
from sweeps.grid import TrialConfig


def probe_batch(trial: TrialConfig, store: TokenStore, size: int, seed: int) -> torch.Tensor:
    """`size` training sequences of `trial` (size × seq_len token ids), drawn as the module docstring says."""
    sequences = store.training_sequences(trial.shape.seq_len)
    trained = batch_order(trial, trial.steps, len(sequences)).ravel()
    rows = np.random.default_rng(seed).choice(len(trained), size=min(size, len(trained)), replace=False)
    return torch.from_numpy(sequences[np.sort(trained[rows])].astype(np.int64))


def probe_checkpoint(directory: str | Path, device: torch.device | None = None) -> dict[str, Any]:
    """The ``probes`` row (trial_id, step and every `CurvatureProbe` field) of the probe checkpoint in `directory`."""
    device = device or torch.device("cpu")
    trial, step, settings = read_probe_meta(directory)
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    state = load_state(trial, store.vocab_size, directory, device)
    batch = probe_batch(trial, store, settings.batch, settings.seed).to(device)
    model = state.model

    def loss() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return model(input_ids=batch, labels=batch).loss

    params = [p for group in state.optimizer.param_groups for p in group["params"]]
    probe = curvature_probe(loss, params, state.optimizer, top_k=settings.top_k, seed=settings.seed)
    return {"trial_id": trial.trial_id, "step": step, **probe.columns()}

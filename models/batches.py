"""Which training sequences a trial reads, step by step.

A trial of D tokens takes ``TrialConfig.steps`` = D // (batch_size × seq_len) steps. Its batches are the first
steps × batch_size entries of a permutation, seeded by the trial's seed, of *every* seq_len window of the training
stream (`models.data.TokenStore.training_sequences`): a uniform sample of the corpus at every D, nested across D (a
larger D reads every sequence a smaller one reads), and the batch of step k does not depend on D.
"""

from __future__ import annotations

import numpy as np

from sweeps.grid import TrialConfig


def batch_order(trial: TrialConfig, steps: int, windows: int) -> np.ndarray:
    """Window indices of each step (steps × batch_size): the first steps × batch_size entries of a seeded
    permutation of all `windows` training windows (module docstring)."""
    n_seq = steps * trial.train.batch_size
    if n_seq > windows:
        raise ValueError(f"{n_seq:,} training sequences asked of a stream that holds {windows:,}")
    order = np.random.default_rng(trial.seed).permutation(windows)[:n_seq]
    return order.reshape(steps, trial.train.batch_size)

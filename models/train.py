"""The training loop of one trial: a pure step function and a loop that reads like a table of contents (nanodo).

Everything here runs in a plain Python process; the Ray trainable only hands a :class:`TrialConfig` in and receives
reports through the ``on_report`` callback. A trial is reproducible: the seed fixes the initialization
(`models.state.new_state`) and the data order (`models.batches`); there is no dropout. The state needed to resume
mid-trial bit for bit (weights, optimizer, step, logged rows, elapsed time) is a `models.state.TrainState`, saved
and loaded by `models.checkpoint`.

The eval loss is the mean next-token loss over the store's eval sequences (windows spread over the whole held-out
stream, `TokenStore.eval_sequences`); its standard error treats the sequence as the unit, since tokens within a
sequence are correlated: SE = sd(per-sequence mean loss) / √(sequences).

Inline Adam statistics (``train.adam_stats``): every ``every`` steps the step also measures
`models.probes.adam.adam_step_stats` and the logged row of that step carries them; measuring reads state only, so the
training numbers are the same with or without it.

Divergence: a non-finite training loss ends the trial with status ``diverged``; the rows logged up to and including
that step are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from models.accounting import count_params
from models.batches import batch_order
from models.data import TokenStore
from models.distributed import unwrap
from models.probes.adam import AdamStepStats, adam_columns, adam_step_stats
from models.state import TrainState, lm_loss, new_state
from sweeps.accounting import flops_per_token, training_flops
from sweeps.grid import TrialConfig

EVAL_BATCH = 32


@dataclass(frozen=True)
class Report:
    """What the loop tells its caller at every eval point and at the end."""

    state: TrainState
    steps_total: int
    final: bool
    diverged: bool
    checkpoint: bool
    probe: bool = False


def _identity(x: Any) -> Any:
    return x


@dataclass(frozen=True)
class Shard:
    """This process's part in a data-parallel trial: which rows of each global batch, and how to average the loss."""

    rows_of: Callable[[np.ndarray], np.ndarray] = _identity
    reduce_loss: Callable[[float], float] = _identity
    parallelism: str = "single"
    workers: int = 1


@dataclass(frozen=True)
class TrialOutcome:
    status: str
    error: str | None
    row: dict[str, Any]


def lr_at(
    step: int,
    *,
    peak: float,
    warmup: int,
    total: int,
    schedule: str,
    min_ratio: float,
    decay_start: int | None = None,
    decay_shape: str | None = None,
) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`.

    ``cosine``: linear warmup, then cosine to min_ratio·peak at the last step. ``constant``: warmup, then peak.
    ``wsd``: peak × w(step) × d(step), where w = (step+1)/warmup during the warmup and 1 after, and d = 1 before
    `decay_start` and then min_ratio + (1 − min_ratio)·(1 − f(p)) with p = (step − decay_start + 1)/(total −
    decay_start), so the last step is at min_ratio·peak; f(p) = p (``linear``) or √p (``1-sqrt``, Hägele et al.
    2024). Before `decay_start` the lr does not depend on `total`: that is what lets cooldown branches share one
    stable run.
    """
    if schedule == "wsd":
        if decay_start is None or decay_shape not in ("linear", "1-sqrt"):
            raise ValueError("a wsd schedule needs decay_start and a decay_shape of linear or 1-sqrt")
        warm = (step + 1) / warmup if step < warmup else 1.0
        if step < decay_start:
            return peak * warm
        progress = (step - decay_start + 1) / (total - decay_start)
        done = progress if decay_shape == "linear" else math.sqrt(progress)
        return peak * warm * (min_ratio + (1 - min_ratio) * (1 - done))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def trial_lr(trial: TrialConfig, step: int) -> float:
    """The learning rate of `trial` at optimizer step `step` (0-based), from its schedule (`lr_at`)."""
    return lr_at(
        step,
        peak=trial.lr,
        warmup=trial.train.warmup_steps,
        total=trial.steps,
        schedule=trial.train.schedule,
        min_ratio=trial.train.min_lr_ratio,
        decay_start=trial.decay_start,
        decay_shape=trial.train.decay_shape,
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    lr: float,
    grad_clip: float,
    *,
    adam_rho: float | None = None,
    loss_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float, AdamStepStats | None]:
    """One AdamW step on `batch` (sequences × seq_len token ids).

    Returns (loss, grad norm before clipping, Adam statistics). The statistics (`adam_step_stats` with ρ =
    `adam_rho`) are measured only when `adam_rho` is given, between the update and zeroing the gradients: the one
    moment both the (clipped) gradient the step consumed and the v̂ it used are at hand. They only read state.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_of(batch) if loss_of is not None else lm_loss(model, batch)
    loss.backward()
    max_norm = grad_clip if grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    stats = adam_step_stats(optimizer, rho=adam_rho) if adam_rho is not None else None
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), float(grad_norm), stats


@dataclass(frozen=True)
class EvalLoss:
    """The eval loss (nats/token) and its standard error over sequences."""

    mean: float
    se: float


@torch.no_grad()
def evaluate(model: nn.Module, sequences: np.ndarray, device: torch.device) -> EvalLoss:
    """Mean next-token loss over `sequences` (n × seq_len token ids) and its SE with the sequence as the unit."""
    model.eval()
    data = torch.from_numpy(np.asarray(sequences, dtype=np.int64))
    per_sequence = []
    for start in range(0, len(data), EVAL_BATCH):
        batch = data[start : start + EVAL_BATCH].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        # every sequence predicts seq_len − 1 tokens, so the mean of sequence means is the mean over tokens
        token_loss = nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        per_sequence.append(token_loss.mean(dim=1).cpu())
    model.train()
    losses = torch.cat(per_sequence).double().numpy()
    se = float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else math.nan
    return EvalLoss(float(losses.mean()), se)


def train(
    trial: TrialConfig,
    store: TokenStore,
    *,
    state: TrainState | None = None,
    device: torch.device | None = None,
    on_report: Callable[[Report], None] | None = None,
    shard: Shard | None = None,
    probe_every: int = 0,
) -> TrialOutcome:
    """Train `trial` on `store` from scratch or from `state`; returns the trial's outcome and summary row.

    With `probe_every`, `on_report` is also called after every `probe_every`-th step with ``probe`` set: the caller
    saves the state there for a curvature probe (unless the step diverged: a probe of non-finite weights says nothing).

    `shard` makes this process one of several data-parallel ranks (see `models.distributed`): it trains on its share
    of every global batch and records the global-batch loss, so every rank logs what the single process would.
    """
    shard = shard or Shard()
    device = device or torch.device("cpu")
    state = state or new_state(trial, store.vocab_size, device)
    started = time.perf_counter() - state.elapsed_offset
    diverged = advance(
        trial, store, state, until=trial.steps, device=device, on_report=on_report, shard=shard, probe_every=probe_every
    )
    status = "diverged" if diverged else "ok"
    error = f"non-finite training loss at step {state.step}" if diverged else None
    return TrialOutcome(
        status, error, summary_row(trial, store, state, status, error, time.perf_counter() - started, shard)
    )


def advance(
    trial: TrialConfig,
    store: TokenStore,
    state: TrainState,
    *,
    until: int,
    device: torch.device,
    on_report: Callable[[Report], None] | None = None,
    shard: Shard | None = None,
    probe_every: int = 0,
) -> bool:
    """Train `state` from its step up to step `until` (at most the trial's steps) on the trial's batches and
    schedule; returns whether the loss diverged. Stopping early and calling again trains exactly what one call
    would: a stable run stops at each cooldown branch's fork point this way (`models.branching`)."""
    shard = shard or Shard()
    steps = trial.steps
    until = min(until, steps)
    # a view of the memory-mapped stream: each step reads only its own sequences
    sequences = store.training_sequences(trial.shape.seq_len)
    order = batch_order(trial, steps, len(sequences))
    eval_sequences = store.eval_sequences(trial.shape.seq_len)
    started = time.perf_counter() - state.elapsed_offset
    tokens_per_step = trial.batch_tokens
    checkpoint_every = trial.train.checkpoint_interval
    stats = trial.train.adam_stats
    diverged = False

    while state.step < until and not diverged:
        tick = time.perf_counter()
        lr = trial_lr(trial, state.step)
        rows = shard.rows_of(order[state.step])
        batch = torch.from_numpy(sequences[rows].astype(np.int64)).to(device)
        measure = bool(stats.every) and (state.step + 1) % stats.every == 0
        loss, grad_norm, adam = train_step(
            state.model,
            state.optimizer,
            batch,
            lr,
            trial.train.grad_clip,
            adam_rho=stats.rho if measure else None,
            loss_of=state.loss_of,
        )
        loss = shard.reduce_loss(loss)
        state.step += 1
        diverged = not math.isfinite(loss)
        final = state.step == steps or diverged
        at_eval = state.step % trial.train.eval_interval == 0 or final
        at_checkpoint = bool(checkpoint_every) and state.step % checkpoint_every == 0 and not final
        at_probe = bool(probe_every) and state.step % probe_every == 0 and not diverged
        eval_loss, eval_seconds = None, 0.0
        if at_eval and not diverged:
            eval_started = time.perf_counter()
            eval_loss = evaluate(state.model, eval_sequences, device)
            eval_seconds = time.perf_counter() - eval_started
        if diverged or at_eval or state.step % trial.train.log_interval == 0:
            state.rows.append(
                {
                    "trial_id": trial.trial_id,
                    "step": state.step,
                    "tokens": state.step * tokens_per_step,
                    "lr": lr,
                    "train_loss": loss,
                    "eval_loss": eval_loss.mean if eval_loss else None,
                    "eval_loss_se": eval_loss.se if eval_loss else None,
                    "grad_norm": grad_norm,
                    "elapsed_s": time.perf_counter() - started,
                    **adam_columns(adam),
                }
            )
        if (at_eval or at_checkpoint or at_probe) and on_report is not None:
            state.elapsed_offset = time.perf_counter() - started
            on_report(Report(state, steps, final=final, diverged=diverged, checkpoint=at_checkpoint, probe=at_probe))
        # the loop's own cost (data, step, logging, reporting) counts as training time; the eval does not
        state.train_seconds += time.perf_counter() - tick - eval_seconds
    state.elapsed_offset = time.perf_counter() - started
    return diverged


def config_columns(trial: TrialConfig) -> dict[str, Any]:
    """The trials-table columns known before training (also written for a failed trial)."""
    return {
        "trial_id": trial.trial_id,
        "architecture": trial.shape.architecture,
        "n_layer": trial.shape.n_layer,
        "d_model": trial.shape.d_model,
        "n_head": trial.shape.n_head,
        "head_dim": trial.shape.head_dim,
        "seq_len": trial.shape.seq_len,
        "init_rate": trial.init.rate,
        "init_std": trial.init.std,
        "weight_decay": trial.weight_decay,
        "seed": trial.seed,
        "lr": trial.lr,
        "batch_size": trial.train.batch_size,
        "warmup_steps": trial.train.warmup_steps,
        "corpus": trial.data.corpus_name,
        "tokenizer": trial.data.tokenizer_identity,
        **trial.budget(),
    }


def summary_row(
    trial: TrialConfig,
    store: TokenStore,
    state: TrainState,
    status: str,
    error: str | None,
    wall_s: float,
    shard: Shard,
) -> dict[str, Any]:
    """The trials-table row of a finished trial (the caller adds study-level bookkeeping columns)."""
    counts = count_params(unwrap(state.model))
    evals = [r for r in state.rows if r["eval_loss"] is not None]
    final_eval = evals[-1] if evals and status == "ok" else None
    recent = [r["train_loss"] for r in state.rows if r["step"] > state.step - trial.train.eval_interval]
    tokens = state.step * trial.batch_tokens
    return {
        **config_columns(trial),
        "status": status,
        "error": error,
        "vocab_size": store.vocab_size,
        "params_total": counts.total,
        "params_embedding": counts.embedding,
        "params_non_embedding": counts.non_embedding,
        "params_head": counts.head,
        "tokens": tokens,
        "steps": state.step,
        "flops": training_flops(counts, tokens),
        "flops_per_token": flops_per_token(
            counts, n_layer=trial.shape.n_layer, seq_len=trial.shape.seq_len, d_model=trial.shape.d_model
        ),
        "final_eval_loss": final_eval["eval_loss"] if final_eval else None,
        "eval_loss_se": final_eval["eval_loss_se"] if final_eval else None,
        "min_eval_loss": min(r["eval_loss"] for r in evals) if evals else None,
        "final_train_loss": float(np.mean(recent)) if recent else None,
        "irreducible_loss": store.entropy_rate,
        "corpus": store.corpus,
        "corpus_fingerprint": store.fingerprint,
        "tokenizer": store.tokenizer,
        "eval_tokens": store.eval_tokens // trial.shape.seq_len * trial.shape.seq_len,
        "wall_s": wall_s,
        "workers": shard.workers,
        "parallelism": shard.parallelism,
        "tokens_per_s": tokens / state.train_seconds if state.train_seconds else None,
    }

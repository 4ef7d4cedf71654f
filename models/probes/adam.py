"""Adam's preconditioner and cheap per-step Adam statistics, read from ``torch.optim.Adam``/``AdamW`` state.

This module owns the one place where the probes interpret optimizer state, so the convention is stated once.
``torch.optim.Adam`` (``_single_tensor_adam``/``_multi_tensor_adam`` in ``torch/optim/adam.py``; ``AdamW``
is the same class with decoupled decay) updates, at step t (``state["step"]`` after the step):

    m_t = β1·m_{t−1} + (1 − β1)·g_t          (``exp_avg``)
    v_t = β2·v_{t−1} + (1 − β2)·g_t²         (``exp_avg_sq``; amsgrad divides by its running max instead)
    θ_{t+1} = θ_t − η·m̂_t / (√v̂_t + ε),      m̂_t = m_t/(1 − β1^t),   v̂_t = v_t/(1 − β2^t)

with ε added *outside* the square root (torch computes ``exp_avg_sq.sqrt() / sqrt(1 − β2^t) + eps``). The
preconditioner is therefore D = diag(1/(√v̂ + ε)) with the bias-corrected v̂ of the optimizer's last step,
each parameter with its own step count t. Read after ``optimizer.step()`` it is exactly the D that step
used; the next step will see v_{t+1}, which also contains g_{t+1}² — the probe reports the state as saved,
not a forecast. Decoupled weight decay (AdamW) and coupled L2 decay (Adam's ``weight_decay``) are not part
of D.

The inline statistics compare the gradient held in ``p.grad`` (what the last step consumed; after clipping
if the loop clips, and without Adam's coupled L2 term) with that step's v̂. The regime g² ≪ v̂ is the one
arXiv:2506.04805 identifies: there v_{t+1}/v_t = β2 + (1 − β2)·g²/v_t ≈ β2, so v̂ decays like β2^t, no
longer tracks the gradient, and D — hence the preconditioned curvature — grows until Adam is unstable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Adam, Optimizer

# torch.quantile refuses inputs longer than 2**24 elements.
_QUANTILE_LIMIT = 2**24


@dataclass(frozen=True)
class AdamPreconditioner:
    """D = 1/(√v̂ + ε) per parameter (parameter-shaped, in ``params`` order) with the groups' η and β1."""

    diagonal: list[Tensor]
    lr: float
    beta1: float


@dataclass(frozen=True)
class AdamStepStats:
    """Per-step Adam statistics (see ``adam_step_stats``)."""

    critical_share: float
    median_g2_over_v: float
    update_rms: float
    grad_norm: float
    coordinates: int


def adam_preconditioner(optimizer: Optimizer | Mapping[str, Any], params: Sequence[Tensor]) -> AdamPreconditioner:
    """Adam's diagonal preconditioner for ``params`` from a live Adam/AdamW or from its ``state_dict()``.

    ``params`` must be the optimizer's parameters in the optimizer's order (param groups concatenated),
    which is how a state dict numbers them; with a live optimizer their identity is checked. All groups must
    share η and β1 (the stability thresholds need one of each); β2, ε and amsgrad are taken per group. Every
    parameter must have Adam state, i.e. the optimizer has stepped with a gradient for it.
    """
    params = list(params)
    if isinstance(optimizer, Optimizer):
        if not isinstance(optimizer, Adam):
            raise TypeError(f"expected torch.optim.Adam or AdamW, got {type(optimizer).__name__}")
        own = [p for group in optimizer.param_groups for p in group["params"]]
        if len(own) != len(params) or any(a is not b for a, b in zip(own, params, strict=False)):
            raise ValueError("params must be the optimizer's parameters, in the optimizer's order")
        state_dict = optimizer.state_dict()
    else:
        state_dict = optimizer
    groups = state_dict["param_groups"]
    ids = [i for group in groups for i in group["params"]]
    if len(ids) != len(params):
        raise ValueError(f"the state dict holds {len(ids)} parameters, {len(params)} were given")
    lrs = {float(group["lr"]) for group in groups}
    beta1s = {float(group["betas"][0]) for group in groups}
    if len(lrs) != 1 or len(beta1s) != 1:
        raise ValueError(f"param groups differ in lr {sorted(lrs)} or beta1 {sorted(beta1s)}; probe them separately")
    diagonal = []
    position = 0
    for group in groups:
        for i in group["params"]:
            p = params[position]
            position += 1
            state = state_dict["state"].get(i)
            if not state or "exp_avg_sq" not in state:
                raise ValueError(f"parameter {position - 1} (shape {tuple(p.shape)}) has no Adam state yet")
            diagonal.append(_inverse_denominator(state, group).to(device=p.device, dtype=p.dtype))
    return AdamPreconditioner(diagonal=diagonal, lr=lrs.pop(), beta1=beta1s.pop())


def adam_step_stats(optimizer: Adam, *, rho: float, max_samples: int = 2**20, seed: int = 0) -> AdamStepStats:
    """Cheap statistics of the step ``optimizer`` just took, over coordinates with a gradient and state.

    Call it after ``optimizer.step()`` and before the gradients are zeroed.

    - ``critical_share``: share of coordinates with g² < ρ·v̂ (the critical regime g² ≪ v̂), among
      coordinates with v̂ > 0 (a coordinate whose gradient has always been exactly zero is in no regime).
      Exact.
    - ``median_g2_over_v``: median of g²/v̂ over the same coordinates; exact up to ``max_samples``
      coordinates, beyond that the median of ``max_samples`` coordinates drawn uniformly (with replacement,
      seeded) across all parameters — its standard error is ~1/√max_samples in quantile, invisible at the
      default 2^20.
    - ``update_rms``: RMS over coordinates of the Adam step η·m̂/(√v̂ + ε), excluding weight decay.
    - ``grad_norm``: ‖g‖₂ of the gradients held in ``p.grad``.

    Cost: a few elementwise passes over parameters, gradients and state (no Hessian products) and one
    device-to-host transfer at the end (step counts live on the host unless the optimizer is ``capturable``).
    """
    if max_samples > _QUANTILE_LIMIT:
        raise ValueError(f"max_samples must be at most 2**24 (torch.quantile's limit), got {max_samples}")
    entries = [
        (p, group, optimizer.state[p])
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None and "exp_avg_sq" in optimizer.state.get(p, {})
    ]
    if not entries:
        raise ValueError("no parameter has both a gradient and Adam state; call this after optimizer.step()")
    total = sum(p.numel() for p, _, _ in entries)
    sampled = None
    if total > max_samples:
        generator = torch.Generator().manual_seed(seed)
        sampled = torch.randint(total, (max_samples,), generator=generator).sort().values
    device = entries[0][0].device
    sums: list[Tensor] = []
    ratios: list[Tensor] = []
    offset = 0
    for p, group, state in entries:
        dtype = torch.promote_types(p.dtype, torch.float32)
        second, bias_correction2 = _second_moment(state, group)
        second = second.to(dtype)
        g2 = p.grad.detach().to(dtype).square()
        v_hat = second / bias_correction2
        valid = v_hat > 0
        ratio = g2 / torch.where(valid, v_hat, 1.0)
        m_hat = state["exp_avg"].to(dtype) / (1 - float(group["betas"][0]) ** _step(state))
        update = float(group["lr"]) * m_hat / (second.sqrt() / bias_correction2**0.5 + group["eps"])
        sums.append(
            torch.stack([valid.sum(), (valid & (ratio < rho)).sum(), update.square().sum(), g2.sum()]).to(
                device=device, dtype=torch.float64
            )
        )
        picked = ratio.reshape(-1)[valid.reshape(-1)] if sampled is None else _pick(ratio, valid, sampled, offset)
        ratios.append(picked.to(device=device, dtype=torch.float64))
        offset += p.numel()
    valid_count, critical, update_sq, grad_sq = torch.stack(sums).sum(0).tolist()
    picked = torch.cat(ratios)
    median = torch.quantile(picked, 0.5).item() if picked.numel() else float("nan")
    return AdamStepStats(
        critical_share=critical / valid_count if valid_count else float("nan"),
        median_g2_over_v=median,
        update_rms=(update_sq / total) ** 0.5,
        grad_norm=grad_sq**0.5,
        coordinates=total,
    )


def _step(state: Mapping[str, Any]) -> float:
    step = state["step"]
    return float(step.item() if isinstance(step, Tensor) else step)


def _second_moment(state: Mapping[str, Any], group: Mapping[str, Any]) -> tuple[Tensor, float]:
    """The second-moment buffer Adam divides by (``max_exp_avg_sq`` with amsgrad) and its 1 − β2^t."""
    second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    return second, 1 - float(group["betas"][1]) ** _step(state)


def _inverse_denominator(state: Mapping[str, Any], group: Mapping[str, Any]) -> Tensor:
    """1/(√v̂ + ε), formed as torch's Adam forms its denominator: √v / √(1 − β2^t) + ε."""
    second, bias_correction2 = _second_moment(state, group)
    return 1.0 / (second.sqrt() / bias_correction2**0.5 + group["eps"])


def _pick(ratio: Tensor, valid: Tensor, sampled: Tensor, offset: int) -> Tensor:
    lo, hi = torch.searchsorted(sampled, torch.tensor([offset, offset + ratio.numel()])).tolist()
    local = (sampled[lo:hi] - offset).to(ratio.device)
    return ratio.reshape(-1)[local][valid.reshape(-1)[local]]


def adam_columns(stats: AdamStepStats | None) -> dict[str, float]:
    """The steps-table columns of the inline Adam statistics (none when the step did not measure them)."""
    if stats is None:
        return {}
    return {
        "adam_critical_share": stats.critical_share,
        "adam_median_g2_over_v": stats.median_g2_over_v,
        "update_rms": stats.update_rms,
    }

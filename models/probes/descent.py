"""Full-batch gradient descent of a batch of independent runs (one per seed), vmapped or one seed at a time.

Each run minimizes its own mean squared error L(θ) = (1/n) Σⱼ (f(xⱼ; θ) − yⱼ)² on its own data with
θ ← θ − lr·∇L(θ), and *stops* at the first step where L ≤ ``loss_tolerance`` (or after ``max_steps`` updates): a
finished run is frozen with ``torch.where`` while the others go on. A run whose loss becomes non-finite is frozen too
(NaN > tol is false) and reports that loss. Because each run follows exactly the updates it would follow alone, the
vmapped path (``vectorize=True``: ``torch.func.vmap`` over the seed axis of parameters and data, one gradient call per
step for all seeds) and the loop (one seed at a time, the same step function without vmap) give the same runs up to
floating-point summation order; ``benchmarks/recovery_vmap.py`` measures what batching buys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

Params = dict[str, Tensor]


@dataclass(frozen=True)
class Descent:
    """Final parameters (leading seed axis), final training loss and updates taken, per seed."""

    params: Params
    loss: Tensor
    steps: Tensor


def mse(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    return ((functional_call(model, params, (x,)) - y) ** 2).mean()


def gradient_descent(
    model: nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    *,
    lr: float,
    loss_tolerance: float,
    max_steps: int,
    vectorize: bool = True,
) -> Descent:
    """Train the runs stacked along axis 0 of ``params`` (S, ...), ``x`` (S, n, d_in) and ``y`` (S, n)."""
    step = grad_and_value(lambda p, xs, ys: mse(model, p, xs, ys))
    if vectorize:
        return _descend(vmap(step), params, x, y, lr, loss_tolerance, max_steps)
    runs = [
        _descend(step, {k: v[s] for k, v in params.items()}, x[s], y[s], lr, loss_tolerance, max_steps)
        for s in range(x.shape[0])
    ]
    return Descent(
        params={k: torch.stack([r.params[k] for r in runs]) for k in params},
        loss=torch.stack([r.loss for r in runs]),
        steps=torch.stack([r.steps for r in runs]),
    )


def _descend(
    step: Callable[[Params, Tensor, Tensor], tuple[Params, Tensor]],
    params: Params,
    x: Tensor,
    y: Tensor,
    lr: float,
    tol: float,
    max_steps: int,
) -> Descent:
    # Works unchanged for one run (scalar loss) and for a vmapped batch (loss of shape (S,)).
    steps = torch.zeros_like(step(params, x, y)[1], dtype=torch.int64)
    for _ in range(max_steps):
        grads, loss = step(params, x, y)
        active = loss > tol
        if not bool(active.any()):
            break
        params = {k: torch.where(_expand(active, v), v - lr * grads[k], v) for k, v in params.items()}
        steps += active
    return Descent(params=params, loss=step(params, x, y)[1], steps=steps)


def _expand(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim()))

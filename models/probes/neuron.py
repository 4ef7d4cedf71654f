"""Single-neuron recovery: initial imbalance ratio and the branch of the target set a run reaches (arXiv:2405.13787).

The student is Σᵢ aᵢ tanh(w̃ᵢᵀx̃) with x̃ = (x, 1) and w̃ᵢ = (wᵢ, bᵢ) when it has biases (x̃ = x, w̃ = w without);
the target is a₀ tanh(w̃₀ᵀx̃). Definitions:

* **Initial imbalance**: with β = Σⱼ yⱼx̃ⱼ over the training data, Cᵢ = aᵢ‖β‖ + w̃ᵢᵀβ at initialization, reported as
  C/‖C‖. Near a small initialization the dynamics are those of the linear model Σᵢ aᵢw̃ᵢᵀx̃ driven by β, and Cᵢ is
  neuron i's component along the growing direction: the sign pattern and sizes of C/‖C‖ decide which neurons grow.
* **Branch**: the target set (parameters that compute the target) has two branches. ``all_equal``: every neuron's
  w̃ᵢ equals ±w̃₀ and the signed output weights add up to a₀; ``one_alive``: one neuron equals the target neuron
  (±w̃₀, ±a₀) and every other neuron is dead (aᵢ = 0 or w̃ᵢ = 0, so it outputs nothing). tanh is odd, so
  (aᵢ, w̃ᵢ) and (−aᵢ, −w̃ᵢ) compute the same neuron. ``none``: neither (the run did not reach the target set).
  Comparisons use ``atol`` relative to max(1, |a₀|, ‖w̃₀‖): coarse on purpose, because the all_equal branch is
  where duplicated neurons make the model rank drop, so gradient descent approaches it slowly.
"""

from __future__ import annotations

import torch
from torch import Tensor

BRANCH_ATOL = 1e-2


def imbalance_ratio(a: Tensor, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """C/‖C‖ with Cᵢ = aᵢ‖β‖ + w̃ᵢᵀβ, β = Σⱼ yⱼx̃ⱼ; ``w`` (m, d̃) and ``x`` (n, d̃) already augmented with biases."""
    beta = y @ x
    c = a * beta.norm() + w @ beta
    return c / c.norm()


def branch(a: Tensor, w: Tensor, a0: float, w0: Tensor, *, atol: float = BRANCH_ATOL) -> str:
    """``all_equal``, ``one_alive`` or ``none`` for a student (a: (m,), w: (m, d̃)) against the target (a0, w0)."""
    tol = atol * max(1.0, abs(a0), float(w0.norm()))
    sign = torch.where((w - w0).norm(dim=1) <= (w + w0).norm(dim=1), 1.0, -1.0).to(w.dtype)
    matches = (w - sign[:, None] * w0).norm(dim=1) <= tol
    if bool(matches.all()) and abs(float((sign * a).sum()) - a0) <= tol:
        return "all_equal"
    dead = torch.minimum(a.abs(), w.norm(dim=1)) <= tol
    alive = matches & ((sign * a - a0).abs() <= tol)
    if int(alive.sum()) == 1 and bool((alive | dead).all()) and int(dead.sum()) == len(a) - 1:
        return "one_alive"
    return "none"

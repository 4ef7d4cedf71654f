"""The embedding principle in depth (arXiv:2205.13283): lift a critical point of a shallower network to a deeper one.

Shallow network: f(x) = Σᵢ aᵢ tanh(wᵢᵀx + bᵢ) (``models.probes.students.TwoLayerTanh`` with biases). The **lifting**
inserts, before the hidden layer, a ReLU layer h = relu(Vx + c) that acts linearly on the training inputs: V = I
and c = 1 − minⱼ xⱼ per coordinate, so every pre-activation is ≥ 1 on the training data and h = x + c there; the
hidden biases become b − Wc, so the lifted network computes exactly f on every input with x + c > 0, the training
inputs among them.

Why the lifted point is critical: on the training data the lifted network is aᵀtanh(W(Vx + c) + b′), a
reparameterization of the shallow one through M = WV and b_eff = Wc + b′. Its gradient with respect to V is
Wᵀ·G and with respect to c is Wᵀ·g, where G and g are the shallow gradients with respect to W and b — zero at a
critical point; its gradient with respect to W, b′ and a are the shallow ones. Second order: the Hessian of
L(WV, Wc + b′) at a critical point is the shallow Hessian evaluated on the pushed-forward directions
(FV + WE, …) plus 2⟨G, FE⟩ = 0, so lifting a local minimum gives a (degenerate) point with a positive
semidefinite Hessian, and lifting a strict saddle keeps a negative eigenvalue, generally a different one: at the
origin (a = 0, W = 0, b = 0) the Hessian is ⊕ᵢ [[0, γᵀ], [γ, 0]] with γ = −(2/n)(Σⱼ yⱼhⱼ, Σⱼ yⱼ), so
λ_min = −(2/n)‖(Σⱼ yⱼhⱼ, Σⱼ yⱼ)‖ with h = x shallow and h = x + c lifted. ``lifting_check`` reports the output
change, both gradient norms and both smallest Hessian eigenvalues (loss: mean squared error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian

from models.probes.students import F64, TwoLayerTanh


class LiftedTanh(nn.Module):
    """aᵀ tanh(W relu(Vx + c) + b′): a two-layer tanh network with a ReLU layer inserted before it."""

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.inserted = nn.Linear(d, d, dtype=F64)
        self.hidden = nn.Linear(d, width, dtype=F64)
        self.out = nn.Linear(width, 1, bias=False, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(torch.relu(self.inserted(x)))))[:, 0]


@dataclass(frozen=True)
class Lifting:
    """``output_change``: max |f_lifted − f_shallow| on the training inputs; gradient norms of the mean squared error
    and smallest Hessian eigenvalues at the shallow and the lifted point (negative = strict saddle)."""

    output_change: float
    grad_norm_shallow: float
    grad_norm_lifted: float
    hessian_min_shallow: float
    hessian_min_lifted: float
    n_params_shallow: int
    n_params_lifted: int


def lift(shallow: TwoLayerTanh, x: Tensor) -> LiftedTanh:
    """The lifted network of ``shallow`` for training inputs ``x`` (construction in the module docstring)."""
    if shallow.hidden.bias is None:
        raise ValueError("lifting needs hidden biases (they absorb the inserted layer's offset)")
    d, width = shallow.hidden.in_features, shallow.hidden.out_features
    lifted = LiftedTanh(d, width)
    offset = 1.0 - x.min(dim=0).values
    with torch.no_grad():
        lifted.inserted.weight.copy_(torch.eye(d, dtype=F64))
        lifted.inserted.bias.copy_(offset)
        lifted.hidden.weight.copy_(shallow.hidden.weight)
        lifted.hidden.bias.copy_(shallow.hidden.bias - shallow.hidden.weight @ offset)
        lifted.out.weight.copy_(shallow.out.weight)
    return lifted


def lifting_check(shallow: TwoLayerTanh, x: Tensor, y: Tensor) -> Lifting:
    """Lift ``shallow`` at its current parameters and compare criticality and curvature on (x, y)."""
    lifted = lift(shallow, x)
    shallow_grad, shallow_min = _criticality(shallow, x, y)
    lifted_grad, lifted_min = _criticality(lifted, x, y)
    with torch.no_grad():
        change = float((lifted(x) - shallow(x)).abs().max())
    return Lifting(
        output_change=change,
        grad_norm_shallow=shallow_grad,
        grad_norm_lifted=lifted_grad,
        hessian_min_shallow=shallow_min,
        hessian_min_lifted=lifted_min,
        n_params_shallow=sum(p.numel() for p in shallow.parameters()),
        n_params_lifted=sum(p.numel() for p in lifted.parameters()),
    )


def _criticality(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """‖∇L‖ and λ_min(∇²L) of the mean squared error at the model's parameters, over all parameters flattened."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: Tensor) -> Tensor:
        pieces = theta.split([s.numel() for s in shapes])
        params = {k: t.reshape(s) for k, t, s in zip(names, pieces, shapes, strict=True)}
        return ((functional_call(model, params, (x,)) - y) ** 2).mean()

    return float(grad(loss)(flat).norm()), float(torch.linalg.eigvalsh(hessian(loss)(flat))[0])

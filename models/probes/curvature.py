"""Curvature probes for the Adam loss-spike mechanism (arXiv:2506.04805): one call, one typed row.

This module owns the *definitions* of the probe quantities and the stability thresholds they are compared
with; the machinery lives in ``hessian`` (H v), ``lanczos`` (top eigenpairs) and ``adam`` (the
preconditioner D). A probe row is computed for a model at a saved step, from a deterministic ``loss_fn`` on
a probe batch and the optimizer's state.

Definitions (g = ∇L on the probe batch, H = ∇²L on the probe batch, D = diag(1/(√v̂ + ε)) with Adam's own
bias-corrected v̂, see ``models.probes.adam``):

- ``lambda_max_hessian`` = λ_max(H); ``top_eigenvalues_hessian`` its top-k, by Lanczos on H.
- ``lambda_max_precond`` = λ_max(Ĥ) with Ĥ = D·H, Adam's preconditioned Hessian. Ĥ is not symmetric, but it
  is similar to S = D^½·H·D^½ (Ĥ = D^½·S·D^−½), so both have the same real eigenvalues; Lanczos runs on S.
  If S y = λ y then Ĥ (D^½ y) = λ (D^½ y).
- ``dir_curvature`` = gᵀHg / ‖g‖²: the curvature along the gradient. A gradient-descent step θ − ηg changes
  the loss by −η‖g‖² + ½η²·gᵀHg to second order, which is an increase exactly when gᵀHg/‖g‖² > 2/η.
- ``dir_curvature_precond`` = uᵀHu / uᵀD⁻¹u with u = D·g the (β1 = 0) Adam step direction; equivalently
  (D^½g)ᵀ S (D^½g) / ‖D^½g‖². Why this is the quantity to compare with 2/η: Adam's step θ − ηu changes the
  loss by −η·gᵀu + ½η²·uᵀHu = −η·uᵀD⁻¹u + ½η²·uᵀHu, an increase exactly when uᵀHu/uᵀD⁻¹u > 2/η. In whitened
  coordinates z = D^−½θ the same step is plain gradient descent with gradient D^½g and Hessian S, and this
  is its gradient-directional curvature; being a Rayleigh quotient of S it never exceeds λ_max(Ĥ) and
  approaches it as the preconditioned gradient aligns with the top eigendirection.
- ``cosine_hessian`` = |gᵀy₁| / ‖g‖ with y₁ the unit top eigenvector of H; ``cosine_precond`` = |(D^½g)ᵀy₁|
  / ‖D^½g‖ with y₁ the unit top eigenvector of S (the alignment in the coordinates where Adam is gradient
  descent). Absolute values because an eigenvector's sign is arbitrary.
- ``threshold_gd`` = 2/η: gradient descent on a quadratic with curvature λ is stable iff ηλ < 2.
- ``threshold_momentum`` = (2 + 2β1)/((1 − β1)η): with torch's EMA momentum m ← β1 m + (1 − β1) g the
  iteration on a quadratic has characteristic polynomial z² − (1 + β1 − (1 − β1)ηλ) z + β1, whose root
  reaches z = −1 at ηλ = (2 + 2β1)/(1 − β1) — 38/η at β1 = 0.9 (Cohen et al. 2022, "Adaptive gradient
  methods at the edge of stability").
- ``hvps``: Hessian-vector products used — Lanczos on H, Lanczos on S, and one each for the two directional
  curvatures. With ``method="finite_difference"`` each costs two gradient evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from models.probes.adam import adam_preconditioner
from models.probes.hessian import LossFn, Method, flatten, hessian_operator, unflatten
from models.probes.lanczos import Matvec, lanczos


@dataclass(frozen=True)
class CurvatureProbe:
    """One probe row; the fields are the ``probes`` table's columns (defined in the module docstring)."""

    lambda_max_hessian: float
    lambda_max_precond: float
    top_eigenvalues_hessian: tuple[float, ...]
    top_eigenvalues_precond: tuple[float, ...]
    dir_curvature: float
    dir_curvature_precond: float
    cosine_hessian: float
    cosine_precond: float
    threshold_gd: float
    threshold_momentum: float
    lr: float
    beta1: float
    hvps: int
    loss: float
    grad_norm: float
    converged: bool

    def columns(self) -> dict[str, Any]:
        """The probe as ``probes``-table columns (the top-k tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def stability_thresholds(lr: float, beta1: float) -> tuple[float, float]:
    """(2/η, (2 + 2β1)/((1 − β1)η)): the curvature bounds for plain and for EMA-momentum gradient descent."""
    if lr <= 0 or not 0 <= beta1 < 1:
        raise ValueError(f"need lr > 0 and 0 <= beta1 < 1, got lr={lr}, beta1={beta1}")
    return 2.0 / lr, (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


def precondition(matvec: Matvec, diagonal: Tensor) -> Matvec:
    """v ↦ D^½·A·D^½ v for a positive diagonal D: symmetric, with the eigenvalues of D·A."""
    root = diagonal.sqrt()
    return lambda v: root * matvec(root * v)


def curvature_probe(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    optimizer: Optimizer | Mapping[str, Any],
    *,
    top_k: int = 1,
    method: Method = "autograd",
    seed: int = 0,
    tol: float = 1e-4,
    max_iter: int = 100,
    displacement: float | None = None,
) -> CurvatureProbe:
    """Probe the loss Hessian and Adam's preconditioned Hessian at the parameters' current values.

    ``loss_fn`` evaluates the (deterministic) loss on the probe batch; ``params`` are the optimizer's
    parameters in its order; ``optimizer`` is a live Adam/AdamW or its ``state_dict()``.
    ``method``/``displacement`` choose how H v is formed (``models.probes.hessian``);
    ``seed``/``tol``/``max_iter`` drive both Lanczos runs (``models.probes.lanczos``).
    """
    params = list(params)
    preconditioner = adam_preconditioner(optimizer, params)
    operator = hessian_operator(loss_fn, params, method=method, displacement=displacement)
    g = flatten(operator.gradient)
    d = flatten(preconditioner.diagonal)

    def hessian(v: Tensor) -> Tensor:
        return flatten(operator.hvp(unflatten(v, params)))

    n = g.numel()
    whitened = d.sqrt() * g  # D^½ g: the gradient in the coordinates where Adam's step is gradient descent
    solve = dict(k=min(top_k, n), max_iter=max_iter, tol=tol, seed=seed, dtype=g.dtype, device=g.device)
    # Each run starts from its gradient plus a random direction (models.probes.lanczos: start vector).
    plain = lanczos(hessian, n, hint=g, **solve)
    preconditioned = lanczos(precondition(hessian, d), n, hint=whitened, **solve)

    u = d * g
    g_sq = float(torch.dot(g, g))
    w_sq = float(torch.dot(whitened, whitened))
    threshold_gd, threshold_momentum = stability_thresholds(preconditioner.lr, preconditioner.beta1)
    return CurvatureProbe(
        lambda_max_hessian=float(plain.eigenvalues[0]),
        lambda_max_precond=float(preconditioned.eigenvalues[0]),
        top_eigenvalues_hessian=tuple(plain.eigenvalues.tolist()),
        top_eigenvalues_precond=tuple(preconditioned.eigenvalues.tolist()),
        dir_curvature=_ratio(float(torch.dot(g, hessian(g))), g_sq),
        dir_curvature_precond=_ratio(float(torch.dot(u, hessian(u))), w_sq),
        cosine_hessian=_ratio(abs(float(torch.dot(g, plain.eigenvectors[:, 0]))), g_sq**0.5),
        cosine_precond=_ratio(abs(float(torch.dot(whitened, preconditioned.eigenvectors[:, 0]))), w_sq**0.5),
        threshold_gd=threshold_gd,
        threshold_momentum=threshold_momentum,
        lr=preconditioner.lr,
        beta1=preconditioner.beta1,
        hvps=plain.matvecs + preconditioned.matvecs + 2,
        loss=operator.loss,
        grad_norm=g_sq**0.5,
        converged=plain.converged and preconditioned.converged,
    )


def _ratio(numerator: float, denominator: float) -> float:
    # A zero gradient has no direction: the directional quantities are undefined, not zero.
    return numerator / denominator if denominator > 0 else float("nan")

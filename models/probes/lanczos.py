"""Lanczos with full reorthogonalization: the top eigenpairs of a symmetric operator known only by its matvec.

This module owns the eigen-solver behind the curvature probes. It knows nothing about Hessians or
optimizers: it takes ``matvec: v ↦ A v`` on 1-D tensors of length n and returns the k largest eigenvalues of
the symmetric A with their eigenvectors and the number of matvecs spent (for a Hessian each matvec is one
Hessian-vector product).

Conventions:

- **top-k** means the k largest eigenvalues in algebraic order, λ₁ ≥ λ₂ ≥ …: stability compares the most
  positive curvature with 2/η, so a Hessian's large negative eigenvalues are deliberately not what is
  reported.
- **Start vector**: standard normal from a CPU ``torch.Generator`` seeded with ``seed`` (then moved to the
  operator's device), so a probe is reproducible bit for bit on one machine. A ``hint`` direction, when given, is
  added to the unit random vector with equal weight. Why: the residual test certifies that a Ritz pair is *an*
  eigenpair, not that it is the top one; when the start vector has a tiny component along the top eigenvector,
  a lower eigenvalue can converge first and be reported (misconvergence). A caller that knows a direction likely
  to carry the top eigenvector (the curvature probe knows the gradient, which the spike mechanism aligns with
  it) removes that failure where it matters, while the random half still excites every eigendirection.
- **Convergence**: after j steps the Ritz pair (θᵢ, yᵢ) has residual ‖A yᵢ − θᵢ yᵢ‖ = β_j·|s_{j,i}| (s the
  eigenvectors of the tridiagonal T_j). We stop when every one of the top-k residuals is ≤ ``tol`` · max|θ|.
  The scale is the spectral-norm estimate rather than |θᵢ| so that a λ_max near zero does not demand
  unbounded relative accuracy. For a symmetric operator the eigenvalue error is ≤ the residual and, once the
  pair is separated from the rest of the spectrum by a gap δ, ≤ residual²/δ, so the default tol = 1e-4
  usually gives eigenvalues to ~1e-8 relative.
- **Full reorthogonalization**: every new vector is Gram–Schmidt-orthogonalized against all stored ones,
  twice ("twice is enough", Kahan/Parlett). This keeps the basis orthonormal to working precision, so
  converged eigenvalues do not come back as spurious copies. It costs m stored vectors of length n and
  O(m²n) flops, small next to m HVPs for the m ≲ 100 steps a probe takes; the vectors are kept as a list so
  memory grows only with the steps actually taken.
- **Breakdown** (β ≈ 0: the Krylov space is invariant, its Ritz values are exact) before k Ritz values exist
  restarts from a fresh random vector orthogonal to the basis, so top-k is defined even when the start
  vector only excites a few eigendirections (a low-rank operator). A single-vector Krylov method still
  resolves each *distinct* eigenvalue of one Krylov space once: an exactly repeated top eigenvalue may be
  reported once only (block Lanczos would fix that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Matvec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LanczosResult:
    """Top-k eigenpairs of a symmetric operator.

    ``eigenvalues``: shape (k,), float64, descending. ``eigenvectors``: shape (n, k), unit columns in the
    operator's dtype, column i belongs to eigenvalue i (sign arbitrary). ``matvecs``: operator applications
    used. ``converged``: whether the residual test passed before ``max_iter`` ran out.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    matvecs: int
    converged: bool


def lanczos(
    matvec: Matvec,
    n: int,
    *,
    k: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    hint: Tensor | None = None,
) -> LanczosResult:
    """The k largest eigenvalues (and eigenvectors) of the symmetric n×n operator ``matvec``.

    At most ``min(max_iter, n)`` matvecs; stops earlier once the top-k Ritz residuals are below
    ``tol``·max|θ| (see the module docstring). ``dtype``/``device`` are those of the vectors handed to
    ``matvec``; ``hint`` is a direction mixed into the start vector (module docstring).
    """
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    steps = min(max_iter, n)
    if steps < k:
        raise ValueError(f"max_iter={max_iter} allows fewer Lanczos steps than the k={k} eigenvalues asked")
    generator = torch.Generator().manual_seed(seed)
    breakdown = torch.finfo(dtype).eps ** 0.5
    basis: list[Tensor] = []
    alphas: list[float] = []
    couplings: list[float] = []  # couplings[j] links basis[j] and basis[j + 1]; 0 across a restart
    q = _fresh_unit_vector(generator, basis, n, dtype, device)
    if hint is not None and float(torch.linalg.vector_norm(hint)) > 0:
        q = q + hint.to(dtype=dtype, device=device) / torch.linalg.vector_norm(hint)
        q = q / torch.linalg.vector_norm(q)
    converged = False
    while True:
        basis.append(q)
        w = matvec(q)
        alpha = float(torch.dot(w, q))
        # Out of place on purpose: matvec may return its argument (identity) or a tensor it keeps.
        w = w - alpha * q
        _orthogonalize_(w, basis)
        beta = float(torch.linalg.vector_norm(w))
        alphas.append(alpha)
        theta, s = torch.linalg.eigh(_tridiagonal(alphas, couplings))
        top = torch.arange(len(alphas) - 1, max(len(alphas) - 1 - k, -1), -1)
        scale = float(theta.abs().max())
        residuals = beta * s[-1, top].abs()
        if len(basis) >= k and bool((residuals <= tol * scale).all()):
            converged = True
            break
        if len(basis) == steps:
            break
        if beta <= breakdown * scale:
            couplings.append(0.0)
            q = _fresh_unit_vector(generator, basis, n, dtype, device)
        else:
            couplings.append(beta)
            q = w / beta
    vectors = torch.zeros(n, len(top), dtype=dtype, device=device)
    for j, v in enumerate(basis):
        vectors += v[:, None] * s[j, top].to(dtype=dtype, device=device)[None, :]
    return LanczosResult(eigenvalues=theta[top].clone(), eigenvectors=vectors, matvecs=len(basis), converged=converged)


def _tridiagonal(alphas: list[float], couplings: list[float]) -> Tensor:
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if couplings:
        off = torch.tensor(couplings, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


def _orthogonalize_(w: Tensor, basis: list[Tensor]) -> None:
    for _ in range(2):
        for q in basis:
            w -= torch.dot(q, w) * q


def _fresh_unit_vector(
    generator: torch.Generator, basis: list[Tensor], n: int, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    _orthogonalize_(v, basis)
    return v / torch.linalg.vector_norm(v)

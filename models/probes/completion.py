"""Matrix-completion measurements: observation-graph connectivity, numerical rank, nuclear norm, and the
minimum-nuclear-norm completion (arXiv:2405.13721 relates what small-initialization training learns to them).

* The **observation graph** of a set Ω of observed entries of a d×d matrix is bipartite: one node per row, one per
  column, an edge (i, j) per observed entry. ``bipartite_components`` counts its connected components, an unobserved
  row or column being a component of its own; 1 means *connected and covering* — for a generic rank-1 target exactly
  the condition under which the observed entries determine the matrix (Mᵢⱼ = Mᵢₖ Mₗⱼ / Mₗₖ along paths).
* **Numerical rank**: singular values σ > rtol·σ₁. **Nuclear norm** ‖X‖* = Σσ.
* The **minimum-nuclear-norm completion** argmin ‖X‖* s.t. X_Ω = M_Ω, computed without an SDP solver by ADMM
  (Douglas–Rachford splitting of the nuclear norm and the affine constraint): X ← SVT_{1/ρ}(Z − U),
  Z ← X + U with the observed entries reset to M_Ω, U ← U + X − Z, until ‖X − Z‖ and the change of Z are below
  ``tol``·‖M_Ω‖. Unlike singular value thresholding (Cai–Candès–Shen), which solves the τ-regularized problem and
  approaches the minimum only as τ → ∞, ADMM converges to the exact constrained minimizer. Z is returned: it meets
  the constraints exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def bipartite_components(observed: Iterable[tuple[int, int]], d: int) -> int:
    """Connected components of the row–column graph of ``observed`` on d rows and d columns (union–find)."""
    parent = list(range(2 * d))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in observed:
        parent[root(i)] = root(d + j)
    return len({root(node) for node in range(2 * d)})


def numerical_rank(matrix: np.ndarray, rtol: float) -> int:
    sigma = np.linalg.svd(matrix, compute_uv=False)
    return int((sigma > rtol * sigma[0]).sum()) if sigma[0] > 0 else 0


def nuclear_norm(matrix: np.ndarray) -> float:
    return float(np.linalg.svd(matrix, compute_uv=False).sum())


def min_nuclear_norm_completion(
    values: np.ndarray, mask: np.ndarray, *, tol: float = 1e-10, max_iter: int = 20_000, rho: float | None = None
) -> np.ndarray:
    """argmin ‖X‖* subject to X[mask] = values[mask] (ADMM; see the module docstring)."""
    observed = np.where(mask, values, 0.0)
    scale = float(np.linalg.norm(observed)) or 1.0
    # ρ in units of the data: the threshold 1/ρ is then a fixed fraction of the observed entries' size.
    rho = rho if rho is not None else 1.0 / scale
    z = observed.copy()
    u = np.zeros_like(z)
    for _ in range(max_iter):
        left, sigma, right = np.linalg.svd(z - u)
        x = (left * np.maximum(sigma - 1.0 / rho, 0.0)) @ right
        previous = z
        z = np.where(mask, values, x + u)
        u = u + x - z
        if np.linalg.norm(x - z) <= tol * scale and np.linalg.norm(z - previous) <= tol * scale:
            break
    return z

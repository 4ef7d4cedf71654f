"""Matrix-completion measurements: observation-graph connectivity, numerical rank, nuclear norm, and the
minimum-nuclear-norm completion (arXiv:2405.13721 relates what small-initialization training learns to them).

* The **observation graph** of a set Ω of observed entries of a d×d matrix is bipartite: one node per row, one per
  column, an edge (i, j) per observed entry. ``bipartite_components`` counts its connected components, an unobserved
  row or column being a component of its own; 1 means *connected and covering* — for a generic rank-1 target exactly
  the condition under which the observed entries determine the matrix (Mᵢⱼ = Mᵢₖ Mₗⱼ / Mₗₖ along paths).
* **Numerical rank**: singular values σ > rtol·σ₁. **Nuclear norm** ‖X‖* = Σσ.
* The **minimum-nuclear-norm completion** argmin ‖X‖* s.t. X_Ω = M_Ω, computed without an SDP solver by ADMM
  (Douglas–Rachford splitting of the nuclear norm and the affine constraint): X ← SVT_{1/ρ}(Z − U),
  Z ← X + U with the observed entries reset to M_Ω, U ← U + X − Z. Unlike singular value thresholding
  (Cai–Candès–Shen), which solves the τ-regularized problem and approaches the minimum only as τ → ∞, ADMM converges
  to the exact constrained minimizer. It stops when the primal residual ‖X − Z‖ ≤ ``tol``·‖M_Ω‖ and the dual residual
  ρ‖Z − Z_prev‖ ≤ ``tol`` (the multiplier −ρU has ‖·‖₂ = 1 at a minimum, so this residual is already relative), and
  says whether it did (``Completion.converged``). Z is returned: it meets the constraints exactly. With a fixed ρ
  it hit its 20 000-step cap in 8 of 10 rank-3 12×12 cases with 100 entries observed, and in 26 of 150 random d = 12
  cases (ranks 1–3, 30–130 entries); two established additions make all 150 converge (mean 310 steps, at most
  12 732), and 720 of 720 over d = 2…12, ranks 1, 2, d/2, d, random and textbook masks, 20–100 % observed (at most
  15 182 steps). ``benchmarks/completion.py`` prints the old and new solvers side by side.

  - *Residual balancing* (Boyd et al. 2011, §3.4.1, their μ = 10, τ = 2): ρ is multiplied by 2 (U divided by 2,
    keeping the multiplier) when the primal residual exceeds 10× the dual one, divided by 2 in the opposite case.
    Alone it converged 143 of the 150.
  - *Anderson acceleration* (type II, Walker & Ni 2011) of the ADMM step as a fixed-point map of (Z off Ω, U on Ω),
    safeguarded as in SCS (Zhang, O'Donoghue & Boyd 2020): the next point extrapolates the last ``MEMORY`` steps and
    is kept only if its fixed-point residual is no larger than the current one; otherwise a plain step is taken and
    the history restarts, as it does whenever ρ changes (which changes the map). The slowest cases are minima whose
    singular values span six decades, where plain ADMM crawls.

  ρ is balanced at every step, so the fixed-ρ convergence theorem does not cover the iteration; a stop by the rule
  above certifies the result whatever the path (the relative duality gap is then at most about (2√d + 2)·tol), and
  ``converged`` is False when ``max_iter`` comes first. ``Completion.dual`` is that certificate, checkable by anyone:
  for every Y that is zero off Ω, ⟨Y, M⟩/‖Y‖₂ ≤ min ‖X‖* (weak duality).

  With few observed entries the minimizer need not be unique: at d = 12 with 30 entries, an interior-point solution
  with the same nuclear norm (to 5e-11 relative, as is their midpoint's) lay 13–31 % away in Frobenius norm, with a
  different numerical rank. The norm is the minimum's; the rank and test error describe the minimizer this iteration
  reaches from zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Anderson history. On the 9 slowest of the 150 d = 12 cases, memory 5 left 2 at the 20 000-step cap; 10 needed up
# to 18 524 steps, 20 up to 12 732, 30 up to 11 257.
MEMORY = 20
BALANCE, FACTOR = 10.0, 2.0  # residual balancing's μ and τ (Boyd et al. 2011, §3.4.1)


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


@dataclass(frozen=True)
class Completion:
    """The result of ``min_nuclear_norm_completion``."""

    matrix: np.ndarray
    """The completion; equals the given values on the observed entries exactly."""
    dual: np.ndarray
    """The multiplier Y = −ρU of the constraints, zero off the observed entries (the certificate of the module
    docstring)."""
    converged: bool
    """Both residuals fell below ``tol`` within ``max_iter`` steps."""
    iterations: int
    """ADMM steps evaluated (one SVD each), rejected Anderson candidates included."""


@dataclass(frozen=True)
class _Step:
    """One ADMM step from the point w (Z off Ω, U on Ω): the point it maps to and its residuals."""

    image: np.ndarray
    z: np.ndarray
    u: np.ndarray
    primal: float
    dual: float


def min_nuclear_norm_completion(
    values: np.ndarray, mask: np.ndarray, *, tol: float = 1e-10, max_iter: int = 20_000
) -> Completion:
    """argmin ‖X‖* subject to X[mask] = values[mask] by ADMM with residual balancing and Anderson acceleration (see
    the module docstring); ``max_iter`` caps the ADMM steps (SVDs)."""
    scale = float(np.linalg.norm(values[mask])) or 1.0

    def step(w: np.ndarray, rho: float) -> _Step:
        # w packs ADMM's state: Z is the observed values on Ω and free off it, U (scaled dual) is zero off Ω.
        z = np.where(mask, values, w)
        u = np.where(mask, w, 0.0)
        left, sigma, right = np.linalg.svd(z - u)
        x = (left * np.maximum(sigma - 1.0 / rho, 0.0)) @ right
        z_next = np.where(mask, values, x + u)
        u_next = u + x - z_next
        return _Step(
            np.where(mask, u_next, z_next),
            z_next,
            u_next,
            float(np.linalg.norm(x - z_next)) / scale,
            rho * float(np.linalg.norm(z_next - z)),
        )

    # ρ in units of the data: the threshold 1/ρ starts as a fixed fraction of the observed entries' size.
    rho = 1.0 / scale
    w = np.zeros(values.shape)
    current = step(w, rho)
    iterations = 1
    past_w = np.zeros((w.size, MEMORY))  # columns: differences of successive points and of their residuals
    past_g = np.zeros((w.size, MEMORY))
    gram = np.zeros((MEMORY, MEMORY))  # past_gᵀ past_g, kept up to date one column at a time
    stored = 0
    previous: tuple[np.ndarray, np.ndarray] | None = None
    while not (current.primal <= tol and current.dual <= tol) and iterations < max_iter:
        if current.primal > BALANCE * current.dual or current.dual > BALANCE * current.primal:
            factor = FACTOR if current.primal > BALANCE * current.dual else 1.0 / FACTOR
            rho *= factor
            w = np.where(mask, current.image / factor, current.image)  # keep Y = −ρU
            current, stored, previous = step(w, rho), 0, None
            iterations += 1
            continue
        residual = (current.image - w).ravel()
        if previous is not None:
            column = stored % MEMORY
            past_w[:, column] = w.ravel() - previous[0]
            past_g[:, column] = residual - previous[1]
            stored += 1
            k = min(stored, MEMORY)
            gram[column, :k] = gram[:k, column] = past_g[:, :k].T @ past_g[:, column]
        previous = (w.ravel(), residual)
        k = min(stored, MEMORY)
        if k and np.trace(gram[:k, :k]) > 0:
            # The normal equations of min ‖residual − past_g γ‖ (a k×k solve is ~10× cheaper than lstsq); the tiny
            # Tikhonov term keeps them solvable when the history is nearly dependent, and a poor extrapolation that
            # it allows is rejected by the safeguard below.
            system = gram[:k, :k] + 1e-12 * np.trace(gram[:k, :k]) * np.eye(k)
            gamma = np.linalg.solve(system, past_g[:, :k].T @ residual)
            candidate = (w.ravel() + residual - (past_w[:, :k] + past_g[:, :k]) @ gamma).reshape(w.shape)
            trial = step(candidate, rho)
            iterations += 1
            if np.linalg.norm(trial.image - candidate) <= np.linalg.norm(residual):
                w, current = candidate, trial
                continue
            stored, previous = 0, None
            if iterations == max_iter:
                break
        w = current.image
        current = step(w, rho)
        iterations += 1
    converged = current.primal <= tol and current.dual <= tol
    return Completion(current.z, -rho * current.u, converged, iterations)

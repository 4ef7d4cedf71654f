"""Model rank: measured from the parameter Jacobian of any torch model, and in closed form for our models.

This module owns the rank side of the recovery probes (arXiv:2211.11623 "Linear stability hypothesis and
rank stratification", 2307.08921, 2406.18035 "Local linear recovery"). The *model rank* of a model f(·; θ)
at θ is the dimension of its tangent function space, span{∂f(·; θ)/∂θ_j}: the number of independent
directions in which the function, not the parameter vector, can move. The *optimistic sample size* of a
target f* is the smallest model rank over the parameters that represent f*; the theory predicts recovery
from that many samples on.

**Empirical rank** (``model_rank``): the rank of the Jacobian J = ∂f(X; θ)/∂θ, rows = (input, output
component), columns = parameters, over inputs X. With generic X (e.g. Gaussian) and at least as many rows as
the rank, the row space of J equals the tangent function space, so rank J is the model rank. J is formed in
float64 with ``torch.func.vmap(jacrev(...))`` over ``functional_call`` (per sample, so the model must not
couple samples, e.g. no train-mode batch norm). The rank counts singular values σᵢ > ``rtol``·σ₁. Default
rtol = 1e-10: float64 round-off leaves the singular values of an exactly rank-deficient J near
1e-16·σ₁·√size, while the genuine directions of the models in our tests sit above 1e-4·σ₁; ``gap`` =
σ_r/σ_{r+1} is returned so that a user can see whether the rank is unambiguous (a gap of many orders of
magnitude) or depends on the tolerance (a gap near 1).

**Closed forms** (each derived in its docstring; "at a point" = the rank at given parameters, "optimistic" =
the minimum over the parameters representing a target):

- matrix factorization f = (AB)_{ij}, A, B ∈ ℝ^{d×d}: d² − (d − r_A)(d − r_B); rank-r target: 2rd − r².
- two-layer tanh network Σᵢ aᵢ tanh(wᵢᵀx [+ bᵢ]): m_w + m_a·d (d + 1 with biases); width-k target: k(d + 1)
  (k(d + 2) with biases).
- CNN with k channels of s^ndim shared kernels and a readout per position: k(s^ndim + (d + 1 − s)^ndim [+ 1]).
- deep diagonal network Σᵢ (∏ₗ w_{l,i}) xᵢ: coordinates with at most one zero factor; k-sparse target: k.
- the toy model θ0 + θ1x1 + θ2θ3x2: 3 unless θ2 = θ3 = 0, where it is 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

DEFAULT_RTOL = 1e-10


@dataclass(frozen=True)
class ModelRank:
    """Empirical model rank with the evidence for it.

    ``singular_values``: all singular values of J, descending. ``gap``: σ_r/σ_{r+1} (inf when σ_{r+1} is
    absent or exactly zero). ``rows``: rows of J (inputs × outputs); a rank equal to ``rows`` means more
    inputs are needed.
    """

    rank: int
    gap: float
    singular_values: tuple[float, ...]
    rtol: float
    n_params: int
    rows: int


def jacobian(model: nn.Module, inputs: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
    """J[(sample, output), parameter] = ∂f(x; θ)/∂θ in float64; columns in ``named_parameters`` order.

    ``params`` (name → tensor) overrides some or all of the model's parameters to give θ; every parameter gets a
    column. The model is not modified: parameters, floating buffers and inputs are copied to float64.
    """
    theta = {k: v.detach().to(torch.float64) for k, v in {**dict(model.named_parameters()), **(params or {})}.items()}
    buffers = {k: v.detach().to(torch.float64) if v.is_floating_point() else v for k, v in model.named_buffers()}

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (x.unsqueeze(0),)).reshape(-1)

    per_sample = vmap(jacrev(f), in_dims=(None, 0))(theta, inputs.to(torch.float64))
    rows = per_sample[next(iter(theta))].shape[:2].numel()
    return torch.cat([per_sample[k].reshape(rows, -1) for k in theta], dim=1)


def model_rank(
    model: nn.Module,
    inputs: Tensor,
    *,
    params: Mapping[str, Tensor] | None = None,
    rtol: float = DEFAULT_RTOL,
) -> ModelRank:
    """Rank of the parameter Jacobian of ``model`` over ``inputs`` (tolerance: see the module docstring)."""
    j = jacobian(model, inputs, params)
    sigma = torch.linalg.svdvals(j)
    rank = int((sigma > rtol * sigma[0]).sum()) if sigma.numel() and sigma[0] > 0 else 0
    following = float(sigma[rank]) if rank < sigma.numel() else 0.0
    gap = float(sigma[rank - 1]) / following if rank and following > 0 else float("inf")
    return ModelRank(
        rank=rank,
        gap=gap,
        singular_values=tuple(sigma.tolist()),
        rtol=rtol,
        n_params=j.shape[1],
        rows=j.shape[0],
    )


def matrix_factorization_rank(d: int, rank_a: int, rank_b: int) -> int:
    """Model rank d² − (d − r_A)(d − r_B) of (A, B) ↦ AB, A, B ∈ ℝ^{d×d}, where rank A = r_A, rank B = r_B.

    The tangent space is {XB + AY}: matrices with rows in row(B) (dimension d·r_B) plus matrices with
    columns in col(A) (d·r_A), which intersect in the r_A·r_B matrices with both properties. d·r_A + d·r_B −
    r_A·r_B is the formula. It holds at every point, whatever the rank of AB.
    """
    _check_ranks(d, rank_a, rank_b)
    return d * d - (d - rank_a) * (d - rank_b)


def optimistic_matrix_factorization(d: int, r: int) -> int:
    """Optimistic sample size of a rank-r d×d target: 2rd − r².

    AB = target forces r_A, r_B ≥ r, and d² − (d − r_A)(d − r_B) grows with both, so the minimum is at
    r_A = r_B = r.
    """
    _check_ranks(d, r, r)
    return matrix_factorization_rank(d, r, r)


def tanh_neuron_counts(w: Tensor, a: Tensor, b: Tensor | None = None, *, atol: float = 0.0) -> tuple[int, int]:
    """(m_w, m_a) of a two-layer tanh network Σᵢ aᵢ tanh(wᵢᵀx + bᵢ) at a point; ``w`` is (m, d), ``a`` (m,).

    Our reading of m_w and m_a (arXiv:2211.11623, 2307.08921 state the formula m_w + m_a·d for generic
    points with duplicated or dead neurons; we make the degenerate cases explicit). Group neurons into
    classes of equal input weights w̃ᵢ = (wᵢ, bᵢ) up to a common sign — tanh is odd and tanh' even, so (−w̃)
    spans the same functions — with all neurons of zero direction wᵢ = 0 in one extra class. The derivatives
    are ∂aᵢf = tanh(w̃ᵢᵀx̃) and ∂w̃ᵢf = aᵢ·tanh'(w̃ᵢᵀx̃)·x̃ (x̃ = (x, 1) with biases), and for distinct
    classes these functions are linearly independent, so:

    - m_w counts the classes with wᵢ ≠ 0 (each adds its feature tanh(w̃ᵀx̃)), plus the zero-direction class
      when it carries a constant feature tanh(bᵢ) ≠ 0 that no output weight already covers (all its aᵢ = 0,
      some bᵢ ≠ 0);
    - m_a counts the classes (the zero-direction class included: it adds the linear functions x, and x̃ with
      biases) in which some aᵢ ≠ 0; each adds d (d + 1 with biases) functions, however many duplicates share
      it.

    A dead neuron (aᵢ = 0, wᵢ = 0, bᵢ = 0) adds nothing. Equality and zero tests use ``atol`` (0 = exact).
    """
    augmented = w if b is None else torch.cat([w, b[:, None]], dim=1)
    representatives: list[Tensor] = []
    active: list[bool] = []
    zero_active = zero_constant = False
    for wi, ti, ai in zip(w, augmented, a, strict=True):
        alive = bool(ai.abs() > atol)
        if bool(wi.abs().max() <= atol):
            zero_active |= alive
            zero_constant |= bool(ti.abs().max() > atol)
            continue
        for c, r in enumerate(representatives):
            if bool((ti - r).abs().max() <= atol) or bool((ti + r).abs().max() <= atol):
                active[c] |= alive
                break
        else:
            representatives.append(ti)
            active.append(alive)
    m_w = len(representatives) + int(zero_constant and not zero_active)
    m_a = sum(active) + int(zero_active)
    return m_w, m_a


def two_layer_tanh_rank(m_w: int, m_a: int, d: int, *, bias: bool = False) -> int:
    """Model rank m_w + m_a·d of a two-layer tanh network (m_w + m_a·(d + 1) with hidden biases); see
    ``tanh_neuron_counts`` for what m_w and m_a count."""
    return m_w + m_a * (d + int(bias))


def optimistic_two_layer_tanh(k: int, d: int, *, bias: bool = False) -> int:
    """Optimistic sample size k(d + 1) of a width-k target Σ_{i≤k} aᵢ tanh(wᵢᵀx); k(d + 2) with biases.

    Representing the target needs its k distinct neurons (m_w = m_a = k); any further neuron is a duplicate
    (adds nothing) or dead (adds nothing), so the minimum of m_w + m_a·d is k + kd.
    """
    return two_layer_tanh_rank(k, k, d, bias=bias)


def optimistic_cnn(k: int, d: int, s: int, *, ndim: int = 2, bias: bool = False) -> int:
    """Optimistic sample size k(s^ndim + (d + 1 − s)^ndim) of a k-channel tanh CNN target with weight sharing.

    The architecture: input of side d in ``ndim`` dimensions; per channel c one s^ndim kernel w_c shared
    across the (d + 1 − s)^ndim valid positions p (stride 1, no padding), [one shared bias b_c,] tanh, and a
    readout weight a_{c,p} per position summed into a scalar output. Per channel:

    - ∂a_{c,p} f = tanh(w_cᵀ patch_p + b_c) gives (d + 1 − s)^ndim functions,
    - ∂w_c f = Σ_p a_{c,p} tanh'(·) patch_p gives s^ndim, [∂b_c f = Σ_p a_{c,p} tanh'(·) one more,]

    generically independent across channels with distinct kernels; a channel with w_c = 0, b_c = 0 and
    a_c = 0 adds nothing, so a target needing k channels has this minimum. For the 1-D target
    Σ_{s=1..3} tanh(0.6x_s + 0.8x_{s+1} + x_{s+2}), d = 5, s = 3, one channel with a bias: 3 + 3 + 1 = 7
    (arXiv:2211.11623).
    """
    return k * (s**ndim + (d + 1 - s) ** ndim + int(bias))


def deep_diagonal_rank(factors: Tensor) -> int:
    """Model rank of the deep diagonal network f(x) = Σᵢ (∏ₗ w_{l,i}) xᵢ at ``factors`` (w_{l,i}), (L, d).

    ∂f/∂w_{l,i} = (∏_{l'≠l} w_{l',i})·xᵢ, so coordinate i adds the function xᵢ exactly when at most one of
    its L factors is zero, and nothing otherwise.
    """
    return int(((factors == 0).sum(dim=0) <= 1).sum())


def optimistic_deep_diagonal(k: int) -> int:
    """Optimistic sample size k of a k-sparse linear target for a deep diagonal network of depth L ≥ 2.

    A nonzero coefficient needs all its factors nonzero (it counts); a zero coefficient can have two or more
    zero factors (it does not count), so the minimum over representations is the number of nonzeros.
    """
    return k


def toy_model_rank(theta: Tensor) -> int:
    """Model rank of f(x) = θ0 + θ1·x1 + θ2·θ3·x2 at θ: 3, or 2 when θ2 = θ3 = 0.

    The tangent functions are ∂θ0 f = 1, ∂θ1 f = x1, ∂θ2 f = θ3·x2, ∂θ3 f = θ2·x2: x2 is in the span unless
    both θ2 and θ3 vanish.
    """
    return 2 + int(bool(theta[2] != 0) or bool(theta[3] != 0))


def optimistic_toy_model(c2: float) -> int:
    """Optimistic sample size of the target c0 + c1·x1 + c2·x2 for the toy model: 3 if c2 ≠ 0, else 2.

    c2 = 0 is represented at θ2 = θ3 = 0, where the rank is 2; c2 ≠ 0 forces θ2, θ3 ≠ 0 and rank 3.
    """
    return 3 if c2 != 0 else 2


def _check_ranks(d: int, *ranks: int) -> None:
    if any(not 0 <= r <= d for r in ranks):
        raise ValueError(f"ranks must lie in [0, d={d}], got {ranks}")

"""The measurements beside a recovery run, against hand-computed answers: observation-graph connectivity, the
minimum-nuclear-norm completion (closed forms, a dual certificate at d = 12, its convergence report), the single-neuron
imbalance ratio and branch, and the lifting check in depth."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from models.probes.completion import bipartite_components, min_nuclear_norm_completion, nuclear_norm, numerical_rank
from models.probes.lifting import lifting_check
from models.probes.neuron import branch, imbalance_ratio
from models.probes.students import TwoLayerTanh
from models.probes.targets import sample_problem, target_matrix, textbook_order
from sweeps.recovery import MatrixTarget

F64 = torch.float64


def test_bipartite_components_of_the_textbook_order() -> None:
    """4×4: the first row joins row 0 with every column (components: that one + rows 1, 2, 3 = 4); each entry of the
    first column then joins one more row, so n = 7 is the first connected and covering set."""
    order = textbook_order(4)
    assert [bipartite_components(order[:n], 4) for n in range(4, 8)] == [4, 3, 2, 1]
    assert bipartite_components([], 4) == 8
    assert bipartite_components([(0, 0), (1, 1)], 2) == 2


@pytest.mark.parametrize(
    ("b", "missing", "nuclear", "rank"),
    [
        (1.0, 1.0, 2.0, 1),  # [[1, 1], [1, x]]: symmetric; ‖·‖* = √((1−x)² + 4) for x < 1, 1 + x for x ≥ 1 → x = 1
        (2.0, 1.0, 4.0, 2),  # [[1, 2], [2, x]]: √((x−1)² + 16) for x < 4, 1 + x for x ≥ 4 → x = 1, norm 4 < 5
    ],
)
def test_min_nuclear_norm_completion_of_one_missing_entry(b: float, missing: float, nuclear: float, rank: int) -> None:
    """With one entry missing the matrix stays symmetric, its nuclear norm is |λ₁| + |λ₂|, minimized in closed form.
    For b = 2 the minimum (x = 1, rank 2) is not the rank-1 completion (x = 4, norm 5)."""
    values = np.array([[1.0, b], [b, 0.0]])
    mask = np.array([[True, True], [True, False]])
    completion = min_nuclear_norm_completion(values, mask)
    assert completion.converged
    assert completion.matrix[1, 1] == pytest.approx(missing, abs=1e-7)
    assert nuclear_norm(completion.matrix) == pytest.approx(nuclear, abs=1e-8)
    assert numerical_rank(completion.matrix, 1e-6) == rank


def test_min_nuclear_norm_of_a_fully_observed_matrix_is_the_matrix() -> None:
    m = np.random.default_rng(0).standard_normal((4, 4))
    completion = min_nuclear_norm_completion(m, np.ones((4, 4), dtype=bool))
    assert completion.converged
    assert np.array_equal(completion.matrix, m)


def test_min_nuclear_norm_completion_of_a_rank_one_12x12_on_a_cycle_is_the_target() -> None:
    """M = s tᵀ, s, t ∈ {±1}¹², observed on Ω = {(i, i), (i, i+1 mod 12)}: 24 entries whose row–column graph is one
    cycle through all 24 nodes. Y = D_s (I + P)/2 D_t (P the cyclic shift) is zero off Ω and a signed circulant, with
    singular values |1 + ωʲ|/2: 1 for j = 0, at most cos(π/12) < 1 otherwise; ⟨Y, M⟩ = 12 = ‖M‖*, so M is a minimum.
    On the tangent space {s xᵀ + y tᵀ}, with x = D_t a and y = D_s b an element is sᵢtⱼ(aⱼ + bᵢ): vanishing on Ω
    forces aᵢ = aᵢ₊₁ = −bᵢ around the cycle, i.e. the zero matrix, so with the strict bound on Y off the top pair M is
    the only minimum (Candès & Recht 2009, Lemma 3.1)."""
    rng = np.random.default_rng(0)
    s, t = rng.choice([-1.0, 1.0], 12), rng.choice([-1.0, 1.0], 12)
    mask = np.eye(12, dtype=bool) | np.roll(np.eye(12, dtype=bool), 1, axis=1)
    completion = min_nuclear_norm_completion(np.outer(s, t), mask)
    assert completion.converged
    np.testing.assert_allclose(completion.matrix, np.outer(s, t), atol=1e-6)
    assert nuclear_norm(completion.matrix) == pytest.approx(12.0, rel=1e-9)


def test_min_nuclear_norm_completion_of_six_decoupled_2x2_problems_at_d_12() -> None:
    """The one-missing-entry problem above, six times on the diagonal blocks of a 12×12 matrix whose off-block entries
    are observed zeros: X is then block diagonal, ‖X‖* is the sum over blocks, and each block [[1, b], [b, x]] has its
    closed-form minimum x = 1, ‖·‖* = 2b for b ≥ 1 (√((1−x)² + 4b²) below x = b², 1 + x ≥ 2b above)."""
    bs = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
    values = np.zeros((12, 12))
    mask = np.ones((12, 12), dtype=bool)
    for k, b in enumerate(bs):
        values[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = [[1.0, b], [b, 0.0]]
        mask[2 * k + 1, 2 * k + 1] = False
    completion = min_nuclear_norm_completion(values, mask)
    assert completion.converged
    np.testing.assert_allclose(completion.matrix[~mask], np.ones(6), atol=1e-6)
    assert nuclear_norm(completion.matrix) == pytest.approx(2 * sum(bs), rel=1e-9)


def _issue_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Ten 12×12 rank-3 targets observed on 100 random entries, drawn as a recovery study draws them (``run_batch``
    seeds ``sample_problem`` with 2s): where the fixed-ρ ADMM hit its 20 000-step cap 8 times (issue 16, item 7)."""
    target = MatrixTarget(family="matrix", d=12, rank=3)
    truth = target_matrix(target).numpy()
    cases = []
    for seed in range(10):
        problem = sample_problem(target, 100, torch.Generator().manual_seed(2 * seed), test_points=10)
        mask = np.zeros((12, 12), dtype=bool)
        mask[tuple(np.array(problem.observed).T)] = True
        cases.append((truth, mask))
    return cases


@pytest.mark.slow
def test_min_nuclear_norm_completion_converges_with_a_certificate_at_d_12() -> None:
    """Weak duality: for any Y that is zero off Ω, ⟨Y, M⟩/‖Y‖₂ ≤ ‖X‖* for every completion X, so it bounds the
    minimum from below whoever computed Y. At a stop, the prox step's subgradient Y' ∈ ∂‖X‖* (‖Y'‖₂ ≤ 1) differs from
    the returned Y by the dual residual (≤ tol) and the returned Z from X by the primal one (≤ tol·‖M_Ω‖), which
    bounds the relative gap by (2√d + 2)·tol; the fixed-ρ loop left gaps up to 6e-6 at its cap."""
    tol, d = 1e-10, 12
    for values, mask in _issue_cases():
        completion = min_nuclear_norm_completion(values, mask, tol=tol)
        assert completion.converged and completion.iterations <= 20_000
        assert np.array_equal(completion.matrix[mask], values[mask])
        assert not completion.dual[~mask].any()
        norm = nuclear_norm(completion.matrix)
        bound = float((completion.dual * values).sum()) / float(np.linalg.norm(completion.dual, 2))
        assert 0 <= (norm - bound) / norm <= (2 * math.sqrt(d) + 2) * tol


def test_min_nuclear_norm_completion_reports_hitting_its_cap() -> None:
    values, mask = _issue_cases()[1]
    completion = min_nuclear_norm_completion(values, mask, max_iter=5)
    assert not completion.converged
    assert completion.iterations == 5
    assert np.array_equal(completion.matrix[mask], values[mask])  # still a completion, just not the minimum


def test_imbalance_ratio_by_hand() -> None:
    """x̃ = (1, 1), (2, 1), y = (1, −1): β = (−1, 0), ‖β‖ = 1. a = (2, 0.5), w̃ = ((1, 3), (−2, 0)):
    C = (2 − 1, 0.5 + 2) = (1, 2.5)."""
    x = torch.tensor([[1.0, 1.0], [2.0, 1.0]], dtype=F64)
    y = torch.tensor([1.0, -1.0], dtype=F64)
    a = torch.tensor([2.0, 0.5], dtype=F64)
    w = torch.tensor([[1.0, 3.0], [-2.0, 0.0]], dtype=F64)
    expected = torch.tensor([1.0, 2.5], dtype=F64) / math.sqrt(7.25)
    torch.testing.assert_close(imbalance_ratio(a, w, x, y), expected)


@pytest.mark.parametrize(
    ("a", "w", "expected"),
    [
        ([0.3, 0.7], [[1, 1], [1, 1]], "all_equal"),
        ([0.3, -0.7], [[1, 1], [-1, -1]], "all_equal"),  # tanh is odd: (−a, −w̃) is the same neuron
        ([1.0, 0.0], [[1, 1], [0.4, 0.4]], "one_alive"),  # dead by its output weight
        ([-1.0, 0.5], [[-1, -1], [0, 0]], "one_alive"),  # dead by its input weights
        ([0.5, 0.5], [[1, 1], [2, 2]], "none"),
    ],
)
def test_branch_of_the_target_set(a: list[float], w: list[list[float]], expected: str) -> None:
    """Target neuron a₀ = 1, w̃₀ = (1, 1)."""
    got = branch(torch.tensor(a, dtype=F64), torch.tensor(w, dtype=F64), 1.0, torch.tensor([1.0, 1.0], dtype=F64))
    assert got == expected


def test_lifting_a_local_minimum_keeps_it_critical_and_positive_semidefinite() -> None:
    """A width-1 network cannot fit a two-neuron target: L-BFGS stops at a local minimum with positive loss. Lifted in
    depth it computes the same outputs, stays critical, and (module docstring) its Hessian stays PSD."""
    x = torch.linspace(-2, 2, 9, dtype=F64)[:, None]
    y = (torch.tanh(2 * x + 2) - torch.tanh(2 * x - 2))[:, 0]  # a bump: one monotone neuron cannot fit it
    torch.manual_seed(0)
    shallow = TwoLayerTanh(1, 1, bias=True)
    optimizer = torch.optim.LBFGS(
        shallow.parameters(), max_iter=2000, tolerance_grad=1e-13, tolerance_change=0, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = ((shallow(x) - y) ** 2).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    result = lifting_check(shallow, x, y)
    assert float(((shallow(x) - y) ** 2).mean().detach()) > 1e-2  # a genuine non-global critical point
    assert result.grad_norm_shallow < 1e-7
    assert result.hessian_min_shallow > 0  # a strict local minimum of the shallow network
    assert result.output_change < 1e-12
    # the lifted gradient is the shallow one pushed through the inserted layer: as small, up to a constant
    assert result.grad_norm_lifted < 10 * result.grad_norm_shallow
    assert result.hessian_min_lifted > -1e-7
    assert (result.n_params_shallow, result.n_params_lifted) == (3, 5)


def test_lifting_the_origin_saddle_has_the_closed_form_negative_eigenvalue() -> None:
    """At a = W = b = 0: λ_min = −(2/n)‖(Σ yⱼhⱼ, Σ yⱼ)‖ with h = x (shallow) and h = x + c (lifted), c = 1 − min x."""
    x = torch.tensor([[-1.0, 0.5], [0.3, 2.0], [1.5, -0.7], [0.2, 0.1]], dtype=F64)
    y = torch.tensor([1.0, -0.5, 2.0, 0.7], dtype=F64)
    shallow = TwoLayerTanh(2, 3, bias=True)
    with torch.no_grad():
        for p in shallow.parameters():
            p.zero_()
    c = 1.0 - x.min(dim=0).values
    n = len(y)

    def expected(h: torch.Tensor) -> float:
        return -2 / n * float(torch.cat([y @ h, y.sum()[None]]).norm())

    result = lifting_check(shallow, x, y)
    assert result.grad_norm_shallow == result.grad_norm_lifted == 0.0
    assert result.hessian_min_shallow == pytest.approx(expected(x), rel=1e-12)
    assert result.hessian_min_lifted == pytest.approx(expected(x + c), rel=1e-12)
    assert result.hessian_min_lifted < result.hessian_min_shallow < 0


def test_recovery_probe_modules_do_not_import_ray_or_the_results_stack() -> None:
    names = ["completion", "descent", "lifting", "neuron", "recovery", "students", "targets"]
    imports = "; ".join(f"import models.probes.{name}" for name in names)
    check = "import sys; print([m for m in ('ray', 'pandas', 'pyarrow') if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"

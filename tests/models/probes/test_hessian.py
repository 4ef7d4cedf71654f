"""Hessian-vector products and λ_max against closed-form Hessians (float64)."""

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from models.probes.hessian import flatten, hessian_operator, unflatten
from models.probes.lanczos import lanczos

N, D, C = 64, 5, 3


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Generator]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=generator, dtype=torch.float64), generator


def _linear_regression() -> tuple[Callable[[], torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """L = (1/n)‖Xw − y‖²: H = (2/n) XᵀX."""
    x, generator = _data()
    y = torch.randn(N, generator=generator, dtype=torch.float64)
    w = torch.randn(D, generator=generator, dtype=torch.float64, requires_grad=True)
    return lambda: ((x @ w - y) ** 2).mean(), [w], 2 * x.T @ x / N


def _logistic_regression() -> tuple[Callable[[], torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """L = mean log(1 + e^{−z}) style BCE on logits z = Xw: H = (1/n) Xᵀ diag(σ(z)(1 − σ(z))) X."""
    x, generator = _data(1)
    y = (torch.rand(N, generator=generator) < 0.5).double()
    w = torch.randn(D, generator=generator, dtype=torch.float64, requires_grad=True)
    p = torch.sigmoid(x @ w.detach())
    hessian = x.T @ (x * (p * (1 - p))[:, None]) / N
    return lambda: nn.functional.binary_cross_entropy_with_logits(x @ w, y), [w], hessian


def _softmax_regression() -> tuple[Callable[[], torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Softmax cross-entropy with logits W x, W ∈ ℝ^{C×D} (row-major vec): H = (1/n) Σ (diag p − ppᵀ) ⊗ xxᵀ."""
    x, generator = _data(2)
    y = torch.randint(C, (N,), generator=generator)
    w = torch.randn(C, D, generator=generator, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(x @ w.detach().T, dim=1)
    hessian = sum(torch.kron(torch.diag(p[i]) - torch.outer(p[i], p[i]), torch.outer(x[i], x[i])) for i in range(N))
    return lambda: nn.functional.cross_entropy(x @ w.T, y), [w], hessian / N


PROBLEMS = {"linear": _linear_regression, "logistic": _logistic_regression, "softmax": _softmax_regression}


@pytest.mark.parametrize("name", PROBLEMS)
def test_hvp_and_lambda_max_match_closed_form(name: str) -> None:
    loss_fn, params, hessian = PROBLEMS[name]()
    operator = hessian_operator(loss_fn, params)
    n = hessian.shape[0]
    for seed in range(3):
        v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        hv = flatten(operator.hvp(unflatten(v, params)))
        torch.testing.assert_close(hv, hessian @ v, rtol=1e-8, atol=1e-12)
    result = lanczos(lambda v: flatten(operator.hvp(unflatten(v, params))), n, k=1, tol=1e-8)
    expected = float(torch.linalg.eigvalsh(hessian)[-1])
    assert float(result.eigenvalues[0]) == pytest.approx(expected, rel=1e-6)


def test_quadratic_hvp_is_exactly_a() -> None:
    """L = ½θᵀAθ over two parameter tensors: H v = A v for the concatenated vector."""
    generator = torch.Generator().manual_seed(5)
    m = torch.randn(7, 7, generator=generator, dtype=torch.float64)
    a = m + m.T
    first = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
    second = torch.randn(2, 2, generator=generator, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        theta = torch.cat([first, second.reshape(-1)])
        return 0.5 * theta @ a @ theta

    operator = hessian_operator(loss, [first, second])
    v = torch.randn(7, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(flatten(operator.hvp(unflatten(v, [first, second]))), a @ v, rtol=1e-12, atol=0)
    theta = torch.cat([first, second.reshape(-1)]).detach()
    torch.testing.assert_close(flatten(operator.gradient), a @ theta, rtol=1e-12, atol=0)


def _mlp_problem() -> tuple[nn.Module, Callable[[], torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    return model, lambda: ((model(x) - y) ** 2).mean(), x, y


def _explicit_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [name for name, _ in model.named_parameters()]
    like = [p.detach() for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, unflatten(flat, like), strict=True))
        return ((functional_call(model, params, (x,)) - y) ** 2).mean()

    return torch.autograd.functional.hessian(loss_of, flatten(like))


def test_mlp_lanczos_top3_matches_full_hessian() -> None:
    """A tanh MLP (49 parameters): Lanczos top-3 of the HVP operator = top-3 of the full autograd Hessian."""
    model, loss_fn, x, y = _mlp_problem()
    params = list(model.parameters())
    expected = torch.linalg.eigvalsh(_explicit_hessian(model, x, y)).flip(0)[:3]
    operator = hessian_operator(loss_fn, params)
    n = sum(p.numel() for p in params)
    result = lanczos(lambda v: flatten(operator.hvp(unflatten(v, params))), n, k=3, tol=1e-10)
    assert result.converged
    torch.testing.assert_close(result.eigenvalues, expected, rtol=1e-6, atol=0)


def test_finite_difference_hvp_matches_double_backward() -> None:
    """Central differences of gradients agree with double backward to 1e-5 relative, and leave θ untouched."""
    model, loss_fn, _, _ = _mlp_problem()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    vectors = [
        unflatten(torch.randn(49, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), params)
        for seed in range(3)
    ]
    # Exact products first: the finite difference moves the parameters, which invalidates an autograd graph.
    exact = hessian_operator(loss_fn, params, method="autograd")
    wanted = [flatten(exact.hvp(v)) for v in vectors]
    approx = hessian_operator(loss_fn, params, method="finite_difference")
    for v, want in zip(vectors, wanted, strict=True):
        got = flatten(approx.hvp(v))
        assert float((got - want).norm() / want.norm()) < 1e-5
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.detach(), b)
    np.testing.assert_allclose(flatten(approx.gradient).numpy(), flatten(exact.gradient).numpy(), rtol=1e-12)


def test_unused_and_linear_parameters_have_zero_curvature() -> None:
    """A parameter the loss ignores and one it is linear in both get zero rows of H (no autograd error)."""
    used = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    linear = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    unused = torch.tensor([4.0], dtype=torch.float64, requires_grad=True)
    operator = hessian_operator(lambda: (used**2).sum() + 5 * linear.sum(), [used, linear, unused])
    hv = operator.hvp([torch.ones(2, dtype=torch.float64), torch.ones(1), torch.ones(1)])
    assert [t.tolist() for t in hv] == [[2.0, 2.0], [0.0], [0.0]]

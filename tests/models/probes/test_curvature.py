"""The curvature probe row against closed forms: quadratics, diagonal Hessians, explicit D·H, and thresholds."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from models.probes.curvature import curvature_probe, precondition, stability_thresholds
from models.probes.lanczos import lanczos

BETA2, EPS = 0.999, 1e-8


def _adam_state(denominators: torch.Tensor, *, step: int, lr: float, beta1: float) -> dict:
    """A state dict whose preconditioner is exactly 1/denominators: exp_avg_sq = (p − ε)²·(1 − β2^t)."""
    group = {"params": [0], "lr": lr, "betas": (beta1, BETA2), "eps": EPS, "amsgrad": False}
    second = (denominators - EPS) ** 2 * (1 - BETA2**step)
    state = {"step": torch.tensor(float(step)), "exp_avg": torch.zeros_like(second), "exp_avg_sq": second}
    return {"state": {0: state}, "param_groups": [group]}


def test_thresholds() -> None:
    """2/η and (2 + 2β1)/((1 − β1)η): 38/η at β1 = 0.9, and both 2/η without momentum."""
    assert stability_thresholds(0.01, 0.9) == pytest.approx((200.0, 3800.0), rel=1e-12)
    assert stability_thresholds(0.5, 0.0) == pytest.approx((4.0, 4.0), rel=1e-12)
    with pytest.raises(ValueError):
        stability_thresholds(0.01, 1.0)


@pytest.mark.parametrize("beta1", [0.0, 0.5, 0.9])
def test_momentum_threshold_is_the_stability_edge(beta1: float) -> None:
    """torch's SGD with momentum β1 and dampening β1 is the EMA momentum Adam uses (m ← β1m + (1 − β1)g).

    On L = λθ²/2 it must converge just below ηλ = (2 + 2β1)/(1 − β1) and diverge just above it.
    """
    lr = 0.1
    edge = stability_thresholds(lr, beta1)[1] * lr
    final = {}
    for factor in (0.98, 1.02):
        theta = torch.ones(1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.SGD([theta], lr=lr, momentum=beta1, dampening=beta1)
        curvature = factor * edge / lr
        for _ in range(3000):
            optimizer.zero_grad()
            (0.5 * curvature * theta**2).sum().backward()
            optimizer.step()
            if abs(float(theta.detach())) > 1e6:
                break
        final[factor] = abs(float(theta.detach()))
    assert final[0.98] < 1e-6
    assert final[1.02] > 1e6


def test_diagonal_hessian_with_fixed_preconditioner_gives_max_h_over_p() -> None:
    """H = diag(h), D = diag(1/p): D·H = diag(h/p), so λ_max(Ĥ) = max h/p — both via ``precondition`` and through a
    probe whose Adam state encodes √v̂ + ε = p."""
    h = torch.tensor([5.0, 1.0, 3.0, -2.0, 0.5], dtype=torch.float64)
    p = torch.tensor([10.0, 0.1, 1.0, 0.01, 2.0], dtype=torch.float64)
    direct = lanczos(precondition(lambda v: h * v, 1 / p), 5, k=2, tol=1e-12)
    np.testing.assert_allclose(direct.eigenvalues.numpy(), [10.0, 3.0], rtol=1e-12)

    theta = torch.tensor([1.0, -1.0, 2.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    row = curvature_probe(
        lambda: 0.5 * (h * theta**2).sum(), [theta], _adam_state(p, step=7, lr=0.01, beta1=0.9), top_k=2, tol=1e-12
    )
    assert row.lambda_max_precond == pytest.approx(10.0, rel=1e-9)
    assert row.top_eigenvalues_precond == pytest.approx((10.0, 3.0), rel=1e-9)
    assert row.lambda_max_hessian == pytest.approx(5.0, rel=1e-12)
    assert row.threshold_momentum == pytest.approx(3800.0)


def test_quadratic_probe_matches_closed_forms() -> None:
    """L = ½θᵀAθ with A = QΛQᵀ, g = Aθ, H = A and a given D:
    λ(H) = Λ; λ(Ĥ) = eig(D·A); gᵀHg/‖g‖² = θᵀA³θ/θᵀA²θ; uᵀHu/uᵀD⁻¹u with u = D·g; cos = |gᵀq₁|/‖g‖."""
    generator = torch.Generator().manual_seed(0)
    n = 30
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([9.0, 7.0, 5.0]), torch.linspace(-1.0, 2.0, n - 3)]).double()
    a = q @ torch.diag(spectrum) @ q.T
    denominators = torch.rand(n, generator=generator, dtype=torch.float64) * 2 + 0.1
    d = 1 / denominators
    theta = torch.randn(n, generator=generator, dtype=torch.float64, requires_grad=True)

    row = curvature_probe(
        lambda: 0.5 * theta @ a @ theta,
        [theta],
        _adam_state(denominators, step=100, lr=0.05, beta1=0.9),
        top_k=3,
        tol=1e-10,
    )

    t = theta.detach()
    g = a @ t
    u = d * g
    precond = np.sort(np.linalg.eigvals((torch.diag(d) @ a).numpy()).real)[::-1]
    assert row.top_eigenvalues_hessian == pytest.approx((9.0, 7.0, 5.0), rel=1e-9)
    assert row.top_eigenvalues_precond == pytest.approx(tuple(precond[:3]), rel=1e-8)
    assert row.dir_curvature == pytest.approx(float(t @ a @ a @ a @ t / (t @ a @ a @ t)), rel=1e-12)
    assert row.dir_curvature_precond == pytest.approx(float(u @ a @ u / (u @ (u / d))), rel=1e-12)
    assert row.dir_curvature_precond <= row.lambda_max_precond
    assert row.cosine_hessian == pytest.approx(abs(float(g @ q[:, 0])) / float(g.norm()), rel=1e-6)
    assert row.grad_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert row.loss == pytest.approx(float(0.5 * t @ a @ t), rel=1e-12)
    assert (row.lr, row.beta1) == (0.05, 0.9)
    assert row.threshold_gd == pytest.approx(40.0) and row.threshold_momentum == pytest.approx(760.0)
    assert row.converged


def test_gradient_on_the_top_eigenvector_has_cosine_one() -> None:
    """θ along q₁ makes g = λ₁θ an eigenvector: cosine 1 and directional curvature = λ_max."""
    generator = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0, 0.5, -1.0], dtype=torch.float64)) @ q.T
    theta = (3 * q[:, 0]).clone().requires_grad_(True)
    row = curvature_probe(
        lambda: 0.5 * theta @ a @ theta, [theta], _adam_state(torch.ones(6).double(), step=1, lr=0.1, beta1=0.0)
    )
    assert row.cosine_hessian == pytest.approx(1.0, abs=1e-8)
    assert row.dir_curvature == pytest.approx(4.0, rel=1e-12)


def _mlp_after_adamw_steps() -> tuple[nn.Module, torch.optim.AdamW, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    for _ in range(6):
        x = torch.randn(16, 3, dtype=torch.float64)
        optimizer.zero_grad()
        ((model(x) - torch.sin(x).sum(1, keepdim=True)) ** 2).mean().backward()
        optimizer.step()
    x = torch.randn(32, 3, dtype=torch.float64)
    return model, optimizer, x, torch.sin(x).sum(1, keepdim=True)


def _explicit_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, [s.numel() for s in shapes])
        params = {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes, strict=True)}
        return ((functional_call(model, params, (x,)) - y) ** 2).mean()

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(loss_of, flat)


def test_precond_lambda_max_matches_explicit_product_after_real_adamw_steps() -> None:
    """After 6 AdamW steps (β1 = 0.9, decay 0.1): D = 1/(√(exp_avg_sq/(1 − β2^t)) + ε) from the optimizer's state,
    H from torch.autograd.functional.hessian; the eigenvalues of the non-symmetric D·H (numpy) are the probe's."""
    model, optimizer, x, y = _mlp_after_adamw_steps()
    params = list(model.parameters())
    d = torch.cat(
        [
            1 / ((s["exp_avg_sq"] / (1 - 0.99 ** float(s["step"]))).sqrt() + 1e-8).reshape(-1)
            for s in (optimizer.state[p] for p in params)
        ]
    )
    hessian = _explicit_hessian(model, x, y)
    expected = np.sort(np.linalg.eigvals((torch.diag(d) @ hessian).numpy()).real)[::-1][:3]

    row = curvature_probe(lambda: ((model(x) - y) ** 2).mean(), params, optimizer, top_k=3, tol=1e-10)
    assert row.top_eigenvalues_precond == pytest.approx(tuple(expected), rel=1e-6)
    assert row.lambda_max_hessian == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-6)
    assert row.threshold_momentum == pytest.approx(38 / 0.01, rel=1e-12)
    assert row.hvps <= 2 * sum(p.numel() for p in params) + 2


def test_finite_difference_probe_agrees_with_autograd() -> None:
    model, optimizer, x, y = _mlp_after_adamw_steps()
    params = list(model.parameters())
    exact = curvature_probe(lambda: ((model(x) - y) ** 2).mean(), params, optimizer, tol=1e-8)
    approx = curvature_probe(
        lambda: ((model(x) - y) ** 2).mean(), params, optimizer, tol=1e-8, method="finite_difference"
    )
    assert approx.lambda_max_hessian == pytest.approx(exact.lambda_max_hessian, rel=1e-5)
    assert approx.lambda_max_precond == pytest.approx(exact.lambda_max_precond, rel=1e-5)
    assert approx.dir_curvature_precond == pytest.approx(exact.dir_curvature_precond, rel=1e-5)

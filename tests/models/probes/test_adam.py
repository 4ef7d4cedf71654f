"""Adam's preconditioner and per-step statistics against what torch's Adam actually did, and closed forms."""

import copy

import pytest
import torch
from torch import nn

from models.probes.adam import adam_preconditioner, adam_step_stats

LR = 1e-2


def _trained(optimizer_cls: type[torch.optim.Adam], **options: object) -> tuple:
    """A tanh MLP after 5 real steps with β1 = 0, returning what the last step did.

    With β1 = 0, m̂ = g, so the last update is θ' = θ(1 − η·λ_decoupled) − η·g·D and D = (θ(1 − ηλ) − θ')/(η g)
    can be read off the parameters themselves — torch's behaviour, not our reading of its source.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    optimizer = optimizer_cls(model.parameters(), lr=LR, betas=(0.0, 0.95), eps=1e-3, **options)
    for _ in range(5):
        x = torch.randn(16, 3, dtype=torch.float64)
        optimizer.zero_grad()
        ((model(x) - x.sum(1, keepdim=True)) ** 2).mean().backward()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.step()
    decay = options.get("weight_decay", 0.0) if optimizer_cls is torch.optim.AdamW else 0.0
    applied = [
        (b * (1 - LR * decay) - p.detach()) / (LR * p.grad) for b, p in zip(before, model.parameters(), strict=True)
    ]
    return model, optimizer, applied


CASES = {
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.1}),
    "adamw-amsgrad": (torch.optim.AdamW, {"weight_decay": 0.1, "amsgrad": True}),
    "adam": (torch.optim.Adam, {}),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("source", ["optimizer", "state_dict"])
def test_preconditioner_is_the_one_torch_applied(case: str, source: str) -> None:
    optimizer_cls, options = CASES[case]
    model, optimizer, applied = _trained(optimizer_cls, **options)
    state = optimizer if source == "optimizer" else copy.deepcopy(optimizer.state_dict())
    preconditioner = adam_preconditioner(state, list(model.parameters()))
    for got, want in zip(preconditioner.diagonal, applied, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=0)
    assert preconditioner.lr == LR
    assert preconditioner.beta1 == 0.0


def test_preconditioner_refuses_what_it_cannot_read() -> None:
    model, optimizer, _ = _trained(torch.optim.AdamW)
    params = list(model.parameters())
    with pytest.raises(ValueError, match="optimizer's order"):
        adam_preconditioner(optimizer, params[::-1])
    with pytest.raises(TypeError, match="Adam"):
        adam_preconditioner(torch.optim.SGD(params, lr=0.1), params)
    fresh = torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}])
    with pytest.raises(ValueError, match="differ in lr"):
        adam_preconditioner(fresh, params)
    with pytest.raises(ValueError, match="no Adam state"):
        adam_preconditioner(torch.optim.Adam(params), params)


def _two_steps(scales: torch.Tensor, beta2: float) -> tuple[torch.Tensor, torch.optim.Adam, torch.Tensor]:
    """Linear loss Σ sᵢθᵢ, then Σ cᵢsᵢθᵢ: g₁ = s, g₂ = c⊙s. Returns θ, the optimizer and the last update."""
    generator = torch.Generator().manual_seed(0)
    s = torch.randn(scales.numel(), generator=generator, dtype=torch.float64)
    s[:3] = 0.0  # three coordinates that never see a gradient: v̂ = 0, in no regime
    theta = torch.zeros_like(s, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=LR, betas=(0.9, beta2), eps=1e-12)
    for c in (torch.ones_like(scales), scales):
        optimizer.zero_grad()
        (c * s * theta).sum().backward()
        before = theta.detach().clone()
        optimizer.step()
    return theta, optimizer, theta.detach() - before


def test_step_stats_match_the_two_step_closed_form() -> None:
    """After g₁ = s and g₂ = c⊙s: v̂₂ = s²(β2 + c²)/(1 + β2), so g₂²/v̂₂ = c²(1 + β2)/(β2 + c²) per coordinate.

    With c² = β2·r/(1 + β2 − r) the ratio is exactly r: we pick r = 0.001·k for k = 1..n−3 (uniform spacing), so the
    median and the share below ρ are known; the update RMS is the RMS of the step torch took.
    """
    n, beta2 = 1003, 0.99
    ratios = 0.001 * torch.arange(1, n - 2, dtype=torch.float64)
    scales = torch.cat([torch.ones(3, dtype=torch.float64), (beta2 * ratios / (1 + beta2 - ratios)).sqrt()])
    theta, optimizer, update = _two_steps(scales, beta2)
    stats = adam_step_stats(optimizer, rho=0.25)
    assert stats.critical_share == pytest.approx(249 / 1000, abs=1e-12)  # r = 0.001..0.249 are below 0.25
    assert stats.median_g2_over_v == pytest.approx(0.5005, rel=1e-9)
    assert stats.update_rms == pytest.approx(float(update.square().mean().sqrt()), rel=1e-9)
    assert stats.grad_norm == pytest.approx(float(theta.grad.norm()), rel=1e-12)
    assert stats.coordinates == n


def test_sampled_median_on_a_large_parameter() -> None:
    """Same closed form on 600k coordinates with ratios uniform on (0, 1): the sampled median (2^16 draws) is within
    0.01 of 0.5 while the critical share stays exact."""
    n, beta2 = 600_003, 0.99
    ratios = (torch.arange(n - 3, dtype=torch.float64) + 0.5) / (n - 3)
    scales = torch.cat([torch.ones(3, dtype=torch.float64), (beta2 * ratios / (1 + beta2 - ratios)).sqrt()])
    _, optimizer, _ = _two_steps(scales, beta2)
    stats = adam_step_stats(optimizer, rho=0.1, max_samples=2**16)
    assert stats.median_g2_over_v == pytest.approx(0.5, abs=0.01)
    assert stats.critical_share == pytest.approx(0.1, abs=1e-5)

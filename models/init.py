"""Initialization schemes: a rate γ (std = fan_in^(−γ)) or a fixed std, applied to every weight matrix and embedding.

Following arXiv:2505.23013 and its group's code (``std_rate`` per linear layer): a weight matrix with fan-in n is drawn
from N(0, (n^(−γ))²); embeddings (token and position) and the LM head use d_model^(−γ), the LM head because its fan-in
is d_model and the embeddings by the paper's convention. γ = 0.5 is LeCun-like; larger γ means a smaller init. The fixed
std baseline (GPT-2's 0.02) draws every weight matrix and embedding from N(0, σ²). Biases and norm gains keep the
defaults `transformers` gave them (zeros and ones). Tied weights are drawn once.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def init_std(fan_in: int, *, rate: float | None, std: float | None) -> float:
    """The std for a matrix with this fan-in: fan_in^(−rate), or the fixed `std`."""
    if (rate is None) == (std is None):
        raise ValueError("give exactly one of rate or std")
    return std if std is not None else float(fan_in) ** (-rate)


@torch.no_grad()
def apply_init(model: nn.Module, *, d_model: int, rate: float | None, std: float | None, seed: int) -> None:
    """Redraw every weight matrix and embedding of `model` in place, reproducibly from `seed`."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            weight, fan_in = module.weight, d_model
        elif isinstance(module, nn.Linear):
            weight, fan_in = module.weight, module.in_features
        elif isinstance(module, Conv1D):  # GPT-2 stores (in, out)
            weight, fan_in = module.weight, module.weight.shape[0]
        else:
            continue
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        sigma = init_std(fan_in, rate=rate, std=std)
        draw = torch.randn(weight.shape, generator=generator, dtype=torch.float32) * sigma
        weight.copy_(draw.to(weight.device, weight.dtype))

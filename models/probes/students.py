"""Student models of the recovery experiments, as plain float64 ``nn.Module``s mapping inputs (n, d_in) to outputs (n,).

Each family of ``sweeps.recovery`` (``matrix_factorization``, ``fc_tanh``, ``cnn1d``, ``toy``, ``affine``,
``diagonal``) is one small module here; ``build_student`` makes one from its spec. Matrix factorization reads an
entry (i, j) from the concatenated one-hot vectors (eᵢ, eⱼ) ∈ ℝ^{2d}, so every student is a function of a
real input row and ``models.probes.rank.model_rank`` applies to all of them unchanged. Parameters are later swapped
for per-seed tensors with ``torch.func.functional_call``; the values set here only fix names and shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sweeps.recovery import (
    AffineStudent,
    Cnn1dStudent,
    DiagonalStudent,
    FcTanhStudent,
    MatrixFactorizationStudent,
    Student,
    ToyStudent,
)

F64 = torch.float64


class MatrixFactorization(nn.Module):
    """f(eᵢ, eⱼ) = (AB)ᵢⱼ with A, B ∈ ℝ^{d×d}."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(d, d, dtype=F64))
        self.b = nn.Parameter(torch.zeros(d, d, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        d = self.a.shape[0]
        return ((x[:, :d] @ self.a) * (x[:, d:] @ self.b.T)).sum(-1)

    def matrix(self) -> Tensor:
        return self.a @ self.b


class TwoLayerTanh(nn.Module):
    """Σᵢ aᵢ tanh(wᵢᵀx [+ bᵢ]): hidden biases optional, no output bias."""

    def __init__(self, d: int, width: int, *, bias: bool) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, width, bias=bias, dtype=F64)
        self.out = nn.Linear(width, 1, bias=False, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(x)))[:, 0]


class Cnn1d(nn.Module):
    """``channels`` kernels of size s shared over the d + 1 − s valid positions (stride 1, no padding), [a bias per
    channel,] tanh, and one readout weight per (channel, position), summed; no output bias."""

    def __init__(self, d: int, channels: int, kernel: int, *, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, channels, kernel, bias=bias, dtype=F64)
        self.readout = nn.Linear(channels * (d + 1 - kernel), 1, bias=False, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(torch.tanh(self.conv(x[:, None, :])).flatten(1))[:, 0]


class Toy(nn.Module):
    """θ₀ + θ₁x₁ + θ₂θ₃x₂ (d = 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(4, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        t = self.theta
        return t[0] + t[1] * x[:, 0] + t[2] * t[3] * x[:, 1]


class Affine(nn.Module):
    """θ₀ + θᵀx."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(d + 1, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return self.theta[0] + x @ self.theta[1:]


class DeepDiagonal(nn.Module):
    """Σᵢ (∏ₗ w_{l,i}) xᵢ with ``depth`` factors per coordinate."""

    def __init__(self, d: int, depth: int) -> None:
        super().__init__()
        self.factors = nn.Parameter(torch.zeros(depth, d, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.factors.prod(dim=0)


def build_student(spec: Student, d: int) -> nn.Module:
    """The student of ``spec`` for inputs of dimension ``d`` (the matrix side for matrix factorization)."""
    if isinstance(spec, MatrixFactorizationStudent):
        return MatrixFactorization(d)
    if isinstance(spec, FcTanhStudent):
        return TwoLayerTanh(d, spec.width, bias=spec.bias)
    if isinstance(spec, Cnn1dStudent):
        return Cnn1d(d, spec.channels, spec.kernel, bias=spec.bias)
    if isinstance(spec, ToyStudent):
        return Toy()
    if isinstance(spec, AffineStudent):
        return Affine(d)
    if isinstance(spec, DiagonalStudent):
        return DeepDiagonal(d, spec.depth)
    raise TypeError(f"unknown student spec {spec!r}")

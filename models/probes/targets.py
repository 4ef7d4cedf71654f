"""Target functions of the recovery experiments and the data drawn from them: n training points, fresh test points.

A ``Problem`` holds one seed's data: training inputs and labels (the n samples the student sees) and test inputs and
labels (fresh points it never sees). For a matrix target the inputs are one-hot pairs (eᵢ, eⱼ) (see
``models.probes.students``): the training points are the n observed entries — uniformly random without
replacement, or the textbook order (first row, first column, then the rest row by row) — and the test points are all
d² entries. For function targets the inputs are x ~ N(0, I_d), or for a ``grid`` neuron target n evenly spaced
training points on [low, high] and uniform test points there. Labels are the exact target values (no noise).

The target itself never depends on the run's seed (a matrix target is drawn from its own ``seed``), so runs of a
study differ only in their data and initialization.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sweeps.recovery import ConvTanhTarget, LinearTarget, MatrixTarget, NeuronTarget, Target

F64 = torch.float64


@dataclass(frozen=True)
class Problem:
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    observed: tuple[tuple[int, int], ...] = ()
    """Matrix targets: the observed (row, column) entries, in the order they were revealed."""


def target_matrix(target: MatrixTarget) -> Tensor:
    """UVᵀ with U, V ∈ ℝ^{d×r} standard Gaussian from the target's own seed (rank r almost surely)."""
    g = torch.Generator().manual_seed(target.seed)
    u = torch.randn(target.d, target.rank, generator=g, dtype=F64)
    return u @ torch.randn(target.d, target.rank, generator=g, dtype=F64).T


def textbook_order(d: int) -> list[tuple[int, int]]:
    """First row, then the rest of the first column, then the remaining entries row by row."""
    first_row = [(0, j) for j in range(d)]
    first_column = [(i, 0) for i in range(1, d)]
    rest = [(i, j) for i in range(1, d) for j in range(1, d)]
    return first_row + first_column + rest


def one_hot_pairs(entries: list[tuple[int, int]], d: int) -> Tensor:
    eye = torch.eye(d, dtype=F64)
    return torch.stack([torch.cat([eye[i], eye[j]]) for i, j in entries]).reshape(len(entries), 2 * d)


def evaluate(target: Target, x: Tensor) -> Tensor:
    """f*(x) for a function target."""
    if isinstance(target, ConvTanhTarget):
        k = len(target.kernel)
        kernel = torch.tensor(target.kernel, dtype=F64)
        return sum(torch.tanh(x[:, s : s + k] @ kernel) for s in range(target.terms))  # type: ignore[return-value]
    if isinstance(target, NeuronTarget):
        return target.a * torch.tanh(x @ torch.tensor(target.w, dtype=F64) + target.b)
    if isinstance(target, LinearTarget):
        c = torch.tensor(target.coefficients, dtype=F64)
        return c[0] + x @ c[1:]
    raise TypeError(f"{type(target).__name__} is not a function target")


def sample_problem(target: Target, n: int, generator: torch.Generator, test_points: int) -> Problem:
    """One seed's training and test data (``generator`` carries the seed)."""
    if isinstance(target, MatrixTarget):
        d = target.d
        cells = [(i, j) for i in range(d) for j in range(d)]
        if target.observations == "textbook":
            observed = textbook_order(d)[:n]
        else:
            observed = [cells[int(k)] for k in torch.randperm(d * d, generator=generator)[:n]]
        m = target_matrix(target)
        every = one_hot_pairs(cells, d)
        return Problem(
            train_x=one_hot_pairs(observed, d),
            train_y=torch.stack([m[i, j] for i, j in observed]),
            test_x=every,
            test_y=m.reshape(-1),
            observed=tuple(observed),
        )
    d = target.input_dim
    if isinstance(target, NeuronTarget) and target.inputs == "grid":
        train_x = torch.linspace(target.low, target.high, n, dtype=F64)[:, None]
        test_x = target.low + (target.high - target.low) * torch.rand(test_points, 1, generator=generator, dtype=F64)
    else:
        train_x = torch.randn(n, d, generator=generator, dtype=F64)
        test_x = torch.randn(test_points, d, generator=generator, dtype=F64)
    return Problem(train_x, evaluate(target, train_x), test_x, evaluate(target, test_x))

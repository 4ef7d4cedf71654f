"""Empirical model rank of real torch models equals the closed forms, with an unambiguous singular-value gap."""

import pytest
import torch
from torch import nn

from models.probes.rank import (
    deep_diagonal_rank,
    matrix_factorization_rank,
    model_rank,
    optimistic_cnn,
    optimistic_deep_diagonal,
    optimistic_matrix_factorization,
    optimistic_toy_model,
    optimistic_two_layer_tanh,
    tanh_neuron_counts,
    toy_model_rank,
    two_layer_tanh_rank,
)

# A rank read off a Jacobian is only trustworthy when σ_r/σ_{r+1} is huge; every case here must clear this.
MIN_GAP = 1e6


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _assert_rank(model: nn.Module, inputs: torch.Tensor, expected: int) -> None:
    result = model_rank(model, inputs)
    assert result.rank == expected, result.singular_values
    assert result.rows > expected
    assert result.gap > MIN_GAP


class MatrixFactorization(nn.Module):
    """f(i, j) = (AB)_{ij}; input = concatenated one-hot rows (e_i, e_j), so f(u, v) = uᵀABv."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.a.shape[0]
        return ((x[:, :d] @ self.a) * (x[:, d:] @ self.b.T)).sum(-1)


def _all_entries(d: int) -> torch.Tensor:
    eye = torch.eye(d, dtype=torch.float64)
    return torch.stack([torch.cat([eye[i], eye[j]]) for i in range(d) for j in range(d)])


def _random_of_rank(d: int, r: int, generator: torch.Generator) -> torch.Tensor:
    left = torch.randn(d, r, generator=generator, dtype=torch.float64)
    return left @ torch.randn(r, d, generator=generator, dtype=torch.float64)


def test_matrix_factorization_all_25_rank_pairs() -> None:
    """4×4 factorization at random A, B of ranks r_A, r_B ∈ {0..4}: rank = 16 − (4 − r_A)(4 − r_B) (issue 5)."""
    generator = torch.Generator().manual_seed(0)
    inputs = _all_entries(4)
    for rank_a in range(5):
        for rank_b in range(5):
            model = MatrixFactorization(_random_of_rank(4, rank_a, generator), _random_of_rank(4, rank_b, generator))
            result = model_rank(model, inputs)
            assert result.rank == 16 - (4 - rank_a) * (4 - rank_b) == matrix_factorization_rank(4, rank_a, rank_b)
            assert result.gap > MIN_GAP


def test_matrix_factorization_rank_two_target_in_six_dimensions() -> None:
    """d = 6 at a generic point with rank A = rank B = 2: 2rd − r² = 24 − 4 = 20 (of 72 parameters)."""
    generator = torch.Generator().manual_seed(1)
    model = MatrixFactorization(_random_of_rank(6, 2, generator), _random_of_rank(6, 2, generator))
    _assert_rank(model, _all_entries(6), 20)
    assert optimistic_matrix_factorization(6, 2) == 20


class TwoLayerTanh(nn.Module):
    """Σᵢ aᵢ tanh(wᵢᵀx [+ bᵢ]) with the given weights."""

    def __init__(self, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None = None) -> None:
        super().__init__()
        self.hidden = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).double()
        self.out = nn.Linear(w.shape[0], 1, bias=False).double()
        with torch.no_grad():
            self.hidden.weight.copy_(w)
            self.out.weight.copy_(a[None, :])
            if b is not None:
                self.hidden.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


@pytest.mark.parametrize("k", range(6))
def test_two_layer_tanh_with_k_live_neurons(k: int) -> None:
    """d = 3, m = 5; neurons k+1..5 are dead (a = 0, w = 0) and add nothing, so the rank is k(d + 1) (issue 5)."""
    generator = torch.Generator().manual_seed(k)
    w = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    a = torch.randn(5, generator=generator, dtype=torch.float64)
    w[k:], a[k:] = 0.0, 0.0
    _assert_rank(TwoLayerTanh(w, a), _gaussian(60, 3), k * 4)
    assert optimistic_two_layer_tanh(k, 3) == k * 4


def test_two_layer_tanh_duplicates_and_a_dead_output_weight() -> None:
    """d = 3, m = 6: w₁, w₂, w₃ distinct with a ≠ 0; neuron 4 duplicates w₁, neuron 5 is −w₂ (tanh is odd: same
    functions), neuron 6 has a fresh w₆ but a₆ = 0. Classes with a live output weight: m_a = 3; nonzero input
    directions: m_w = 4 (w₁, w₂, w₃, w₆). Rank m_w + m_a·d = 4 + 9 = 13."""
    generator = torch.Generator().manual_seed(3)
    w = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    a = torch.randn(6, generator=generator, dtype=torch.float64)
    w[3], w[4], a[5] = w[0], -w[1], 0.0
    _assert_rank(TwoLayerTanh(w, a), _gaussian(80, 3), 13)
    assert tanh_neuron_counts(w, a) == (4, 3)
    assert two_layer_tanh_rank(4, 3, 3) == 13


def test_two_layer_tanh_duplicates_with_cancelling_output_weights() -> None:
    """A duplicated neuron whose output weights cancel (a₁ + a₂ = 0) still moves the function: ∂w₁f and ∂w₂f are
    a₁tanh'(w₁ᵀx)x and a₂tanh'(w₁ᵀx)x, so the class still counts in m_a. d = 2: m_w = 1, m_a = 1 → 1 + 2 = 3."""
    w = torch.tensor([[0.7, -0.4], [0.7, -0.4]], dtype=torch.float64)
    a = torch.tensor([1.5, -1.5], dtype=torch.float64)
    _assert_rank(TwoLayerTanh(w, a), _gaussian(30, 2), 3)
    assert tanh_neuron_counts(w, a) == (1, 1)


def test_zero_direction_neurons_with_and_without_bias() -> None:
    """Neurons with w = 0 are one class. Without bias a live one (a ≠ 0) adds the d linear functions x; with bias
    it adds x̃ = (x, 1) (d + 1, the constant tanh(b) included); with a = 0 and b ≠ 0 it adds only a constant.

    d = 2, neuron 1 generic, neuron 2 has w = 0:
    - no bias, a₂ ≠ 0: m_w = 1, m_a = 2 → 1 + 2·2 = 5;
    - bias b₂ = 0.3, a₂ ≠ 0: m_w = 1, m_a = 2 → 1 + 2·3 = 7;
    - bias b₂ = 0.3, a₂ = 0: m_w = 2 (the constant), m_a = 1 → 2 + 3 = 5.
    """
    w = torch.tensor([[0.9, 0.2], [0.0, 0.0]], dtype=torch.float64)
    a = torch.tensor([1.0, 0.8], dtype=torch.float64)
    b = torch.tensor([0.1, 0.3], dtype=torch.float64)
    silent = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x = _gaussian(40, 2)
    for weights, out, bias, expected, counts in [
        (w, a, None, 5, (1, 2)),
        (w, a, b, 7, (1, 2)),
        (w, silent, b, 5, (2, 1)),
    ]:
        _assert_rank(TwoLayerTanh(weights, out, bias), x, expected)
        assert tanh_neuron_counts(weights, out, bias) == counts
        assert two_layer_tanh_rank(*counts, 2, bias=bias is not None) == expected


def _shifted_target_weights(m: int) -> torch.Tensor:
    """Input weights of f*(x) = Σ_{s=1..3} tanh(0.6x_s + 0.8x_{s+1} + x_{s+2}) on d = 5, padded with m − 3 zero rows."""
    w = torch.zeros(m, 5, dtype=torch.float64)
    for s in range(3):
        w[s, s : s + 3] = torch.tensor([0.6, 0.8, 1.0])
    return w


def test_fc_network_with_bias_on_the_d5_target_has_rank_21() -> None:
    """Fully connected tanh network of width 6 with hidden biases (42 parameters) at f*: three live neurons with
    b = 0, three dead ones. Each live neuron adds tanh(·) and tanh'(·)(x, 1): 3·(1 + 6) = 21 (arXiv:2211.11623)."""
    m = 6
    a = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    model = TwoLayerTanh(_shifted_target_weights(m), a, torch.zeros(m, dtype=torch.float64))
    assert sum(p.numel() for p in model.parameters()) == 42
    _assert_rank(model, _gaussian(100, 5), 21)
    assert optimistic_two_layer_tanh(3, 5, bias=True) == 21


class Cnn1d(nn.Module):
    """``channels`` kernels of size 3 shared over the 3 valid positions of a length-5 input, a bias per channel,
    tanh, and a readout weight per (channel, position) — no output bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, channels, 3).double()
        self.readout = nn.Linear(3 * channels, 1, bias=False).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.tanh(self.conv(x[:, None, :])).flatten(1))


def test_cnn_on_the_d5_target_has_rank_7() -> None:
    """1-D CNN with 4 channels (28 parameters) at f*: channel 0 = kernel (0.6, 0.8, 1), bias 0, readout (1, 1, 1);
    channels 1–3 dead. Kernel 3 + bias 1 + readout 3 = 7 (arXiv:2211.11623), the 1-D case of k(s + (d+1−s) + 1)."""
    model = Cnn1d(4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.conv.weight[0, 0] = torch.tensor([0.6, 0.8, 1.0])
        model.readout.weight[0, :3] = 1.0  # flatten order: channel-major, so (channel 0, positions 0..2)
    x = _gaussian(60, 5)
    reference = sum(torch.tanh(0.6 * x[:, s] + 0.8 * x[:, s + 1] + x[:, s + 2]) for s in range(3))
    torch.testing.assert_close(model(x)[:, 0], reference)
    _assert_rank(model, x, 7)
    assert optimistic_cnn(1, 5, 3, ndim=1, bias=True) == 7


def test_2d_cnn_with_weight_sharing() -> None:
    """2-D CNN, d = 4, s = 2, no bias: 3 channels (39 parameters), two generic and one dead.
    k(s² + (d + 1 − s)²) = 2·(4 + 9) = 26."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 2, bias=False).double()
    readout = nn.Linear(27, 1, bias=False).double()
    with torch.no_grad():
        conv.weight[2] = 0.0
        readout.weight[0, 18:] = 0.0
    model = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), conv, nn.Tanh(), nn.Flatten(), readout)
    _assert_rank(model, _gaussian(80, 16), 26)
    assert optimistic_cnn(2, 4, 2) == 26


class DeepDiagonal(nn.Module):
    """f(x) = Σᵢ (∏ₗ w_{l,i}) xᵢ."""

    def __init__(self, factors: torch.Tensor) -> None:
        super().__init__()
        self.factors = nn.Parameter(factors.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.factors.prod(dim=0)


def test_deep_diagonal_network() -> None:
    """Depth 3, d = 6, 2-sparse target (coordinates 0, 1). Coordinates 2–5 have zero products: with two or more
    zero factors they add nothing (rank 2 = k); coordinate 2 with exactly one zero factor adds x₂ (rank 3)."""
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    factors[:2, 2:] = 0.0
    x = _gaussian(20, 6)
    _assert_rank(DeepDiagonal(factors), x, 2)
    assert deep_diagonal_rank(factors) == 2 == optimistic_deep_diagonal(2)
    factors[1, 2] = 0.7
    _assert_rank(DeepDiagonal(factors), x, 3)
    assert deep_diagonal_rank(factors) == 3


class Toy(nn.Module):
    """f(x) = θ0 + θ1x1 + θ2θ3x2."""

    def __init__(self, theta: list[float]) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.theta
        return t[0] + t[1] * x[:, 0] + t[2] * t[3] * x[:, 1]


@pytest.mark.parametrize(
    ("theta", "expected"),
    [([1.0, 1.0, 0.0, 0.0], 2), ([1.0, 1.0, 0.0, 2.0], 3), ([1.0, 1.0, 0.5, 2.0], 3)],
)
def test_toy_model(theta: list[float], expected: int) -> None:
    """∂f/∂θ = (1, x1, θ3x2, θ2x2): span{1, x1, x2} = 3 unless θ2 = θ3 = 0, where it is span{1, x1} = 2. Hence the
    target 1 + x1 (θ2θ3 = 0, reachable at θ2 = θ3 = 0) has optimistic sample size 2, a target with c2 ≠ 0 has 3."""
    _assert_rank(Toy(theta), _gaussian(10, 2), expected)
    assert toy_model_rank(torch.tensor(theta)) == expected
    assert optimistic_toy_model(0.0) == 2 and optimistic_toy_model(1.5) == 3

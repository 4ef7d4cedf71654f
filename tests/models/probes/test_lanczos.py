"""Lanczos against spectra known in closed form or from LAPACK (numpy.linalg.eigvalsh)."""

import numpy as np
import pytest
import torch

from models.probes.lanczos import lanczos


def _with_spectrum(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    n = eigenvalues.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


def test_wishart_lambda_max_matches_eigvalsh() -> None:
    """A random 40×40 Wishart matrix XᵀX/m: λ_max equals LAPACK's to 1e-4 relative (issue 7)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 40))
    w = x.T @ x / 60
    expected = np.linalg.eigvalsh(w)[::-1]
    a = torch.from_numpy(w)
    result = lanczos(lambda v: a @ v, 40, k=3, tol=1e-6)
    assert result.converged
    np.testing.assert_allclose(result.eigenvalues.numpy(), expected[:3], rtol=1e-4)


def test_top_k_of_a_known_spectrum_stops_early() -> None:
    """Eigenvalues 10, 8, 6 above a bulk in [-1, 1]: found to 1e-10 relative with far fewer matvecs than n."""
    bulk = torch.linspace(-1.0, 1.0, 197, dtype=torch.float64)
    a = _with_spectrum(torch.cat([torch.tensor([10.0, 8.0, 6.0], dtype=torch.float64), bulk]))
    result = lanczos(lambda v: a @ v, 200, k=3, tol=1e-8)
    assert result.converged
    assert result.matvecs < 60
    np.testing.assert_allclose(result.eigenvalues.numpy(), [10.0, 8.0, 6.0], rtol=1e-10)
    # Each returned vector is an eigenvector of its eigenvalue.
    residual = a @ result.eigenvectors - result.eigenvectors * result.eigenvalues
    assert float(residual.abs().max()) < 1e-6


def test_top_means_algebraically_largest() -> None:
    """With eigenvalue −50 dominant in magnitude, the top-2 are still the largest: 3 and 2."""
    a = _with_spectrum(torch.tensor([-50.0, 3.0, 2.0, 1.0, 0.5, -1.0], dtype=torch.float64))
    result = lanczos(lambda v: a @ v, 6, k=2, tol=1e-10)
    np.testing.assert_allclose(result.eigenvalues.numpy(), [3.0, 2.0], rtol=1e-10)


def test_low_rank_operator_restarts_after_breakdown() -> None:
    """A rank-2 PSD operator with eigenvalues 5, 2 and a 30-fold 0: the Krylov space of one start vector is
    3-dimensional, so top-4 needs a restart; the answer is 5, 2, 0, 0."""
    a = _with_spectrum(torch.cat([torch.tensor([5.0, 2.0]), torch.zeros(30)]).double())
    result = lanczos(lambda v: a @ v, 32, k=4, tol=1e-10)
    assert result.converged
    np.testing.assert_allclose(result.eigenvalues.numpy(), [5.0, 2.0, 0.0, 0.0], atol=1e-12)


def test_seed_makes_it_reproducible() -> None:
    a = _with_spectrum(torch.linspace(0.0, 1.0, 50, dtype=torch.float64))
    first = lanczos(lambda v: a @ v, 50, k=2, max_iter=10, seed=3)
    again = lanczos(lambda v: a @ v, 50, k=2, max_iter=10, seed=3)
    other = lanczos(lambda v: a @ v, 50, k=2, max_iter=10, seed=4)
    assert torch.equal(first.eigenvalues, again.eigenvalues)
    assert not torch.equal(first.eigenvalues, other.eigenvalues)
    assert first.matvecs == 10 and not first.converged


def test_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="k must be"):
        lanczos(lambda v: v, 3, k=4)
    with pytest.raises(ValueError, match="max_iter"):
        lanczos(lambda v: v, 10, k=4, max_iter=2)


def test_hint_along_the_top_eigenvector_finds_it_at_once_and_a_useless_hint_still_finds_it() -> None:
    """A closely spaced top pair: the hint that carries the top eigenvector converges in a few matvecs; a hint
    orthogonal to it cannot hide it, because the random half of the start vector still excites it."""
    values = torch.cat([torch.tensor([1.0, 0.999]), torch.linspace(0.0, 0.99, 298, dtype=torch.float64)])
    matvec = lambda v: values * v  # noqa: E731
    along = torch.zeros(300, dtype=torch.float64)
    along[0] = 1.0
    orthogonal = torch.zeros(300, dtype=torch.float64)
    orthogonal[1] = 1.0
    helped = lanczos(matvec, 300, hint=along, tol=1e-8)
    plain = lanczos(matvec, 300, tol=1e-8)
    useless = lanczos(matvec, 300, hint=orthogonal, tol=1e-8)
    for result in (helped, plain, useless):
        assert float(result.eigenvalues[0]) == pytest.approx(1.0, rel=1e-10)
    assert helped.matvecs < plain.matvecs

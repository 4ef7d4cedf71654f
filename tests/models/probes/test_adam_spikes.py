"""The Adam spike mechanism of arXiv:2506.04805 on L = hθ²/2, measured with the probe's own D and thresholds.

Gradient descent with ηh < 2 converges smoothly on this quadratic. Adam does not: once g² ≪ v, v decays like β2^t, the
preconditioned curvature C = η·h·D = ηh/(√v̂ + ε) grows, and when it passes the momentum-adjusted threshold
(2 + 2β1)/(1 − β1) (38 at β1 = 0.9, 2 at β1 = 0) the iteration is unstable and the loss spikes by many orders of
magnitude, until the large gradients refill v and push C back down.

Spike rule used here (the analysis layer owns the general detector): the envelope E_t = max of the loss over the last
25 steps (longer than the oscillation period of momentum, so a stable decaying oscillation has a non-increasing
envelope); a spike is a maximal run of envelope increases that multiplies it by more than 10³.
"""

import numpy as np
import pytest
import torch

from models.probes.adam import adam_preconditioner
from models.probes.curvature import stability_thresholds

BETA2 = 0.999
WINDOW = 25
# Momentum carries the last unstable steps: the envelope may still rise for up to two steps after C falls below the
# threshold (measured: with one step of slack six rises in 6000 steps are "late", with three none are).
SLACK = 3


def _train(h: float, lr: float, theta0: float, beta1: float, steps: int) -> tuple[np.ndarray, ...]:
    theta = torch.tensor([theta0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=lr, betas=(beta1, BETA2), eps=1e-8)
    losses, curvature, second = [], [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.5 * h * theta**2
        loss.backward()
        optimizer.step()
        # An exact zero would freeze the dynamics (g = 0 forever) and fake stability.
        assert float(theta.detach()) != 0.0
        losses.append(float(loss.detach()))
        curvature.append(lr * h * float(adam_preconditioner(optimizer, [theta]).diagonal[0]))
        second.append(float(optimizer.state[theta]["exp_avg_sq"]))
    return np.array(losses), np.array(curvature), np.array(second)


def _spike_onsets(envelope: np.ndarray) -> list[int]:
    onsets, t = [], WINDOW
    while t < len(envelope):
        if envelope[t] > envelope[t - 1]:
            start = t
            while t < len(envelope) and envelope[t] > envelope[t - 1]:
                t += 1
            if envelope[t - 1] > 1e3 * envelope[start - 1]:
                onsets.append(start)
        t += 1
    return onsets


@pytest.mark.parametrize(
    ("h", "lr", "theta0", "beta1", "steps"),
    [(1.0, 1.0, 0.05, 0.9, 6000), (4.0, 0.3, 0.5, 0.0, 1000)],
)
def test_spikes_follow_the_preconditioned_curvature_crossing_the_threshold(
    h: float, lr: float, theta0: float, beta1: float, steps: int
) -> None:
    assert lr * h < 2  # plain gradient descent would be stable
    threshold = stability_thresholds(lr, beta1)[1] * lr  # in units of η: (2 + 2β1)/(1 − β1)
    losses, curvature, second = _train(h, lr, theta0, beta1, steps)
    envelope = np.array([losses[max(0, t - WINDOW + 1) : t + 1].max() for t in range(steps)])

    onsets = _spike_onsets(envelope)
    assert len(onsets) >= 3
    for t in onsets:
        # The 10 steps before: g² ≪ v, so v_{t+1}/v_t sits at β2.
        ratios = second[t - 10 : t] / second[t - 11 : t - 1]
        assert np.abs(ratios - BETA2).max() < 1e-3
        # The step that started the rise ran with C above the threshold, and C had been below it shortly before.
        assert curvature[t - 1] >= threshold
        assert (curvature[max(0, t - 100) : t - 1] < threshold).any()
    # Conversely, the envelope never rises unless C exceeded the threshold within the last SLACK steps.
    for t in range(WINDOW, steps):
        if envelope[t] > envelope[t - 1]:
            assert curvature[t - SLACK : t].max() >= threshold, t

"""The function part of a spikes study: full-batch Adam on y = sin(wᵀx), probed on its own training set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.spikes import analyze_spikes
from models.function import fc_network, sine_task, train_function_run
from models.probes.adam import adam_preconditioner
from models.probes.hessian import flatten
from sweeps.spikes import FunctionPart, FunctionRun
from sweeps.tables import FUNCTION_RUNS


def _run(steps: int, lr: float, *, every: int = 5, seed: int = 0, width: int = 32) -> FunctionRun:
    part = FunctionPart.model_validate(
        {"steps": steps, "lr": [lr], "seed": [seed], "network": {"width": width}, "probes": {"every": every}}
    )
    return FunctionRun("test", part, lr, seed)


def test_probe_row_matches_the_explicit_preconditioned_hessian() -> None:
    """λ_max(Ĥ) and λ_max(H) of a probe row equal numpy's eigenvalues of the dense Hessian with Adam's own D."""
    run = _run(40, 1e-2, every=40, width=6)
    rows = train_function_run(run)
    x, y, _, _ = sine_task(run.part.task)
    # Replay the run: same seed, same full batch, same updates, then form the dense Hessian at step 40.
    model = fc_network(run.part.task.inputs, run.part.network, run.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, betas=run.part.betas, eps=run.part.eps)
    params = list(model.parameters())
    for _ in range(40):
        optimizer.zero_grad()
        (model(x).squeeze(-1) - y).pow(2).mean().backward()
        optimizer.step()
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, sizes)
        named = {name: c.view(s) for (name, _), c, s in zip(model.named_parameters(), chunks, shapes, strict=True)}
        out = torch.func.functional_call(model, named, (x,))
        return (out.squeeze(-1) - y).pow(2).mean()

    hessian = torch.autograd.functional.hessian(loss_of, flatten([p.detach() for p in params])).numpy()
    d = flatten(adam_preconditioner(optimizer, params).diagonal).numpy()
    root = np.sqrt(d)
    expected_precond = np.linalg.eigvalsh(root[:, None] * hessian * root[None, :])[-1]
    expected_plain = np.linalg.eigvalsh(hessian)[-1]
    probe = rows.probes[-1]
    assert probe["step"] == 40
    assert probe["lambda_max_precond"] == pytest.approx(expected_precond, rel=1e-6)
    assert probe["lambda_max_hessian"] == pytest.approx(expected_plain, rel=1e-6)


def test_rows_are_complete_and_the_run_is_reproducible() -> None:
    run = _run(60, 3e-3, every=20)
    first, second = train_function_run(run), train_function_run(run)
    assert [r["step"] for r in first.steps] == list(range(1, 61))
    assert [r["step"] for r in first.probes] == [20, 40, 60]
    assert all(r["adam_critical_share"] is not None for r in first.steps)
    assert first.run["status"] == "ok" and first.run["steps"] == 60 and first.run["run_id"] == run.run_id
    assert first.run["params"] == 4 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert set(first.run) <= set(FUNCTION_RUNS.names)  # every column declared
    assert [r["train_loss"] for r in first.steps] == [r["train_loss"] for r in second.steps]
    assert [r["lambda_max_precond"] for r in first.probes] == [r["lambda_max_precond"] for r in second.probes]


@pytest.mark.slow
def test_full_batch_spikes_follow_the_preconditioned_edge() -> None:
    """The mechanism on the study's network: each spike has λ_max(Ĥ)·η above 2 at the probe before it, and λ_max(Ĥ)
    is never below the preconditioned directional curvature (a Rayleigh quotient of the same operator)."""
    run = _run(1200, 1e-2)
    rows = train_function_run(run)
    steps, probes = pd.DataFrame(rows.steps), pd.DataFrame(rows.probes)
    spikes = analyze_spikes(steps, probes)
    assert len(spikes) >= 3
    assert (spikes["precond_eta"] > 2).all()
    assert (probes["lambda_max_precond"] >= probes["dir_curvature_precond"] * (1 - 1e-6)).all()

"""A fully connected network fitted full-batch with Adam to a function: the small-network half of a spikes study.

Full batch on a fixed training set is the setting in which arXiv:2506.04805 shows Adam's spikes most cleanly: once
the loss is small, the gradient shrinks faster than Adam's v̂ (which decays like β2^t), the preconditioned
curvature grows to the stability edge and the loss spikes. Nothing is stochastic after initialization, so a spike
cannot come from a batch of unusual data.

`train_function_run` trains one `sweeps.spikes.FunctionRun` and returns its rows for the ``function_runs``,
``steps`` and ``probes`` tables (`sweeps.tables`). It measures the inline Adam statistics
(`models.probes.adam.adam_step_stats`) after every ``adam_stats.every``-th update and probes the state after every
``probes.every``-th update with `models.probes.curvature.curvature_probe` on the training set itself (the loss that
training descends), with the optimizer's live state, so a probe row at step s describes exactly the parameters and
v̂ of update s.
Training is float64: the loss reaches 1e-6 and below, where float32 rounding would be mistaken for spikes.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.probes.adam import adam_columns, adam_step_stats
from models.probes.curvature import curvature_probe
from sweeps.spikes import FCNetwork, FunctionRun, SineTask

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


@dataclass(frozen=True)
class FunctionRunRows:
    """What one run produced: its ``function_runs`` row (without study-level bookkeeping), steps rows and probes
    rows."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    probes: list[dict[str, Any]]


def sine_task(task: SineTask) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) in float64, as ``sweeps.spikes`` defines the task."""
    generator = torch.Generator().manual_seed(task.seed)
    w = torch.randn(task.inputs, generator=generator, dtype=torch.float64)
    x = torch.randn(task.samples + task.test_samples, task.inputs, generator=generator, dtype=torch.float64)
    y = torch.sin(x @ w)
    return x[: task.samples], y[: task.samples], x[task.samples :], y[task.samples :]


def fc_network(inputs: int, network: FCNetwork, seed: int) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units and a linear readout; PyTorch's default init drawn with ``seed``."""
    torch.manual_seed(seed)
    dims = [inputs] + [network.width] * network.depth
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(dims):
        layers += [nn.Linear(fan_in, fan_out, dtype=torch.float64), ACTIVATIONS[network.activation]()]
    layers.append(nn.Linear(dims[-1], 1, dtype=torch.float64))
    return nn.Sequential(*layers)


def train_function_run(run: FunctionRun) -> FunctionRunRows:
    """Train ``run`` and return its rows (see the module docstring); a non-finite loss ends it as ``diverged``."""
    part = run.part
    x, y, x_test, y_test = sine_task(part.task)
    model = fc_network(part.task.inputs, part.network, run.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, betas=part.betas, eps=part.eps)
    params = list(model.parameters())

    def training_loss() -> Tensor:
        return (model(x).squeeze(-1) - y).pow(2).mean()

    started = time.perf_counter()
    steps: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    status = "ok"
    for step in range(1, part.steps + 1):
        loss = training_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params])))
        optimizer.step()
        measure = bool(part.adam_stats.every) and step % part.adam_stats.every == 0
        stats = adam_step_stats(optimizer, rho=part.adam_stats.rho) if measure else None
        value = float(loss.detach())
        steps.append(
            {
                "trial_id": run.run_id,
                "step": step,
                "lr": run.lr,
                "train_loss": value,
                "grad_norm": grad_norm,
                "elapsed_s": time.perf_counter() - started,
                **adam_columns(stats),
            }
        )
        if not math.isfinite(value):
            status = "diverged"
            break
        if step % part.probes.every == 0:
            probe = curvature_probe(training_loss, params, optimizer, top_k=part.probes.top_k, seed=run.seed)
            probes.append({"trial_id": run.run_id, "step": step, **probe.columns()})
    with torch.no_grad():
        test_loss = float((model(x_test).squeeze(-1) - y_test).pow(2).mean()) if status == "ok" else None
    row = {
        "run_id": run.run_id,
        "status": status,
        "error": f"non-finite training loss at step {len(steps)}" if status == "diverged" else None,
        "activation": part.network.activation,
        "depth": part.network.depth,
        "width": part.network.width,
        "params": sum(p.numel() for p in params),
        "task": f"sine(d={part.task.inputs},n={part.task.samples},seed={part.task.seed})",
        "inputs": part.task.inputs,
        "samples": part.task.samples,
        "test_samples": part.task.test_samples,
        "seed": run.seed,
        "lr": run.lr,
        "beta1": part.betas[0],
        "beta2": part.betas[1],
        "steps": len(steps),
        "final_train_loss": steps[-1]["train_loss"],
        "final_test_loss": test_loss,
        "wall_s": time.perf_counter() - started,
    }
    return FunctionRunRows(row, steps, probes)

"""Recovery experiments: train a student from small initialization on n samples of a target and measure recovery.

``run_batch`` runs one ``sweeps.recovery.RecoveryBatch`` (one setting, n and init scale, several seeds) and returns
one recovery-table row per seed. Per seed s: the data come from ``torch.Generator().manual_seed(2s)`` and the
initialization (every parameter i.i.d. N(0, init_scale²), so init_scale 1e-10 is variance 1e-20) from
``manual_seed(2s + 1)``; training is full-batch gradient descent in float64 to the loss tolerance
(``models.probes.descent``), seeds batched with ``torch.func.vmap`` unless ``vectorize=False``.

Measured per run:

* ``test_error``: relative mean squared error on the fresh test points, Σ(f − f*)²/Σf*² (all d² entries for a
  matrix target); ``recovered`` when it is below the spec's ``recovered_threshold``.
* ``model_rank_empirical``: rank of the Jacobian at the found parameters (``models.probes.rank.model_rank``) with
  the spec's ``rank_rtol`` (default 1e-3, far looser than the exact-rank default 1e-10: a run stops at a finite loss
  and from a finite init, so directions it did not learn are small but not zero — e.g. a rank-1 4×4 completion from
  init std 1e-10 keeps a second singular value of A and B near 2e-4, grown during the escape from the origin; the
  rank counts learned directions and ``model_rank_gap`` shows how well they separate), computed over
  all d² entries for a matrix, else over the first 4·n_params + 20 test points; ``model_rank_theory``: the
  optimistic sample size of the target for this student in closed form (``optimistic_sample_size``).
* Matrix targets: observation-graph components and the learned and minimum-nuclear-norm completions
  (``models.probes.completion``), the latter with whether its solver converged and the steps it took. Neuron
  targets: initial imbalance ratio and branch (``models.probes.neuron``).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from models.probes.completion import (
    bipartite_components,
    min_nuclear_norm_completion,
    nuclear_norm,
    numerical_rank,
)
from models.probes.descent import Params, gradient_descent
from models.probes.lifting import lifting_check
from models.probes.neuron import branch, imbalance_ratio
from models.probes.rank import (
    model_rank,
    optimistic_cnn,
    optimistic_deep_diagonal,
    optimistic_matrix_factorization,
    optimistic_toy_model,
    optimistic_two_layer_tanh,
)
from models.probes.students import MatrixFactorization, TwoLayerTanh, build_student
from models.probes.targets import Problem, sample_problem, target_matrix
from sweeps.recovery import (
    AffineStudent,
    Cnn1dStudent,
    ConvTanhTarget,
    DiagonalStudent,
    FcTanhStudent,
    LinearTarget,
    MatrixTarget,
    NeuronTarget,
    RecoveryBatch,
    Setting,
    ToyStudent,
)


def optimistic_sample_size(setting: Setting) -> int:
    """The model rank of the setting's target for its student in closed form (see ``models.probes.rank``)."""
    target, student = setting.target, setting.student
    if isinstance(target, MatrixTarget):
        return optimistic_matrix_factorization(target.d, target.rank)
    if isinstance(target, ConvTanhTarget) and isinstance(student, Cnn1dStudent):
        return optimistic_cnn(1, target.d, len(target.kernel), ndim=1, bias=student.bias)
    if isinstance(target, ConvTanhTarget) and isinstance(student, FcTanhStudent):
        return optimistic_two_layer_tanh(target.terms, target.d, bias=student.bias)
    if isinstance(target, NeuronTarget) and isinstance(student, FcTanhStudent):
        return optimistic_two_layer_tanh(1, target.input_dim, bias=student.bias)
    if isinstance(target, LinearTarget) and isinstance(student, ToyStudent):
        return optimistic_toy_model(target.coefficients[2])
    if isinstance(target, LinearTarget) and isinstance(student, AffineStudent):
        return target.input_dim + 1  # θ₀ + θᵀx: every parameter is a direction of its own everywhere
    if isinstance(target, LinearTarget) and isinstance(student, DiagonalStudent):
        return optimistic_deep_diagonal(sum(c != 0 for c in target.coefficients[1:]))
    raise TypeError(f"no closed form for {setting.label}")


def initial_params(model: nn.Module, scale: float, generator: torch.Generator) -> Params:
    return {
        k: scale * torch.randn(v.shape, generator=generator, dtype=torch.float64) for k, v in model.named_parameters()
    }


def run_batch(batch: RecoveryBatch, *, vectorize: bool = True) -> list[dict[str, Any]]:
    """Train every seed of ``batch`` and return one recovery row per seed (columns of ``sweeps.tables.RECOVERY``)."""
    setting = batch.setting
    model = build_student(setting.student, setting.target.input_dim)
    problems = [
        sample_problem(setting.target, batch.n, torch.Generator().manual_seed(2 * s), batch.test_points)
        for s in batch.seeds
    ]
    starts = [initial_params(model, batch.init_scale, torch.Generator().manual_seed(2 * s + 1)) for s in batch.seeds]
    started = time.perf_counter()
    result = gradient_descent(
        model,
        {k: torch.stack([p[k] for p in starts]) for k in starts[0]},
        torch.stack([p.train_x for p in problems]),
        torch.stack([p.train_y for p in problems]),
        lr=batch.train.lr,
        loss_tolerance=batch.train.loss_tolerance,
        max_steps=batch.train.max_steps,
        vectorize=vectorize,
    )
    wall = (time.perf_counter() - started) / len(batch.seeds)
    theory = optimistic_sample_size(setting)
    rows = []
    for i, seed in enumerate(batch.seeds):
        params = {k: v[i] for k, v in result.params.items()}
        row = _row(batch, model, problems[i], params, seed)
        row.update(
            train_loss=float(result.loss[i]),
            steps=int(result.steps[i]),
            converged=bool(result.loss[i] <= batch.train.loss_tolerance),
            model_rank_theory=theory,
            wall_s=wall,
        )
        if isinstance(setting.target, NeuronTarget) and isinstance(model, TwoLayerTanh):
            row.update(_neuron_columns(setting.target, model, problems[i], starts[i], params))
        if isinstance(model, TwoLayerTanh) and model.hidden.bias is not None:
            row.update(_lifting_columns(model, problems[i], params))
        rows.append(row)
    return rows


def _row(batch: RecoveryBatch, model: nn.Module, problem: Problem, params: Params, seed: int) -> dict[str, Any]:
    target = batch.setting.target
    with torch.no_grad():
        prediction = functional_call(model, params, (problem.test_x,))
    test_error = float(((prediction - problem.test_y) ** 2).sum() / (problem.test_y**2).sum())
    n_params = sum(v.numel() for v in params.values())
    probe_x = problem.test_x if isinstance(target, MatrixTarget) else problem.test_x[: 4 * n_params + 20]
    rank = model_rank(model, probe_x, params=params, rtol=batch.rank_rtol)
    row: dict[str, Any] = {
        "task_id": batch.task_id(seed),
        "study": batch.study,
        "target": target.label,
        "student": batch.setting.student.label,
        "d": target.input_dim,
        "n": batch.n,
        "seed": seed,
        "init_scale": batch.init_scale,
        "lr": batch.train.lr,
        "test_error": test_error,
        "recovered": bool(test_error < batch.recovered_threshold),
        "model_rank_empirical": rank.rank,
        "model_rank_gap": rank.gap,
        "rank_rtol": batch.rank_rtol,
        "n_params": n_params,
        "config_json": json.dumps(batch.semantic(seed), sort_keys=True),
    }
    if isinstance(target, MatrixTarget) and isinstance(model, MatrixFactorization):
        row.update(_matrix_columns(target, problem, (params["a"] @ params["b"]).numpy(), batch.rank_rtol))
    return row


def _matrix_columns(target: MatrixTarget, problem: Problem, learned: np.ndarray, rtol: float) -> dict[str, Any]:
    truth = target_matrix(target).numpy()
    mask = np.zeros_like(truth, dtype=bool)
    for i, j in problem.observed:
        mask[i, j] = True
    completion = min_nuclear_norm_completion(truth, mask)
    components = bipartite_components(problem.observed, target.d)
    return {
        "target_rank": target.rank,
        "components": components,
        "connected_covering": components == 1,
        "learned_rank": numerical_rank(learned, rtol),
        "learned_nuclear_norm": nuclear_norm(learned),
        "min_nuclear_norm": nuclear_norm(completion.matrix),
        "min_nuclear_rank": numerical_rank(completion.matrix, rtol),
        "min_nuclear_test_error": float(((completion.matrix - truth) ** 2).sum() / (truth**2).sum()),
        "min_nuclear_converged": completion.converged,
        "min_nuclear_iterations": completion.iterations,
        "target_nuclear_norm": nuclear_norm(truth),
    }


def _lifting_columns(model: TwoLayerTanh, problem: Problem, params: Params) -> dict[str, Any]:
    """The embedding principle in depth at the solution found (`models.probes.lifting`): lift it to a network with a
    ReLU layer inserted, and compare outputs, gradient norms and smallest Hessian eigenvalues."""
    shallow = copy.deepcopy(model)
    shallow.load_state_dict(params)
    check = lifting_check(shallow, problem.train_x, problem.train_y)
    return {
        "lifting_output_change": check.output_change,
        "lifting_grad_norm_shallow": check.grad_norm_shallow,
        "lifting_grad_norm_lifted": check.grad_norm_lifted,
        "lifting_hessian_min_shallow": check.hessian_min_shallow,
        "lifting_hessian_min_lifted": check.hessian_min_lifted,
    }


def _neuron_columns(
    target: NeuronTarget, model: TwoLayerTanh, problem: Problem, start: Params, params: Params
) -> dict[str, Any]:
    def augmented(p: Params) -> tuple[Tensor, Tensor]:
        w = p["hidden.weight"]
        if model.hidden.bias is not None:
            w = torch.cat([w, p["hidden.bias"][:, None]], dim=1)
        return p["out.weight"][0], w

    x = problem.train_x
    w0 = torch.tensor(target.w, dtype=torch.float64)
    if model.hidden.bias is not None:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        w0 = torch.cat([w0, torch.tensor([target.b], dtype=torch.float64)])
    ratio = imbalance_ratio(*augmented(start), x, problem.train_y)
    return {
        "imbalance_ratio": ratio.tolist(),
        "imbalance_max": float(ratio.max()),
        "branch": branch(*augmented(params), target.a, w0),
    }

"""The minimum-nuclear-norm completion at d = 12: the old fixed-ρ ADMM against the current one, in one run.

Ten cases drawn as a recovery study draws them (``sample_problem`` with the generator of seed s = 0..9, as
``run_batch`` seeds it) from one matrix target — by default rank 3 with 100 of 144 entries observed, where the fixed-ρ
loop hit its 20 000-step cap in 8 of 10 cases (issue 16, item 7). Both solvers get the same ``tol`` and cap. Printed
per case and in total: converged or not, steps (SVDs), wall time, the nuclear norm reached, and its certified gap
(‖Z‖* − ⟨Y, M⟩/‖Y‖₂)/‖Z‖* from each solver's own multiplier Y (weak duality: a bound on the distance to the minimum).
If ``cvxpy`` is installed its conic solution is timed beside them. Run: ``python benchmarks/completion.py``
(about a minute, most of it the baseline).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from models.probes.completion import min_nuclear_norm_completion, nuclear_norm
from models.probes.targets import sample_problem, target_matrix
from sweeps.recovery import MatrixTarget

Solver = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, bool, int]]


def baseline(
    values: np.ndarray, mask: np.ndarray, *, tol: float = 1e-10, max_iter: int = 20_000
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """The loop before issue 16 (fixed ρ = 1/‖M_Ω‖, same stopping rule), returning what it did not report."""
    observed = np.where(mask, values, 0.0)
    scale = float(np.linalg.norm(observed)) or 1.0
    rho = 1.0 / scale
    z = observed.copy()
    u = np.zeros_like(z)
    for iteration in range(1, max_iter + 1):
        left, sigma, right = np.linalg.svd(z - u)
        x = (left * np.maximum(sigma - 1.0 / rho, 0.0)) @ right
        previous = z
        z = np.where(mask, values, x + u)
        u = u + x - z
        if np.linalg.norm(x - z) <= tol * scale and np.linalg.norm(z - previous) <= tol * scale:
            return z, -rho * u, True, iteration
    return z, -rho * u, False, max_iter


def current(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, int]:
    result = min_nuclear_norm_completion(values, mask)
    return result.matrix, result.dual, result.converged, result.iterations


def cases(rank: int, n: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    target = MatrixTarget(family="matrix", d=12, rank=rank)
    truth = target_matrix(target).numpy()
    out = []
    for seed in range(count):
        problem = sample_problem(target, n, torch.Generator().manual_seed(2 * seed), test_points=10)
        mask = np.zeros_like(truth, dtype=bool)
        mask[tuple(np.array(problem.observed).T)] = True
        out.append((truth, mask))
    return out


def gap(matrix: np.ndarray, dual: np.ndarray, values: np.ndarray) -> float:
    # Any Y that is zero off Ω bounds the minimum from below, whichever sign a solver's convention gives it.
    norm = nuclear_norm(matrix)
    return (norm - abs(float((dual * values).sum())) / float(np.linalg.norm(dual, 2))) / norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--n", type=int, default=100, help="observed entries of the 144")
    parser.add_argument("--cases", type=int, default=10)
    args = parser.parse_args()
    solvers: dict[str, Solver] = {"fixed ρ (baseline)": baseline, "balanced + Anderson": current}
    conic_solvers: set[str] = set()  # which solver cvxpy picked, printed with the totals
    try:
        import cvxpy as cp
    except ImportError:
        print("cvxpy is not installed: no conic-solver column")
    else:

        def conic(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, int]:
            x = cp.Variable(values.shape)
            constraint = cp.multiply(mask, x) == np.where(mask, values, 0.0)
            problem = cp.Problem(cp.Minimize(cp.normNuc(x)), [constraint])
            problem.solve()
            conic_solvers.add(problem.solver_stats.solver_name)
            matrix = np.where(mask, values, x.value)
            dual = np.where(mask, constraint.dual_value, 0.0)
            return matrix, dual, problem.status == "optimal", int(problem.solver_stats.num_iters)

        solvers["cvxpy (its default solver)"] = conic
    print(
        f"d = 12, rank {args.rank}, n = {args.n}, {args.cases} cases; steps: SVDs (ADMM) or solver iterations (cvxpy); "
        "gap: certified relative gap"
    )
    header = "".join(f" | {name:>38}" for name in solvers)
    print(f"{'case':>4}{header}")
    totals = {name: {"converged": 0, "steps": 0, "wall": 0.0} for name in solvers}
    for i, (values, mask) in enumerate(cases(args.rank, args.n, args.cases)):
        cells = []
        for name, solve in solvers.items():
            started = time.perf_counter()
            matrix, dual, converged, steps = solve(values, mask)
            wall = time.perf_counter() - started
            assert np.array_equal(matrix[mask], values[mask])
            totals[name]["converged"] += converged
            totals[name]["steps"] += steps
            totals[name]["wall"] += wall
            flag = "ok " if converged else "CAP"
            norm, certified = nuclear_norm(matrix), gap(matrix, dual, values)
            cells.append(f"{flag} {steps:>6} {wall:>6.2f}s ‖·‖*={norm:9.6f} gap={certified:7.1e}")
        print(f"{i:>4}" + "".join(f" | {c:>38}" for c in cells))
    print()
    base = totals["fixed ρ (baseline)"]
    for name, total in totals.items():
        line = (
            f"{name:>20}: converged {total['converged']}/{args.cases}, mean steps {total['steps'] / args.cases:8.0f}, "
            f"mean wall {total['wall'] / args.cases:7.3f} s"
        )
        if name != "fixed ρ (baseline)":
            line += f", baseline/this wall time {base['wall'] / total['wall']:.1f}×"
        if name == "balanced + Anderson":
            line += f", baseline/this steps {base['steps'] / total['steps']:.1f}×"
        print(line)
    if conic_solvers:
        print(f"cvxpy solved with {', '.join(sorted(conic_solvers))} at its default tolerances")


if __name__ == "__main__":
    main()

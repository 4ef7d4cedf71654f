"""The joint Chinchilla fit, batched (``analysis.fit_chinchilla``) vs the straightforward per-start scipy loop.

One run, one machine, the same data: Epoch AI's 245 points of ``shared/data/epoch_chinchilla_svg_extracted_data.csv``
(D = C/(6N), the 5 highest losses dropped, 240 fitted), Epoch's 4,500-start grid and 1,000 bootstrap resamples.

- **Ours**: ``fit_chinchilla(..., drop_highest=5, n_bootstrap=1000)``: every start and every resample as rows of one
  batched L-BFGS (``analysis.optimize``), the best few candidates finished by scipy's L-BFGS-B.
- **Straightforward loop**: ``scipy.optimize.minimize(method="L-BFGS-B")`` once per start, then once per resample.
  It is given the analytic gradient (Epoch's notebook lets scipy difference the objective numerically, ~2.5× slower
  per start here), so the speed-up printed is the smaller, fairer one. Starts use scipy's default tolerances: they
  reach the same optimum (both objectives are printed). Resamples start from the full-data optimum, as ours do, one
  scipy call each; at the default tolerances scipy stops within ~12 iterations of that warm start and the bootstrap
  collapses (SE(α) ≈ 0.0006 instead of 0.016, measured), so the loop's resamples run with ftol = 1e-12 and
  gtol = 1e-9, which reach Epoch's SEs (both are printed). Every resample is run, none extrapolated. A loop that
  re-ran all 4,500 starts per resample would take about 1,000 × the start loop; that figure is printed as an
  extrapolation only.
- **Memory**: the fit's peak of traced Python/numpy allocations (``tracemalloc``, a separate untimed run, since
  tracing slows allocation) and the process's peak resident set (``resource.getrusage``) after the timed fit, before
  the loop runs.

Timings on a shared machine are noisy; the ratio from one run is what counts. No assertions. Run:
``python benchmarks/fit_speed.py`` (several minutes: the loop is the slow part; ``--starts 500`` times a random subset
of starts and extrapolates the start loop, saying so).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from analysis import fit_chinchilla
from analysis.law import HUBER_DELTA, LogSpaceLaw

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"
DROP, N_BOOTSTRAP, SEED = 5, 1000, 0
TIGHT = {"ftol": 1e-12, "gtol": 1e-9}


def load_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not DATA.is_file():
        sys.exit(f"{DATA} is absent: the published data lives beside the repository, in ../shared/data/")
    raw = pd.read_csv(DATA)
    n = raw["Model Size"].to_numpy(dtype=float)
    return n, raw["Training FLOP"].to_numpy(dtype=float) / (6 * n), raw["loss"].to_numpy(dtype=float)


class LoopObjective:
    """Summed Huber (δ = 1e-3) of log residuals of log L̂ = LSE(a − α log N, b − β log D, e) and its gradient for
    one parameter vector: what a per-start loop hands scipy, written plainly for one row."""

    def __init__(self, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> None:
        self.log_n, self.log_d, self.log_y = np.log(n), np.log(d), np.log(loss)

    def __call__(self, theta: np.ndarray, weights: np.ndarray | float = 1.0) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = theta
        terms = (a - alpha * self.log_n, b - beta * self.log_d, np.full_like(self.log_n, e))
        top = np.maximum(np.maximum(terms[0], terms[1]), terms[2])
        shifted = [np.exp(t - top) for t in terms]
        total = shifted[0] + shifted[1] + shifted[2]
        r = top + np.log(total) - self.log_y
        clipped = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
        q = weights * clipped / total
        grad = [np.sum(q * s) for s in shifted]
        grad += [-np.sum(q * shifted[0] * self.log_n), -np.sum(q * shifted[1] * self.log_d)]
        return float(np.sum(weights * clipped * (r - 0.5 * clipped))), np.array(grad)


def per_start_loop(objective: LoopObjective, starts: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Best (x, f) over one scipy L-BFGS-B call per start, at scipy's default tolerances; and the seconds."""
    started = time.perf_counter()
    best_x, best_f = starts[0], np.inf
    for x0 in starts:
        result = minimize(objective, x0, jac=True, method="L-BFGS-B")
        if result.fun < best_f:
            best_x, best_f = result.x, float(result.fun)
    return best_x, best_f, time.perf_counter() - started


def per_resample_loop(objective: LoopObjective, x0: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, float]:
    """One scipy call per resample (point counts as weights) from the full-data optimum; the refits and seconds."""
    started = time.perf_counter()
    refits = [minimize(objective, x0, args=(c,), jac=True, method="L-BFGS-B", options=TIGHT).x for c in counts]
    return np.array(refits), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=None, help="time a random subset of starts and extrapolate")
    args = parser.parse_args()
    n, d, loss = load_points()

    started = time.perf_counter()
    fit = fit_chinchilla(n, d, loss, drop_highest=DROP, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    ours_s = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    tracemalloc.start()
    fit_chinchilla(n, d, loss, drop_highest=DROP, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    traced_peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    used = fit.points[fit.points["used"]]
    objective = LoopObjective(used["N"].to_numpy(), used["D"].to_numpy(), used["loss"].to_numpy())
    grid = LogSpaceLaw(2).start_grid()
    starts = grid
    if args.starts is not None:
        starts = grid[np.random.default_rng(SEED).choice(len(grid), size=args.starts, replace=False)]
    loop_x, loop_f, loop_starts_s = per_start_loop(objective, starts)
    loop_starts_s *= len(grid) / len(starts)
    # The same resamples as fit_chinchilla draws (same generator, seed and call).
    counts = np.random.default_rng(SEED).multinomial(len(used), np.full(len(used), 1 / len(used)), size=N_BOOTSTRAP)
    refits, loop_boot_s = per_resample_loop(objective, fit.theta, counts.astype(float))

    ours_se = fit.params()
    loop_total = loop_starts_s + loop_boot_s
    subset = (
        f" (timed on {len(starts)} random starts, × {len(grid) / len(starts):.1f})" if len(starts) < len(grid) else ""
    )
    print(f"data: {DATA.name}, {len(fit.points)} points, {fit.n_points} fitted; {len(grid)} starts{subset}")
    print(f"{'':34}{'ours (batched)':>24}{'scipy loop':>24}")
    print(f"{'best objective (summed Huber)':34}{fit.objective:>24.9e}{loop_f:>24.9e}")
    print(f"{'E, alpha, beta':34}{_triple(fit.theta):>24}{_triple(loop_x):>24}")
    print(
        f"{'bootstrap SE(alpha), SE(beta)':34}{_pair(ours_se['alpha'].se, ours_se['beta'].se):>24}"
        f"{_pair(refits[:, 3].std(ddof=1), refits[:, 4].std(ddof=1)):>24}"
    )
    print(f"{'seconds: starts + bootstrap':34}{ours_s:>24.2f}{loop_total:>24.2f}")
    print(f"{'  of which starts':34}{'':>24}{loop_starts_s:>24.2f}")
    print(f"{'  of which 1000 resamples':34}{'':>24}{loop_boot_s:>24.2f}")
    print(f"speed-up (loop / ours): {loop_total / ours_s:.1f}x   (target >= 10x)")
    print(
        f"a loop re-running all {len(grid)} starts per resample: ~{loop_starts_s * N_BOOTSTRAP / 3600:.0f} h "
        f"(extrapolated), ~{loop_starts_s * N_BOOTSTRAP / ours_s:.0f}x ours"
    )
    print(
        f"memory of our fit: tracemalloc peak {traced_peak_mib:.1f} MiB; process max RSS {rss_mib:.0f} MiB "
        "(interpreter, numpy, scipy, pandas included)"
    )


def _triple(theta: np.ndarray) -> str:
    return f"{np.exp(theta[2]):.4f} {theta[3]:.4f} {theta[4]:.4f}"


def _pair(a: float, b: float) -> str:
    return f"{a:.4f} {b:.4f}"


if __name__ == "__main__":
    main()

"""The driver's peak memory against the number of trials: studies of one-step trials, each run in a fresh process.

Target: flat in the number of finished trials (the driver keeps Tune's per-trial bookkeeping, not the results, which
the trials write to Parquet themselves). Prints the peak RSS of `scalesweep run` for each study size and the ratio of
the largest to the smallest. Run: ``python benchmarks/driver_memory.py`` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def one_step_study(name: str, n_trials: int, results: Path) -> dict:
    """`n_trials` cells of one optimizer step each (the seed axis makes them distinct)."""
    return {
        "name": name,
        "results": str(results),
        "data": {"corpus": "synthetic", "synthetic": {"vocab_size": 32, "tokens": 20000}, "eval_tokens": 256},
        "model": {"sizes": ["1x16"], "head_dim": 16, "seq_len": 16},
        "grid": {"tokens": [64], "seed": list(range(n_trials))},
        "train": {"batch_size": 4, "warmup_steps": 0, "eval_interval": 1},
    }


DRIVER = (
    "import resource, sys\n"
    "from orchestrator.cli import main\n"
    "code = main(['run', sys.argv[1]])\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def peak_rss_mib(spec_file: Path) -> tuple[float, float, str]:
    """Run `scalesweep run` as a fresh driver process; its own peak resident memory (MiB), wall seconds, summary."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, str(spec_file)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    peak_kib = int(lines[-1].split()[1])  # the driver's own peak (RUSAGE_SELF), not Ray's processes
    return peak_kib / 1024, wall, lines[-2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            spec_file = Path(tmp) / f"load-{n}.yaml"
            spec_file.write_text(yaml.safe_dump(one_step_study(f"load-{n}", n, Path(tmp) / f"r{n}")))
            peaks[n], wall, summary = peak_rss_mib(spec_file)
            print(f"{n:>4} trials: driver peak RSS {peaks[n]:7.1f} MiB, {wall:6.1f}s wall  [{summary}]", flush=True)
    low, high = min(peaks), max(peaks)
    print(f"peak RSS {high} trials / {low} trials = {peaks[high] / peaks[low]:.3f} (target: flat, ≈ 1)")


if __name__ == "__main__":
    main()

"""Running a spikes study (``kind: spikes``, `sweeps.spikes`): the function part as Ray tasks, then the lm part.

Before anything runs: write the resolved spec and read which trial ids already have a finished row (a rerun skips
them). Each unfinished function run becomes one ``ray.remote`` task with ``resources.cpus_per_task`` CPUs (and as many
torch threads) and ``resources.retries`` retries; it trains, probes and writes its ``steps``, ``probes`` and ``trials``
rows (`models.function`), the trials row last, so a run with a trials row is complete. One progress line counts runs.
The lm part then runs as an ordinary lm study (`orchestrator.study.run_study`) into the same results directory.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from orchestrator.results import ResultsDir
from orchestrator.study import StudyResult, open_results, run_study, start_ray
from orchestrator.tasks import run_bounded
from sweeps.spec import dump_spec
from sweeps.spikes import FunctionRun, SpikesSpec, function_runs
from sweeps.tables import PROBES, STEPS, TRIALS


def function_run_task(run: dict[str, Any], results: str, *, threads: int) -> str:
    """Body of the Ray task: train one function run and write its rows; returns its status."""
    import torch

    from models.function import train_function_run
    from orchestrator.trainable import bookkeeping

    torch.set_num_threads(threads)
    function_run = FunctionRun.from_dict(run)
    rows = train_function_run(function_run)
    out = ResultsDir(results)
    out.write_rows(STEPS, function_run.trial_id, rows.steps)
    out.write_rows(PROBES, function_run.trial_id, rows.probes)
    config = {**function_run.to_dict(), "trial_id": function_run.trial_id}
    out.write_rows(TRIALS, function_run.trial_id, [bookkeeping(rows.trial, function_run.study, config, "cpu")])
    return rows.trial["status"]


def run_spikes_study(
    spec: SpikesSpec,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    stream: TextIO | None = None,
) -> StudyResult:
    stream = stream or sys.stderr
    started = time.monotonic()
    res = spec.resources
    results = open_results(spec.results_path, address, {"CPU": res.cpus_per_task})
    results.write_text("spec.yaml", dump_spec(spec))
    runs = function_runs(spec)
    finished = results.finished_ids()
    todo = [run for run in runs if run.trial_id not in finished]
    statuses = _run_function_part(spec, todo, results, address, max_concurrent, stream) if todo else []
    if runs and not todo:
        print(f"[{spec.name}] function part: all {len(runs)} runs are finished in {results.uri}", file=stream)
    part = StudyResult(
        results.uri,
        len(runs),
        len(runs) - len(todo),
        len(todo),
        statuses.count("ok"),
        statuses.count("diverged"),
        len(todo) - statuses.count("ok") - statuses.count("diverged"),
        time.monotonic() - started,
    )
    lm = spec.lm_study()
    if lm is None:
        return part
    other = run_study(lm, address=address, max_concurrent=max_concurrent, stream=stream, write_spec=False)
    return StudyResult(
        results.uri,
        *(a + b for a, b in zip(_counts(part), _counts(other), strict=True)),
        time.monotonic() - started,
    )


def spikes_plan_text(spec: SpikesSpec, results: ResultsDir) -> str:
    """Dry run: the function runs (how many finished) and the lm part's plan."""
    from orchestrator.plan import format_plan, plan, planned_vocab_size
    from sweeps.grid import expand

    lines = []
    runs = function_runs(spec)
    if spec.function is not None:
        part = spec.function
        finished = results.finished_ids()
        left = sum(run.trial_id not in finished for run in runs)
        lines.append(
            f"function part: {len(runs)} runs (lr {', '.join(f'{lr:g}' for lr in part.lr)} × seed "
            f"{', '.join(map(str, part.seed))}), {part.steps} full-batch steps each, a curvature probe every "
            f"{part.probes.every} steps; {len(runs) - left} finished, {left} to run"
        )
    lm = spec.lm_study()
    if lm is not None:
        lines.append("lm part:")
        lines.append(format_plan(plan(expand(lm), results.trial_statuses(), planned_vocab_size(lm.data))))
    return "\n".join(lines)


def _counts(result: StudyResult) -> tuple[int, ...]:
    return result.total, result.skipped, result.ran, result.ok, result.diverged, result.failed


def _run_function_part(
    spec: SpikesSpec,
    todo: list[FunctionRun],
    results: ResultsDir,
    address: str | None,
    max_concurrent: int | None,
    stream: TextIO,
) -> list[str]:
    """Run ``todo`` as Ray tasks, at most as many at once as the cluster has slots; the statuses of those that ran."""
    print(f"[{spec.name}] function part: running {len(todo)} runs", file=stream, flush=True)
    start_ray(address)
    outcomes = run_bounded(
        spec.name,
        todo,
        function_run_task,
        lambda run: (run.to_dict(), results.uri),
        cpus=spec.resources.cpus_per_task,
        retries=spec.resources.retries,
        limit=max_concurrent,
        unit="function runs",
        stream=stream,
        describe=lambda run: f"run {run.trial_id}",
    )
    return [status if isinstance(status, str) else "failed" for _, status in outcomes]

"""Function runs as bounded Ray tasks: the runner of ``sweeps.spikes.FunctionRun`` units (the function part of a
spikes study; its lm part is ordinary language-model trials).

Each unfinished run becomes one Ray task with ``resources.cpus_per_task`` CPUs (and as many torch threads) and
``resources.retries`` retries; it trains, probes and writes its ``steps``, ``probes`` and run rows
(`models.function`), the run row last, so a run with a row is complete.
"""

from __future__ import annotations

from typing import Any

from orchestrator.results import FINISHED, ResultsDir
from orchestrator.tasks import TaskRun, TaskRunner
from sweeps.spikes import FunctionRun, SpikesSpec
from sweeps.tables import PROBES, STEPS, TABLES


def function_run_task(config: dict[str, Any], *, threads: int) -> dict[str, str]:
    """Body of the Ray task: train one function run and write its rows."""
    import torch

    from models.function import train_function_run
    from orchestrator.trainable import bookkeeping

    torch.set_num_threads(threads)
    task = TaskRun.from_config(config)
    run = FunctionRun.from_config(task.unit)
    rows = train_function_run(run)
    out = ResultsDir(task.results)
    out.write_rows(STEPS, run.run_id, rows.steps)
    out.write_rows(PROBES, run.run_id, rows.probes)
    config_json = {**run.to_config(), "run_id": run.run_id}
    out.write_rows(TABLES[FunctionRun.TABLE], run.run_id, [bookkeeping(rows.run, run.study, config_json, "cpu")])
    return {run.run_id: rows.run["status"]}


class FunctionRunner(TaskRunner):
    """Runs ``FunctionRun`` units."""

    noun = "function runs"
    body = staticmethod(function_run_task)

    def plan_text(self, spec: SpikesSpec, units: list[FunctionRun], statuses: dict[str, str]) -> str:
        part = units[0].part
        left = sum(statuses.get(run.run_id) not in FINISHED for run in units)
        return (
            f"function part: {len(units)} runs (lr {', '.join(f'{lr:g}' for lr in part.lr)} × seed "
            f"{', '.join(map(str, part.seed))}), {part.steps} full-batch steps each, a curvature probe every "
            f"{part.probes.every} steps; {len(units) - left} finished, {left} to run"
        )

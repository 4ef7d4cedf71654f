"""Recovery batches as bounded Ray tasks: the runner of ``sweeps.recovery.RecoveryBatch`` units.

Each batch with unfinished seeds becomes one Ray task with ``resources.cpus_per_task`` CPUs (and as many torch
threads) and ``resources.retries`` retries; it trains its seeds (``models.probes.recovery.run_batch``) and writes each
seed's row atomically as ``recovery/<task_id>.parquet``, so a crash loses at most the batch in flight. At most
``max_concurrent`` batches are in flight.
"""

from __future__ import annotations

from typing import Any

from orchestrator.results import FINISHED, ResultsDir
from orchestrator.tasks import TaskRun, TaskRunner
from sweeps.recovery import RecoveryBatch, RecoverySpec
from sweeps.tables import RECOVERY


def run_batch_task(config: dict[str, Any], *, threads: int) -> dict[str, str]:
    """Body of the Ray task: train one batch, write one row file per task id."""
    import torch

    from models.probes.recovery import run_batch

    torch.set_num_threads(threads)
    run = TaskRun.from_config(config)
    batch = RecoveryBatch.from_config(run.unit)
    out = ResultsDir(run.results)
    for row in run_batch(batch, vectorize=batch.vectorize):
        out.write_rows(RECOVERY, row["task_id"], [row])
    return dict.fromkeys(batch.unit_ids, "ok")


class RecoveryRunner(TaskRunner):
    """Runs ``RecoveryBatch`` units; a task is one seed of a batch."""

    noun = "tasks"
    body = staticmethod(run_batch_task)

    def plan_text(self, spec: RecoverySpec, units: list[RecoveryBatch], statuses: dict[str, str]) -> str:
        """Per setting its optimistic sample size, n values, seeds, init scales and tasks to run."""
        from models.probes.recovery import optimistic_sample_size

        lines = []
        total = todo = 0
        for setting in spec.settings:
            batches = [b for b in units if b.setting == setting]
            tasks = [task for b in batches for task in b.unit_ids]
            left = sum(statuses.get(task) not in FINISHED for task in tasks)
            total, todo = total + len(tasks), todo + left
            lines.append(
                f"  {setting.label}: optimistic sample size {optimistic_sample_size(setting)}, "
                f"n = {sorted({b.n for b in batches})}, {len(batches[0].seeds) if batches else 0} seeds, "
                f"init std {', '.join(f'{s:g}' for s in spec.init_scales)}: {len(tasks)} tasks, {left} to run"
            )
        lines.append(f"{total} tasks, {total - todo} finished, {todo} to run")
        return "\n".join(lines)

"""Running a recovery study: spec → unfinished tasks → Ray tasks (one per batch of seeds) → ``recovery/`` Parquet.

Before anything runs: expand the spec into batches (``sweeps.recovery.recovery_batches``), read which task ids
already have a row in ``RESULTS/recovery`` (those seeds are dropped, so a rerun is a no-op and a grown axis runs only
its new tasks), and write the resolved spec. Then every batch with unfinished seeds becomes one ``ray.remote`` task
with ``resources.cpus_per_task`` CPUs (and as many torch threads) and ``resources.retries`` retries; it trains its
seeds (``models.probes.recovery.run_batch``) and writes each seed's row atomically as ``recovery/<task_id>.parquet``,
so a crash loses at most the batch in flight. At most ``max_concurrent`` batches are in flight; one progress line
(tasks done, batches running, failures, ETA by tasks) is redrawn on a terminal and printed per batch in a log.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.results import ResultsDir
from orchestrator.study import StudyResult, open_results, start_ray
from orchestrator.tasks import run_bounded
from sweeps.recovery import RecoveryBatch, RecoverySpec, recovery_batches
from sweeps.spec import dump_spec
from sweeps.tables import RECOVERY


def finished_task_ids(results: ResultsDir) -> set[str]:
    """Task ids with a readable row in ``recovery/``; an unreadable file counts as unfinished and is rerun."""
    fs, _ = pafs.FileSystem.from_uri(results.uri)
    done: set[str] = set()
    for path in results.table_files(RECOVERY):
        try:
            done.update(pq.read_table(path, columns=["task_id"], filesystem=fs)["task_id"].to_pylist())
        except (OSError, ValueError, KeyError):
            continue
    return done


def pending_batches(spec: RecoverySpec, finished: set[str]) -> list[RecoveryBatch]:
    """The study's batches restricted to their unfinished seeds (empty batches left out)."""
    out = []
    for batch in recovery_batches(spec):
        seeds = tuple(s for s in batch.seeds if batch.task_id(s) not in finished)
        if seeds:
            out.append(batch.only(seeds))
    return out


def run_batch_task(batch: dict[str, Any], results: str, vectorize: bool, *, threads: int) -> int:
    """Body of the Ray task: train one batch, write one row file per task id; returns the rows written."""
    import torch

    from models.probes.recovery import run_batch

    torch.set_num_threads(threads)
    rows = run_batch(RecoveryBatch.from_dict(batch), vectorize=vectorize)
    out = ResultsDir(results)
    for row in rows:
        out.write_rows(RECOVERY, row["task_id"], [row])
    return len(rows)


def run_recovery_study(
    spec: RecoverySpec,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    stream: TextIO | None = None,
) -> StudyResult:
    stream = stream or sys.stderr
    started = time.monotonic()
    results = open_results(spec.results_path, address, {"CPU": spec.resources.cpus_per_task})
    total = sum(len(b.seeds) for b in recovery_batches(spec))
    todo = pending_batches(spec, finished_task_ids(results))
    results.write_text("spec.yaml", dump_spec(spec))
    pending = sum(len(b.seeds) for b in todo)
    if not todo:
        print(f"[{spec.name}] nothing to run: all {total} tasks are finished in {results.uri}", file=stream)
        return StudyResult(results.uri, total, total, 0, 0, 0, 0, time.monotonic() - started)
    print(f"[{spec.name}] running {pending} of {total} tasks in {len(todo)} batches", file=stream, flush=True)

    start_ray(address)
    res = spec.resources
    outcomes = run_bounded(
        spec.name,
        todo,
        run_batch_task,
        lambda batch: (batch.to_dict(), results.uri, res.vmap_seeds),
        cpus=res.cpus_per_task,
        retries=res.retries,
        limit=max_concurrent or res.max_concurrent,
        unit="tasks",
        stream=stream,
        size=lambda batch: len(batch.seeds),
        describe=lambda batch: f"a batch of {len(batch.seeds)} tasks",
    )
    ok = sum(rows for _, rows in outcomes if isinstance(rows, int))
    failed = sum(len(batch.seeds) for batch, rows in outcomes if not isinstance(rows, int))
    return StudyResult(results.uri, total, total - pending, pending, ok, 0, failed, time.monotonic() - started)


def recovery_plan_text(spec: RecoverySpec, results: ResultsDir) -> str:
    """Dry run: per setting its optimistic sample size, n values, seeds, init scales and tasks to run."""
    from models.probes.recovery import optimistic_sample_size

    finished = finished_task_ids(results)
    lines = []
    total = todo = 0
    for setting in spec.settings:
        batches = [b for b in recovery_batches(spec) if b.setting is setting]
        tasks = [b.task_id(s) for b in batches for s in b.seeds]
        left = sum(t not in finished for t in tasks)
        total, todo = total + len(tasks), todo + left
        lines.append(
            f"  {setting.label}: optimistic sample size {optimistic_sample_size(setting)}, "
            f"n = {sorted({b.n for b in batches})}, {len(batches[0].seeds) if batches else 0} seeds, "
            f"init std {', '.join(f'{s:g}' for s in spec.init_scales)}: {len(tasks)} tasks, {left} to run"
        )
    lines.append(f"{total} tasks, {total - todo} finished, {todo} to run")
    return "\n".join(lines)

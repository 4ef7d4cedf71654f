"""Running a study: spec → unfinished cells → one Ray Tune grid → Parquet.

The steps, in order, each before any trial starts: expand the grid, read which trial ids already have a finished row
(those are skipped, so a rerun is a no-op and a grown axis runs only its new cells), write the resolved spec, and build
or reuse the token cache (which also checks that the corpus holds the largest D). Then one ``Tuner`` runs the remaining
cells as a ``tune.grid_search`` over their configs, one trial per cell, with per-trial resources, a concurrency limit,
``FailureConfig`` retries from the trial's last checkpoint, and a single progress line. With ``probes.curvature`` the
study also starts a probe queue (`orchestrator.probes`) and returns only when every probe its trials handed off is
written (or has failed: a failed probe is reported, its checkpoint kept for ``scalesweep probe``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO

from models.data import prepare_tokens
from orchestrator.plan import plan
from orchestrator.results import FINISHED, ResultsDir
from orchestrator.storage import check_results_storage
from sweeps.grid import expand
from sweeps.spec import ResourcesSpec, SpecError, StudySpec, dump_spec

# Trials keep the driver's working directory, so relative paths in a spec mean the same thing inside a trial.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# Tune's newer output engine prints its own tables whatever the verbosity; the legacy engine with a silent reporter
# leaves the terminal to our single progress line.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@dataclass(frozen=True)
class StudyResult:
    results: str
    total: int
    skipped: int
    ran: int
    ok: int
    diverged: int
    failed: int
    wall_s: float

    def summary(self) -> str:
        return (
            f"{self.total} trials: {self.skipped} already finished, {self.ran} ran "
            f"({self.ok} ok, {self.diverged} diverged, {self.failed} failed) in {self.wall_s:.0f}s → {self.results}"
        )


# What a distributed trial's driver reserves: memory only, so its workers can take every CPU (Ray rejects an all-zero
# resource request).
DRIVER_MEMORY = 256 * 2**20


def _single_node_on_loopback() -> None:
    """Make this process's Ray a single-node Ray on 127.0.0.1.

    On Linux, Ray turns a requested 127.0.0.1 into the machine's outward address so that other nodes could join;
    its single-node mode (the one it uses on macOS and Windows) keeps every address on loopback. The flag is read when
    Ray is imported, so it is set in the environment (for the processes Ray starts) and on the loaded constant.
    """
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a private local Ray bound to 127.0.0.1 with the dashboard off."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        _single_node_on_loopback()
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )


def open_results(location: str, address: str | None, per_trial: dict[str, float]) -> ResultsDir:
    """The study's results location, refused before anything is written if cluster nodes could not all reach it.

    On a cluster (`address` given) Ray is joined first and a node-local path is refused; a private local Ray is one
    node, so any local path will do.
    """
    results = ResultsDir.at(location)
    if address:
        start_ray(address)
        check_results_storage(results.uri, trial_resources=per_trial)
    return results


def run_study(
    spec: StudySpec,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    stream: TextIO | None = None,
    write_spec: bool = True,
) -> StudyResult:
    """Run the unfinished trials of ``spec`` (module docstring). ``write_spec=False`` leaves ``spec.yaml`` to a caller
    whose study this one is a part of (the lm part of a spikes study)."""
    import ray
    from ray import tune

    from orchestrator.probes import start_queue
    from orchestrator.progress import ProgressLine, SilentReporter
    from orchestrator.trainable import run_distributed_trial, run_trial

    stream = stream or sys.stderr
    started = time.monotonic()
    res = spec.resources
    per_trial = {"CPU": res.cpus_per_trial * res.workers, "GPU": res.gpus_per_trial * res.workers}
    results = open_results(spec.results_path, address, per_trial)
    if spec.probes and spec.probes.curvature and not results.is_local:
        raise SpecError(
            f"probes.curvature: probe checkpoints need a local or NFS results path (got {results.uri}); "
            "run the probes on a mounted path"
        )
    trials = expand(spec)
    statuses = results.trial_statuses()
    todo = [t for t in trials if statuses.get(t.trial_id) not in FINISHED]
    if write_spec:
        results.write_text("spec.yaml", dump_spec(spec))

    def say(message: str) -> None:
        print(f"[{spec.name}] {message}", file=stream, flush=True)

    store = prepare_tokens(spec.data, min_train_tokens=max(t.tokens for t in trials), progress=say)
    if not todo:
        say(f"nothing to run: all {len(trials)} trials are finished in {results.uri}")
        return StudyResult(results.uri, len(trials), len(trials), 0, 0, 0, 0, time.monotonic() - started)

    planned = plan(todo, statuses, store.vocab_size)
    say(
        f"running {len(todo)} of {len(trials)} trials ({len(trials) - len(todo)} already finished), "
        f"{sum(p.flops for p in planned):.3g} FLOPs"
    )
    start_ray(address)
    curvature = spec.probes.curvature if spec.probes else None
    queue, queue_name = start_queue() if curvature else (None, None)
    progress = ProgressLine(spec.name, {p.trial.trial_id: p.flops for p in planned}, stream)
    if res.workers == 1:
        trainable = tune.with_resources(run_trial, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    else:  # the trial only drives a Ray Train run whose workers hold the CPUs and GPUs
        trainable = tune.with_resources(run_distributed_trial, {"cpu": 0, "memory": DRIVER_MEMORY})
        max_concurrent = max_concurrent or res.max_concurrent or _distributed_slots(res)
    tuner = tune.Tuner(
        trainable,
        param_space={
            "trial": tune.grid_search([t.to_dict() for t in todo]),
            "results": results.uri,
            "torch_threads": res.torch_threads or max(1, int(res.cpus_per_trial)),
            "use_gpu": res.gpus_per_trial > 0,
            "workers": res.workers,
            "cpus_per_worker": res.cpus_per_trial,
            "gpus_per_worker": res.gpus_per_trial,
            "fsdp_min_params": res.fsdp_min_params,
            "retries": res.retries,
            "probes": curvature.model_dump() if curvature else None,
            "probe_queue": queue_name,
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent or res.max_concurrent,
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S"),
            storage_path=results.path("tune"),
            failure_config=tune.FailureConfig(max_failures=res.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
            callbacks=[progress],
            progress_reporter=SilentReporter(),
        ),
    )
    try:
        tuner.fit()
    finally:
        progress.close()
    if queue is not None:  # the trials handed their probes off; the study is done when the probes are
        unfinished = ray.get(queue.unfinished.remote())
        if unfinished:
            say(f"training done; waiting for {unfinished} curvature probe(s) still running or queued")
        say(ray.get(queue.drain.remote()).line())
        ray.kill(queue)
    after = results.trial_statuses()
    outcomes = [after.get(t.trial_id, "failed") for t in todo]
    return StudyResult(
        results.uri,
        len(trials),
        len(trials) - len(todo),
        len(todo),
        outcomes.count("ok"),
        outcomes.count("diverged"),
        outcomes.count("failed"),
        time.monotonic() - started,
    )


def _distributed_slots(res: ResourcesSpec) -> int:
    """How many k-worker trials the cluster can hold at once, so waiting drivers do not pile up (Ray Train's advice)."""
    import ray

    available = ray.cluster_resources()
    slots = available.get("CPU", 0) // (res.workers * res.cpus_per_trial)
    if res.gpus_per_trial:
        slots = min(slots, available.get("GPU", 0) // (res.workers * res.gpus_per_trial))
    return max(1, int(slots))


def _trial_name(trial: object) -> str:
    return trial.config["trial"]["trial_id"]  # type: ignore[attr-defined]

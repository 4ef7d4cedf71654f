"""Language-model trials as one Ray Tune grid: the runner of ``sweeps.grid.TrialConfig`` units.

Before anything is written, the token cache is built or reused (which also checks that the corpus holds the largest D)
and a probed study's results location is checked. Then one ``Tuner`` runs the trials as a ``tune.grid_search`` over
their runs (``orchestrator.trainable.TrialRun``), each with its own resources (``tune.with_resources``), at most
``max_concurrent`` at once, retried from its last checkpoint (``FailureConfig``), with the study's one progress line.
With ``probes.curvature`` a probe queue (`orchestrator.probes`) takes the probe checkpoints the trials hand off, and
the grid returns only when every probe is written (or has failed: it is reported, its checkpoint kept for
``scalesweep probe``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

from models.data import prepare_tokens
from orchestrator.plan import format_plan, plan, planned_vocab_size
from orchestrator.progress import Piece, Progress, SilentReporter, TuneProgress
from orchestrator.results import FINISHED, ResultsDir
from sweeps.base import SpecError, StudyBase
from sweeps.grid import TrialConfig
from sweeps.spec import ResourcesSpec
from sweeps.tables import TRIALS

# Trials keep the driver's working directory, so relative paths in a spec mean the same thing inside a trial.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# Tune's newer output engine prints its own tables whatever the verbosity; the legacy engine with a silent reporter
# leaves the terminal to our single progress line.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C must reach the driver as KeyboardInterrupt (the study then says what is finished and exits 130): Tune's own
# handler would swallow it, end fit() normally and leave the unfinished trials looking as if they had failed.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

# What a distributed trial's driver reserves: memory only, so its workers can take every CPU (Ray rejects an all-zero
# resource request).
DRIVER_MEMORY = 256 * 2**20


def _say_if_data_changed(trial: TrialConfig, results: ResultsDir, say: Callable[[str], None]) -> None:
    """One line when finished trials of this study here trained on other text than its corpus holds now: their ids
    named that text, so the study's cells now run as new trials beside them."""
    now = trial.data.fingerprint
    earlier = Counter(
        row["corpus_fingerprint"]
        for row in results.rows(TRIALS)
        if row["study"] == trial.study and row["status"] in FINISHED and row["corpus_fingerprint"] not in (None, now)
    )
    if now is not None and earlier:
        before = ", ".join(fingerprint[:12] for fingerprint in earlier)
        say(
            f"data changed: {trial.data.corpus_name} now holds text {now[:12]}, {earlier.total()} finished trial(s) "
            f"here trained on {before}; its cells run as new trials and the earlier rows are kept"
        )


class TrialRunner:
    """Runs ``TrialConfig`` units (every trial of one study shares its data, resources and probes)."""

    noun = "trials"

    def resources(self, spec: StudyBase, units: list[TrialConfig]) -> dict[str, float]:
        res = units[0].resources
        return {"CPU": res.cpus_per_trial * res.workers, "GPU": res.gpus_per_trial * res.workers}

    def prepare(
        self, spec: StudyBase, units: list[TrialConfig], *, results: ResultsDir, say: Callable[[str], None]
    ) -> None:
        probed = units[0].probes is not None and units[0].probes.curvature is not None
        if probed and not results.is_local:
            raise SpecError(
                f"probes.curvature: probe checkpoints need a local or NFS results path (got {results.uri}); "
                "run the probes on a mounted path"
            )
        prepare_tokens(units[0].data, min_train_tokens=max(t.tokens for t in units), progress=say)
        _say_if_data_changed(units[0], results, say)

    def execute(
        self,
        spec: StudyBase,
        units: list[TrialConfig],
        *,
        results: ResultsDir,
        max_concurrent: int | None,
        stream: TextIO,
    ) -> None:
        from ray import tune

        from orchestrator.probes import finish_queue, start_queue
        from orchestrator.trainable import TrialRun, run_distributed_trial, run_trial

        store = prepare_tokens(units[0].data)
        planned = plan(units, {}, store.vocab_size)
        res, curvature = units[0].resources, units[0].probes and units[0].probes.curvature
        queue, queue_name = start_queue() if curvature else (None, None)
        work = {p.trial.trial_id: Piece(p.trial.shape.label, p.tokens, p.flops) for p in planned}
        progress = Progress(spec.name, len(units), noun=self.noun, work=work, stream=stream)
        callback = TuneProgress(progress)
        if res.workers == 1:
            trainable = tune.with_resources(run_trial, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
        else:  # the trial only drives a Ray Train run whose workers hold the CPUs and GPUs
            trainable = tune.with_resources(run_distributed_trial, {"cpu": 0, "memory": DRIVER_MEMORY})
            max_concurrent = max_concurrent or res.max_concurrent or distributed_slots(res)
        runs = [TrialRun(trial=t, results=results.uri, probe_queue=queue_name) for t in units]
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search([r.to_config() for r in runs])},
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
                callbacks=[callback],
                progress_reporter=SilentReporter(),
            ),
        )
        tune_log = logging.getLogger("ray.tune")
        level = tune_log.level
        # A failed trial is one line from TuneProgress; Tune's tracebacks stay in its error files under RESULTS/tune.
        tune_log.setLevel(logging.CRITICAL)
        try:
            tuner.fit()
        except Exception as err:  # Tune itself failed (a full disk): the rows on disk tell each trial's outcome
            last = str(err).strip().splitlines()[-1:] or [""]
            progress.note(f"Ray Tune stopped early ({type(err).__name__}: {last[0]}); the rows written so far count")
        finally:
            tune_log.setLevel(level)
            progress.close()
        if queue is not None:  # the trials handed their probes off; the study is done when the probes are
            finish_queue(queue, spec.name, stream)

    def plan_text(self, spec: StudyBase, units: list[TrialConfig], statuses: dict[str, str]) -> str:
        return format_plan(plan(units, statuses, planned_vocab_size(units[0].data)))


def distributed_slots(res: ResourcesSpec) -> int:
    """How many k-worker trials the cluster can hold at once, so waiting drivers do not pile up (Ray Train's advice)."""
    import ray

    available = ray.cluster_resources()
    slots = available.get("CPU", 0) // (res.workers * res.cpus_per_trial)
    if res.gpus_per_trial:
        slots = min(slots, available.get("GPU", 0) // (res.workers * res.gpus_per_trial))
    return max(1, int(slots))


def _trial_name(trial: object) -> str:
    return trial.config["run"]["trial"]["trial_id"]  # type: ignore[attr-defined]

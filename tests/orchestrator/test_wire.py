"""The typed objects that cross into a Tune trial and a Ray task survive the trip as JSON unchanged: what a worker
rebuilds is the trial or unit the driver meant, with its resources and probe settings."""

from __future__ import annotations

import json

from orchestrator.tasks import TaskRun
from orchestrator.trainable import TrialRun
from sweeps.studies import builtin_spec_path, load_spec, units_of


def _over_the_wire(config: dict) -> dict:
    return json.loads(json.dumps(config))


def test_a_trial_run_is_rebuilt_with_its_resources_and_probes() -> None:
    lm = [unit for unit in units_of(load_spec(builtin_spec_path("adam-spikes"))) if type(unit).TABLE == "trials"]
    assert lm and all(trial.probes is not None for trial in lm)
    for trial in lm:
        run = TrialRun(trial, "/somewhere/results", probe_queue="probes-adam-spikes")
        rebuilt = TrialRun.from_config(_over_the_wire(run.to_config()))
        assert rebuilt == run
        assert rebuilt.trial.trial_id == trial.trial_id
        assert rebuilt.trial.resources == trial.resources and rebuilt.trial.probes == trial.probes


def test_a_task_run_is_rebuilt_with_its_unit() -> None:
    for name in ("recovery-neuron", "adam-spikes"):
        for unit in units_of(load_spec(builtin_spec_path(name))):
            if type(unit).TABLE == "trials":
                continue
            run = TaskRun(unit.to_config(), "s3://bucket/study")
            rebuilt = TaskRun.from_config(_over_the_wire(run.to_config()))
            assert rebuilt.results == run.results and type(unit).from_config(rebuilt.unit) == unit

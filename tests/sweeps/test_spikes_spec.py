"""The spikes study spec: two parts, one name, trial ids that follow the semantic config."""

from __future__ import annotations

import pytest
import yaml

from sweeps.base import SpecError
from sweeps.grid import TrialConfig
from sweeps.spikes import FunctionRun, function_runs
from sweeps.studies import builtin_spec_path, dump_spec, load_spec, parse_spec, units_of

FUNCTION = {"steps": 100, "lr": [0.01, 0.003], "seed": [0, 1]}
LM = {
    "data": {"corpus": "synthetic"},
    "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [4096]},
    "train": {"batch_size": 8},
}


def test_the_shipped_study_is_function_runs_and_lm_trials_of_one_study() -> None:
    spec = load_spec(builtin_spec_path("adam-spikes"))
    assert spec.kind == "spikes" and len(function_runs(spec)) == 4
    units = units_of(spec)
    assert [type(u) for u in units] == [FunctionRun] * 4 + [TrialConfig] * 2
    trials = units[4:]
    assert {t.study for t in units} == {"adam-spikes"}  # the lm part takes the study's name
    assert all(t.probes.curvature.every == 10 and t.train.adam_stats.every == 1 for t in trials)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "spikes", "name": "s"}, "give a function part, an lm part, or both"),
        ({"kind": "spikes", "name": "s", "lm": {**LM, "name": "x"}}, "lm.name: unknown key"),
        ({"kind": "spikes", "name": "s", "function": {**FUNCTION, "lr": []}}, "function.lr"),
        ({"kind": "spikes", "name": "s", "function": {**FUNCTION, "lrs": [1]}}, "function.lrs: unknown key"),
        ({"kind": "spikes", "name": "s", "lm": {**LM, "grid": {"tokens": [1]}}}, "lm: grid.tokens value 1"),
    ],
)
def test_bad_spikes_specs_fail_in_one_line(raw: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw, "s.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_run_ids_follow_the_semantic_config_only() -> None:
    base = parse_spec({"kind": "spikes", "name": "a", "function": FUNCTION})
    ids = [run.run_id for run in function_runs(base)]
    assert len(set(ids)) == 4 and all(i.startswith("fc-") for i in ids)
    renamed = parse_spec(
        {"kind": "spikes", "name": "b", "results": "/x", "function": {**FUNCTION, "adam_stats": {"every": 7}}}
    )
    assert [run.run_id for run in function_runs(renamed)] == ids  # name, paths and read-only statistics
    longer = parse_spec({"kind": "spikes", "name": "a", "function": {**FUNCTION, "steps": 101}})
    assert not set(run.run_id for run in function_runs(longer)) & set(ids)


def test_a_dumped_spec_loads_again_as_the_same_study() -> None:
    """What ``spec.yaml`` holds after a run is what ``scalesweep resume`` reads back."""
    spec = load_spec(builtin_spec_path("adam-spikes")).model_copy(update={"results": "/r"})
    again = parse_spec(yaml.safe_load(dump_spec(spec)), "spec.yaml")
    assert again == spec and units_of(again) == units_of(spec)

"""Recovery studies on a real local Ray: spec validation, tasks → rows, reruns skip finished task ids, the plan."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.study import plan_text, run_study
from sweeps.base import SpecError
from sweeps.recovery import RecoverySpec, recovery_batches
from sweeps.studies import builtin_spec_path, load_spec, parse_spec
from sweeps.tables import RECOVERY

TOY = {
    "kind": "recovery",
    "name": "toy-recovery",
    "settings": [
        {"target": {"family": "linear", "coefficients": [1.0, 1.0, 0.0]}, "student": {"family": "toy"}},
        {"target": {"family": "linear", "coefficients": [1.0, 1.0, 0.0]}, "student": {"family": "affine"}},
    ],
    "n": [2, 3],
    "seeds": 2,
    "train": {"lr": 0.2, "max_steps": 20000},
}


@pytest.mark.parametrize("name", ["recovery-matrix", "recovery-tanh", "recovery-neuron"])
def test_ready_made_studies_validate(name: str) -> None:
    spec = load_spec(builtin_spec_path(name))
    assert isinstance(spec, RecoverySpec)
    assert recovery_batches(spec)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"settings": [{"target": {"family": "matrix"}, "student": {"family": "cnn1d"}}]}, "cannot fit a 'matrix'"),
        ({"init_scales": [3.0]}, "init scale (std) 3 is above 1"),
        ({"n": None}, "give n"),
        (
            {"settings": [{"target": {"family": "matrix"}, "student": {"family": "matrix_factorization"}}], "n": [17]},
            "exceeds the 16 entries",
        ),
        ({"seedz": 3}, "unknown key"),
    ],
)
def test_bad_recovery_specs_get_one_line(change: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**TOY, **change}, "spec.yaml")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.ray
def test_toy_study_runs_as_ray_tasks_and_reruns_only_new_tasks(ray_local, tmp_path: Path) -> None:
    spec = parse_spec({**TOY, "results": str(tmp_path / "toy")})
    first = run_study(spec, stream=io.StringIO())
    assert (first.total, first.ran, first.ok, first.failed) == (8, 8, 8, 0)

    rows = pd.read_parquet(tmp_path / "toy" / RECOVERY.name)
    assert sorted(rows.task_id) == sorted(t for b in recovery_batches(spec) for t in b.unit_ids)
    recovered = rows.groupby(["student", "n"]).recovered.all().to_dict()
    assert recovered == {("affine", 2): False, ("affine", 3): True, ("toy", 2): True, ("toy", 3): True}
    assert set(rows.model_rank_theory[rows.student == "toy"]) == {2}

    again = run_study(spec, stream=io.StringIO())
    assert (again.skipped, again.ran) == (8, 0)

    grown = spec.model_copy(update={"seeds": 3})
    stream = io.StringIO()
    third = run_study(grown, stream=stream)
    assert (third.total, third.skipped, third.ran, third.ok) == (12, 8, 4, 4)
    assert "12/12" not in stream.getvalue() and "4/4 tasks done" in stream.getvalue()
    assert "12 tasks, 12 finished, 0 to run" in plan_text(grown)

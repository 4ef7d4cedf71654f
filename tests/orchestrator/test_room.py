"""A study whose units no node of the local Ray can host is refused in one line before anything is written (it would
otherwise wait forever for a GPU or CPUs this machine does not have)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrator.study import NoRoomError, run_study
from sweeps.studies import parse_spec

pytestmark = pytest.mark.ray


@pytest.mark.parametrize(
    ("resources", "asks"),
    [
        ({"gpus_per_trial": 1}, "asks for 1 CPU, 1 GPU, but this machine's Ray has 2 CPU, 0 GPU"),
        ({"cpus_per_trial": 3}, "asks for 3 CPU, but this machine's Ray has 2 CPU, 0 GPU"),
    ],
)
def test_a_unit_larger_than_the_machine_is_refused_before_anything_is_written(
    ray_local, tiny_study, tmp_path: Path, resources: dict, asks: str
) -> None:
    spec = parse_spec(tiny_study("room", tmp_path / "r", grid={"tokens": [4096]}, resources=resources))
    with pytest.raises(NoRoomError, match=asks) as err:
        run_study(spec, stream=io.StringIO())
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())

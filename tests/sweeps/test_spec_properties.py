"""Property-based: whatever a user writes, the spec loader and the CLI answer with one line and exit code 2 (or run)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from sweeps.base import SpecError
from sweeps.studies import load_spec, parse_spec

VALID: dict[str, Any] = {
    "name": "p",
    "data": {"corpus": "synthetic", "synthetic": {"vocab_size": 64, "tokens": 50000}, "eval_tokens": 2048},
    "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [4096], "init": [{"rate": 0.5}], "weight_decay": [0.0], "seed": [0]},
    "train": {"batch_size": 4},
    "resources": {"cpus_per_trial": 1},
}

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


# A spikes study: both parts, the lm part being the body of VALID.
VALID_SPIKES: dict[str, Any] = {
    "kind": "spikes",
    "name": "s",
    "function": {"steps": 10, "lr": [0.01], "seed": [0], "probes": {"every": 5}},
    "lm": {k: v for k, v in VALID.items() if k != "name"},
}


@st.composite
def mutated_specs(draw: st.DrawFn, base: dict[str, Any] = VALID) -> Any:
    spec = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(base)))
        parent = spec
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(junk)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(junk)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_loader_accepts_or_names_the_field_in_one_line(spec: Any) -> None:
    try:
        parse_spec(spec, "spec.yaml")
    except SpecError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("spec.yaml: ")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs(VALID_SPIKES))
def test_spikes_loader_accepts_or_names_the_field_in_one_line(spec: Any) -> None:
    try:
        parse_spec(spec, "spec.yaml")
    except SpecError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("spec.yaml: ")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_cli_plan_never_shows_a_traceback(spec: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        results = Path(tmp) / "results"
        code = main(["plan", str(path), "--results", str(results)])
        assert code in (0, 2)
        assert not results.exists()  # a dry run writes nothing, valid or not


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_file_content_is_a_spec_or_a_one_line_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(content)
        try:
            load_spec(path)
        except SpecError as err:
            assert "\n" not in str(err)


def test_cli_error_goes_to_stderr_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\x00\x01\xff binary")
    assert main(["run", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

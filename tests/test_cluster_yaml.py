"""cluster.yaml against the installed Ray's cluster-launcher schema and the cross-field rules `ray up` enforces.

The schema is Ray's own (``ray/autoscaler/ray-schema.json``), found without importing ray. Beyond it, `ray up` checks
that the head type is one of the node types and that the node types' ``min_workers`` fit in ``max_workers``
(``ray.autoscaler._private.util.validate_config``); those rules are repeated here rather than imported from a private
module. The rest pins what this project needs: a GPU worker type, an install of this project, one Ray version
everywhere, and a dashboard that is not exposed.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    spec = find_spec("ray")
    assert spec is not None and spec.submodule_search_locations, "ray is not installed"
    return json.loads((Path(spec.submodule_search_locations[0]) / "autoscaler" / "ray-schema.json").read_text())


def test_has_the_keys_the_schema_requires(config: dict[str, Any], schema: dict[str, Any]) -> None:
    assert set(schema["required"]) <= set(config)
    assert set(config) <= set(schema["properties"])  # the schema forbids other top-level keys
    assert config["provider"]["type"] == "aws"


def test_validates_against_rays_schema(config: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed; the key check above still ran")
    jsonschema.validate(config, schema)


def test_head_and_gpu_worker_types_fit_the_autoscaling_bounds(config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    assert set(types) == {"head", "gpu_worker"}
    assert config["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}  # trials never land on the head
    worker = types["gpu_worker"]
    assert worker["resources"]["GPU"] >= 1
    assert 0 <= worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]
    assert "--gpus all" in worker["docker"]["worker_run_options"]


def test_setup_installs_this_project_and_one_ray_version_everywhere(config: dict[str, Any]) -> None:
    commands = config["setup_commands"]
    checkout = next(c for c in commands if "git clone" in c).split()[-1]
    install = next(c for c in commands if "pip install" in c)
    assert f"-e {checkout}" in install, "the cloned checkout must be installed editable"
    pins = re.findall(r"ray\[default\]==([\w.]+)", install)
    image_tag = re.fullmatch(r"rayproject/ray:([\w.]+)-py\d+-gpu", config["docker"]["image"])
    assert pins and image_tag is not None
    installed = importlib.metadata.version("ray")
    assert pins == [image_tag.group(1)] == [installed], "cluster.yaml must name the Ray version installed here"


def test_dashboard_and_jobs_api_stay_on_the_heads_loopback(config: dict[str, Any]) -> None:
    start = next(c for c in config["head_start_ray_commands"] if "ray start --head" in c)
    assert "--dashboard-host=127.0.0.1" in start

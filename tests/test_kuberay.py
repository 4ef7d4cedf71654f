"""deploy/kuberay/rayjob.yaml is a RayJob the KubeRay operator accepts, and it runs a study.

No Kubernetes cluster is at hand, so the manifest is validated against the RayJob CRD's v1 openAPIV3Schema, vendored
from KubeRay v1.7.0 (tests/fixtures/kuberay/, source commit in its header). The API server applies that schema with
strict field validation (kubectl's default since Kubernetes 1.27): an unknown field is an error, as the schema
itself does not say (it has no ``additionalProperties: false``; a structural schema is closed unless a node says
``x-kubernetes-preserve-unknown-fields``). ``strict`` closes it the same way. The CEL rules
(``x-kubernetes-validations``) are not checked here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
CRD = ROOT / "tests" / "fixtures" / "kuberay" / "ray.io_rayjobs.yaml"


def strict(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others, as the API server treats it."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    lists_properties = "properties" in schema and "additionalProperties" not in schema
    if lists_properties and not schema.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    # libyaml's loader where PyYAML has it: the CRD is 1.4 MB, 10 s with the pure-Python one on a busy machine
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == "RayJob"
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    schema = strict(v1["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.fixture()
def rayjob() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def errors(validator: jsonschema.Draft4Validator, manifest: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_manifest_is_a_valid_rayjob(validator: jsonschema.Draft4Validator, rayjob: dict[str, Any]) -> None:
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    assert errors(validator, rayjob) == []


def test_manifest_runs_a_study_on_the_cluster_with_shared_results(rayjob: dict[str, Any]) -> None:
    spec = rayjob["spec"]
    entrypoint = spec["entrypoint"].split()
    assert entrypoint[:2] == ["scalesweep", "run"]
    assert entrypoint[entrypoint.index("--address") + 1] == "auto"  # joins the RayJob's cluster
    results = entrypoint[entrypoint.index("--results") + 1]
    cluster = spec["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:  # every pod mounts the one results volume where the entrypoint writes
        (container,) = template["spec"]["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in template["spec"]["volumes"]}
        assert results.startswith(mounts["results"] + "/")
        assert claims["results"] == "scalesweep-results"
    gpus = [
        g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        for g in cluster["workerGroupSpecs"]
    ]
    assert all(int(n) > 0 for n in gpus)
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # trials stay off the head


DELETE = object()


def _set(manifest: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = manifest
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        # a count written as words: replicas is an integer
        ("spec.rayClusterSpec.workerGroupSpecs.0.replicas", "two", "is not of type 'integer'"),
        # rayStartParams are strings; YAML's bare 0 is an integer
        ("spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus", 0, "is not of type 'string'"),
        # a typo of a real field: the API server rejects unknown fields
        ("spec.entrypont", "scalesweep run smoke", "Additional properties are not allowed ('entrypont'"),
        # a worker group without its required name
        ("spec.rayClusterSpec.workerGroupSpecs.0.groupName", DELETE, "'groupName' is a required property"),
        # a container without its required name
        ("spec.rayClusterSpec.headGroupSpec.template.spec.containers.0.name", DELETE, "'name' is a required property"),
    ],
)
def test_a_real_mistake_fails_validation(
    validator: jsonschema.Draft4Validator, rayjob: dict[str, Any], path: str, value: Any, complaint: str
) -> None:
    broken = copy.deepcopy(rayjob)
    _set(broken, path, value)
    found = errors(validator, broken)
    assert len(found) == 1 and complaint in found[0], found

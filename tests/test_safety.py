"""Safe by default: no unsafe YAML, no pickles of what users hand in, no shells, a private loopback Ray, no secrets in
results. Source scans catch a regression anywhere in the code; behavioural tests check the defaults for real."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "models", "orchestrator", "analysis", "benchmarks")


def calls() -> list[tuple[Path, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found += [(path, node) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
    return found


def name_of(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_yaml_is_only_safe_loaded() -> None:
    unsafe = [f"{p.name}:{c.lineno}" for p, c in calls() if name_of(c) in ("yaml.load", "yaml.unsafe_load")]
    assert unsafe == []


def test_every_torch_load_is_weights_only() -> None:
    def weights_only(call: ast.Call) -> bool:
        return any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in call.keywords)

    loose = [f"{p.name}:{c.lineno}" for p, c in calls() if name_of(c) == "torch.load" and not weights_only(c)]
    assert loose == []


def test_no_pickle_and_no_shell() -> None:
    pickles = [f"{p.name}:{c.lineno}" for p, c in calls() if name_of(c) in ("pickle.load", "pickle.loads")]
    shells = [
        f"{p.name}:{c.lineno}"
        for p, c in calls()
        if any(k.arg == "shell" and ast.unparse(k.value) != "False" for k in c.keywords)
    ]
    assert pickles == [] and shells == []


def test_a_checkpoint_holding_code_is_refused(tmp_path: Path) -> None:
    from models.checkpoint import STATE_FILE, load_state

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Payload()}, tmp_path / STATE_FILE)
    with pytest.raises(Exception, match="Weights only load failed"):
        load_state(None, 0, tmp_path, torch.device("cpu"))  # type: ignore[arg-type]


def test_local_ray_is_private_on_loopback_without_dashboard() -> None:
    probe = (
        "import ray\nfrom orchestrator.study import start_ray\nstart_ray(None, num_cpus=1)\n"
        "info = ray._private.worker.global_worker.node.address_info\n"
        "print(info['node_ip_address'], info['gcs_address'], bool(info.get('webui_url')))\nray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    node_ip, gcs, dashboard = out.stdout.split()
    assert node_ip == "127.0.0.1" and gcs.startswith("127.0.0.1:") and dashboard == "False"


@pytest.mark.ray
@pytest.mark.slow
def test_environment_secrets_never_reach_the_results(tmp_path: Path, tiny_study) -> None:
    secrets = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-0xfeed", "HF_TOKEN": "hf_s3cr3t_0xbeef"}
    spec = tiny_study(
        "secrets",
        tmp_path / "r",
        grid={"tokens": [4096], "seed": [0]},
        train={"batch_size": 8, "eval_interval": 8, "checkpoint_interval": 8},
    )
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, **secrets}
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(tmp_path / "spec.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    leaks = [str(p) for p in files for value in secrets.values() if value.encode() in p.read_bytes()]
    assert leaks == []

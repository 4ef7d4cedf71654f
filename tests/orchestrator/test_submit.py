"""`scalesweep submit`, `status JOB` and `logs JOB` against a real Ray head started with `ray start --head`.

The head is a cluster of its own (its own ports, temp dir and auth token), apart from any Ray this test session runs
in-process; the CLI reaches it by address only, from a directory outside the repository, as a user's laptop would.
The head is stopped by ending the processes it started, by id: `ray stop` would end every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOB_TIMEOUT_S = 240
RAY_VARIABLES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class Head:
    dashboard: str
    token: str

    def get(self, endpoint: str) -> dict:
        request = urllib.request.Request(self.dashboard + endpoint, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any pointer to another Ray, with this interpreter's `python` first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[Head]:
    """A Ray head on 127.0.0.1 with the dashboard (Jobs API) on loopback and token auth; every process ended after."""
    import ray  # noqa: F401 (puts the psutil that Ray bundles on sys.path)

    psutil = importlib.import_module("psutil")

    token = secrets.token_hex(32)
    temp_dir = tempfile.mkdtemp(prefix="ss-head-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    dashboard_port = free_port()
    command = [
        "ray", "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--port={free_port()}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
        f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    log = open(Path(temp_dir) / "ray-start.log", "w")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        command,
        env=clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    head = Head(f"http://127.0.0.1:{dashboard_port}", token)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{Path(log.name).read_text()}")
            try:
                head.get("/api/version")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail("the Ray dashboard did not come up within 90 s")
                time.sleep(0.5)
        yield head
    finally:
        # Ray's workers and the job's driver are descendants of `ray start` too, so the tree is everything it started.
        leftover = []
        for _ in range(3):
            try:
                tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in reversed(tree):
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.terminate()
            _, leftover = psutil.wait_procs(tree, timeout=15)
            for p in leftover:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            _, leftover = psutil.wait_procs(leftover, timeout=5)
        proc.wait(timeout=5)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftover, f"Ray processes still running after the head was stopped: {leftover}"


def scalesweep(*args: str, cwd: Path, token: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI in a fresh interpreter; the token comes only from $RAY_AUTH_TOKEN, as on a user's laptop."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=clean_env(RAY_AUTH_TOKEN=token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY = {
    "name": "tiny",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 50000},
        "eval_tokens": 1024,
    },
    "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [4096], "weight_decay": [0.0, 0.1]},
    "train": {"batch_size": 8, "eval_interval": 8},
}


def test_submit_a_spec_file_to_a_real_head(tmp_path: Path) -> None:
    """The spec travels with the job's working directory and runs there; its results land where --results says."""
    workdir = tmp_path / "work"
    (workdir / "specs").mkdir(parents=True)
    (workdir / "specs" / "tiny.yaml").write_text(yaml.safe_dump(TINY), encoding="utf-8")
    results = tmp_path / "results"
    with ray_head() as head:
        submitted = scalesweep(
            "submit", "specs/tiny.yaml", "--address", head.dashboard, "--results", str(results), cwd=workdir,
            token=head.token,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        assert job_id.startswith("raysubmit_")

        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (status := head.get(f"/api/jobs/{job_id}")["status"]) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        if status != "SUCCEEDED":
            logs = scalesweep("logs", job_id, "--address", head.dashboard, cwd=workdir, token=head.token)
            pytest.fail(f"job {job_id} ended {status}; its logs:\n{logs.stdout}{logs.stderr}")

        trials = pd.read_parquet(results / "trials")
        assert len(trials) == 2
        assert set(trials["status"]) == {"ok"}
        assert trials["trial_id"].is_unique

        shown = scalesweep("status", job_id, "--address", head.dashboard, cwd=workdir, token=head.token)
        assert shown.returncode == 0, shown.stderr
        assert "SUCCEEDED" in shown.stdout and "tiny" in shown.stdout

        for follow in ([], ["--follow"]):
            logs = scalesweep("logs", job_id, *follow, "--address", head.dashboard, cwd=workdir, token=head.token)
            assert logs.returncode == 0, logs.stderr
            assert "2 trials" in logs.stdout  # the study's summary line, printed by `run` on the cluster

        unknown = scalesweep("status", "raysubmit_none", "--address", head.dashboard, cwd=workdir, token=head.token)
        assert unknown.returncode == 2
        assert len(unknown.stderr.strip().splitlines()) == 1


def test_submit_refuses_a_relative_results_path(tmp_path: Path) -> None:
    """Checked before any connection: the address may be anything."""
    out = scalesweep("submit", "smoke", "--address", "http://127.0.0.1:9", cwd=tmp_path, token="")
    assert out.returncode == 2
    assert out.stderr.startswith("scalesweep: error: results location 'results/smoke' is relative")
    assert len(out.stderr.strip().splitlines()) == 1


def test_job_commands_need_an_address(tmp_path: Path) -> None:
    out = scalesweep("logs", "raysubmit_x", cwd=tmp_path, token="")
    assert out.returncode == 2
    assert "RAY_ADDRESS" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unreachable_dashboard_is_one_line(tmp_path: Path) -> None:
    out = scalesweep("status", "raysubmit_x", "--address", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, token="")
    assert out.returncode == 2
    assert "no Ray dashboard answers" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

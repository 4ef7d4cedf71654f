"""scripts/slurm/ray_on_slurm.py without SLURM: its node-list expansion against SLURM's documented examples, and the
commands its dry run prints for an allocation (Ray's documented start-up order: head, workers, then the study)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm" / "ray_on_slurm.py"


def _load():
    spec = importlib.util.spec_from_file_location("ray_on_slurm", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ray_on_slurm = _load()


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("gpu[01-03]", ["gpu01", "gpu02", "gpu03"]),
        ("node7", ["node7"]),
        ("tux[2,4-6],login1", ["tux2", "tux4", "tux5", "tux6", "login1"]),  # `man scontrol`'s kind of list
        ("n[098-101]", ["n098", "n099", "n100", "n101"]),  # the padding is the width of the low end
        ("rack[1-2]-gpu[1-2]", ["rack1-gpu1", "rack1-gpu2", "rack2-gpu1", "rack2-gpu2"]),
    ],
)
def test_node_lists_expand_as_slurm_does(nodelist: str, hosts: list[str]) -> None:
    assert ray_on_slurm.expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["gpu[01-03", "gpu[03-01]", "gpu[a-c]", "gpu[01-03]]", ""])
def test_a_node_list_slurm_would_not_write_is_refused(nodelist: str) -> None:
    with pytest.raises(ray_on_slurm.SlurmError):
        ray_on_slurm.expand_nodelist(nodelist)


def _dry_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # PATH without scontrol (none here anyway): the script's own expansion is what is tested
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"PATH": "/usr/bin:/bin", **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", *args], env=clean, capture_output=True, text=True, timeout=60
    )


def test_dry_run_prints_head_then_one_worker_per_node_then_the_study() -> None:
    env = {"SLURM_JOB_NODELIST": "gpu[01-03]", "SLURM_CPUS_PER_TASK": "16", "SLURM_GPUS_PER_TASK": "4"}
    done = _dry_run(env, "study.yaml", "--results", "/shared/results/study")
    assert done.returncode == 0, done.stderr
    step = "srun --nodes=1 --ntasks=1 -w"
    resources = "--num-cpus=16 --num-gpus=4 --block"
    assert done.stdout.splitlines() == [
        f"{step} gpu01 ray start --head --node-ip-address=HEAD_IP --port=6379 {resources}",
        f"{step} gpu02 ray start --address=HEAD_IP:6379 {resources}",
        f"{step} gpu03 ray start --address=HEAD_IP:6379 {resources}",
        "scalesweep run study.yaml --address auto --results /shared/results/study",
    ]
    assert all(shlex.split(line) for line in done.stdout.splitlines())  # each line is one shell command


def test_dry_run_of_a_cpu_allocation_reads_the_node_cpus_and_no_gpus() -> None:
    done = _dry_run({"SLURM_JOB_NODELIST": "cpu7", "SLURM_CPUS_ON_NODE": "32"}, "laptop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "srun --nodes=1 --ntasks=1 -w cpu7 ray start --head --node-ip-address=HEAD_IP --port=6379 --num-cpus=32 "
        "--num-gpus=0 --block",
        "scalesweep run laptop --address auto",
    ]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "SLURM_JOB_NODELIST"),
        ({"SLURM_JOB_NODELIST": "gpu[01-02]"}, "SLURM_CPUS_PER_TASK"),
        ({"SLURM_JOB_NODELIST": "gpu[01-0x]", "SLURM_CPUS_PER_TASK": "8"}, "gpu[01-0x]"),
    ],
)
def test_outside_an_allocation_it_says_so_in_one_line_exit_2(env: dict[str, str], names: str) -> None:
    done = _dry_run(env, "laptop")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and names in done.stderr

"""Start Ray across a SLURM allocation and run one study on it: the start-up of ``scripts/slurm/study.sbatch``.

It follows Ray's documented pattern ("Deploying on Slurm", docs.ray.io; ``doc/source/cluster/doc_code/
slurm-basic.sh`` in the Ray repository): the head on the allocation's first node with ``ray start --head --block``,
one worker on every other node with ``ray start --address HEAD:PORT --block``, each as its own job step
(``srun --nodes=1 --ntasks=1 -w NODE``) with the CPUs and GPUs SLURM gave that step, then the driver
``scalesweep run SPEC --address auto``, from the batch script on the first node, where ``auto`` finds the head.
Two things differ from the Ray example, both to avoid its fixed sleeps: the driver waits until the head answers
and until every node has joined (or ``--wait-s`` runs out) instead of sleeping 10 s and 5 s per worker.

The node list comes from ``SLURM_JOB_NODELIST`` (``gpu[01-03]``; expanded by ``scontrol show hostnames`` where it
exists, else here by SLURM's rules), CPUs from ``SLURM_CPUS_PER_TASK`` (else ``SLURM_CPUS_ON_NODE``) and GPUs from
``SLURM_GPUS_PER_TASK`` (else ``SLURM_GPUS_ON_NODE``, else 0). ``--dry-run`` prints the commands, one a line,
without running any: the head, one worker per remaining node, the study last. A command that needs the head's
address says ``HEAD_IP``: on a real allocation it is the first node's address, asked of that node
(``srun -w NODE hostname --ip-address``, as Ray's example does). Options of this script come before SPEC; what
follows SPEC goes to ``scalesweep run`` (``--results /shared/…``).

This file is a script, not part of the package: the only import it needs on a login node is the standard library.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time

PORT = 6379
HEAD_IP = "HEAD_IP"


class SlurmError(Exception):
    """Input the user must fix (no allocation, a node list SLURM would not write): one line, exit code 2."""


def expand_nodelist(nodelist: str) -> list[str]:
    """The host names of a SLURM node list, in order: ``gpu[01-03],cpu7`` → gpu01, gpu02, gpu03, cpu7. Ranges keep
    their zero padding; a name with several bracket groups (``r[1-2]n[1-2]``) is every combination, left to right."""
    names: list[str] = []
    for item in _split_top_level(nodelist):
        parts = re.split(r"(\[[^\]]*\])", item)
        choices = [_expand_brackets(part, nodelist) if part.startswith("[") else [part] for part in parts if part]
        names.extend("".join(combo) for combo in itertools.product(*choices))
    return names


def _split_top_level(nodelist: str) -> list[str]:
    """Split at the commas outside brackets."""
    items, depth, current = [], 0, ""
    for char in nodelist.strip():
        if char in "[]":
            depth += 1 if char == "[" else -1
            if depth not in (0, 1):
                raise SlurmError(f"node list {nodelist!r}: unbalanced brackets")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth or not current:
        raise SlurmError(f"node list {nodelist!r}: unbalanced brackets or an empty name")
    return [*items, current]


def _expand_brackets(group: str, nodelist: str) -> list[str]:
    """``[01-03,07]`` (a bracket group of `nodelist`) → 01, 02, 03, 07."""
    values: list[str] = []
    for part in group[1:-1].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise SlurmError(f"node list {nodelist!r}: {part!r} is not a number or a range like 01-03")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise SlurmError(f"node list {nodelist!r}: {part!r} runs backwards")
        values.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return values


def hostnames(nodelist: str) -> list[str]:
    """The allocation's nodes: ``scontrol show hostnames`` where SLURM is installed, else `expand_nodelist`."""
    if shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()
    return expand_nodelist(nodelist)


def _step(node: str, command: list[str]) -> list[str]:
    """`command` as a one-task job step on `node`."""
    return ["srun", "--nodes=1", "--ntasks=1", "-w", node, *command]


def commands(
    nodes: list[str], *, head_ip: str, cpus: int, gpus: int, spec: str, run_args: list[str]
) -> list[list[str]]:
    """The start-up, in order: the head on ``nodes[0]``, a worker on each other node, the study last."""
    resources = [f"--num-cpus={cpus}", f"--num-gpus={gpus}"]
    head = _step(nodes[0], ["ray", "start", "--head", f"--node-ip-address={head_ip}", f"--port={PORT}", *resources])
    workers = [_step(node, ["ray", "start", f"--address={head_ip}:{PORT}", *resources]) for node in nodes[1:]]
    study = ["scalesweep", "run", spec, "--address", "auto", *run_args]
    return [[*head, "--block"], *([*w, "--block"] for w in workers), study]


def _env_int(*names: str, default: int | None = None) -> int:
    """The first of the SLURM variables `names` that is set, as an integer (``4`` or SLURM's ``gpu:4``)."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            count = value.split("(")[0].rsplit(":", 1)[-1]
            if not count.isdigit():
                raise SlurmError(f"{name}={value!r}: expected a count like 4 or gpu:4")
            return int(count)
    if default is None:
        raise SlurmError(f"none of {', '.join(names)} is set; run inside an allocation (sbatch or salloc)")
    return default


def _head_ip(head: str) -> str:
    """The head node's address, asked of the node itself (Ray's example; the IPv4 one where it reports several)."""
    out = subprocess.run(
        _step(head, ["hostname", "--ip-address"]), capture_output=True, text=True, check=True
    ).stdout.split()
    ipv4 = [address for address in out if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address)]
    return (ipv4 or out)[0]


def _wait_for_nodes(address: str, count: int, wait_s: float) -> None:
    """Return once `count` Ray nodes are alive at `address`; raise after `wait_s` seconds."""
    import ray  # only on the allocation: the dry run needs no Ray

    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                if not ray.is_initialized():  # one connection once the head answers, asked again every poll
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                alive = sum(node["Alive"] for node in ray.nodes())
            except ConnectionError:
                alive = 0
            if alive >= count:
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"only {alive} of {count} Ray nodes joined {address} within {wait_s:.0f} s")
            time.sleep(2)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="spec file or ready-made study, as for `scalesweep run`")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="more `scalesweep run` options (--results …)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    parser.add_argument("--wait-s", type=float, default=300, help="how long to wait for every node to join")
    args = parser.parse_args(argv)
    try:
        nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
        if not nodelist:
            raise SlurmError("SLURM_JOB_NODELIST is not set; run inside an allocation (sbatch or salloc)")
        nodes = hostnames(nodelist)
        cpus = _env_int("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
        gpus = _env_int("SLURM_GPUS_PER_TASK", "SLURM_GPUS_ON_NODE", default=0)
        head_ip = HEAD_IP if args.dry_run else _head_ip(nodes[0])
        steps = commands(nodes, head_ip=head_ip, cpus=cpus, gpus=gpus, spec=args.spec, run_args=args.run_args)
        if args.dry_run:
            print("\n".join(shlex.join(step) for step in steps))
            return 0
        *ray_steps, study = steps
        # one token for this job's cluster, handed to every step through the environment (srun passes it on): else
        # a token file in a shared home (another cluster's, README "Run on a cluster") wins over the
        # head's own and locks the driver out
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        # the head first: the workers join an address that answers
        started = [subprocess.Popen(ray_steps[0])]
        _wait_for_nodes(f"{head_ip}:{PORT}", 1, args.wait_s)
        started += [subprocess.Popen(step) for step in ray_steps[1:]]
        _wait_for_nodes(f"{head_ip}:{PORT}", len(nodes), args.wait_s)
        code = subprocess.run(study).returncode
        for step in started:  # the Ray steps end with the study (SLURM would end them with the job)
            step.terminate()
        return code
    except SlurmError as err:
        print(f"ray_on_slurm: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

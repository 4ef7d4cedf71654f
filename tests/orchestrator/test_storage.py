"""Results storage: node-local paths are refused exactly when trials can run on another node than the driver's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.storage import StorageError, multi_node_reason, require_shared, storage_of

# A cluster node's /proc/mounts: local root and scratch, an EFS mount (nfs4), a mount point with a space, a bucket
# through FUSE, and an NTFS disk (fuseblk: FUSE, but a local disk).
MOUNTS = textwrap.dedent(
    r"""
    overlay / overlay rw,relatime,lowerdir=/var/lib/docker/l 0 0
    proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
    /dev/nvme1n1 /scratch ext4 rw,relatime 0 0
    fs-0123.efs.us-west-2.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1,rsize=1048576 0 0
    server:/export /mnt/team\040share nfs rw,vers=3 0 0
    s3fs /mnt/bucket fuse.s3fs rw,nosuid,nodev 0 0
    /dev/sdb1 /media/usb fuseblk rw,nosuid,nodev 0 0
    /dev/nvme2n1 /mnt/efs/local-cache xfs rw 0 0
    """
)


@pytest.mark.parametrize(
    ("location", "shared"),
    [
        ("s3://bucket/scalesweep/smoke", True),
        ("gs://bucket/smoke", True),
        ("/mnt/efs/scalesweep/smoke", True),
        ("file:///mnt/efs/scalesweep/smoke", True),
        ("/mnt/efs", True),
        ("/mnt/team share/smoke", True),
        ("/mnt/bucket/smoke", True),
        ("/scratch/results/smoke", False),
        ("/home/ubuntu/results/smoke", False),
        ("/mnt/efsx/smoke", False),  # a sibling of the mount point, not inside it
        ("/mnt/efs/local-cache/smoke", False),  # a local disk mounted inside the network mount
        ("/media/usb/smoke", False),
        ("file:///scratch/smoke", False),
    ],
)
def test_storage_of(location: str, shared: bool) -> None:
    assert storage_of(location, MOUNTS).shared is shared


def test_storage_names_the_filesystem() -> None:
    assert storage_of("/scratch/x", MOUNTS).description == "ext4 mounted at /scratch"
    assert storage_of("/mnt/team share/x", MOUNTS).description == "nfs mounted at /mnt/team share"


def test_unknown_mounts_mean_local() -> None:
    assert storage_of("/anything", "").shared is False


def node(cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    resources = {"CPU": cpus, "memory": 8e9} | ({"GPU": gpus} if gpus else {})
    return {"NodeID": f"node-{cpus}-{gpus}", "Alive": alive, "Resources": resources}


def test_one_node_that_fits_a_trial_may_use_any_path() -> None:
    assert multi_node_reason([node(8)], {"CPU": 1, "GPU": 0}) is None
    assert multi_node_reason([node(8, gpus=1), node(4, alive=False)], {"CPU": 1, "GPU": 1}) is None


def test_several_live_nodes_spread_trials() -> None:
    assert multi_node_reason([node(8), node(48, gpus=4)], {"CPU": 1}) == "the cluster has 2 nodes"


def test_a_head_without_room_for_a_trial_sends_trials_to_autoscaled_workers() -> None:
    # cluster.yaml's head: CPU 0, no GPU; the GPU workers do not exist until a trial asks for one
    reason = multi_node_reason([node(0)], {"CPU": 1, "GPU": 1})
    assert reason is not None
    assert "1 CPU" in reason and "1 GPU" in reason


def test_refusal_says_why_and_how_to_fix() -> None:
    with pytest.raises(StorageError) as caught:
        require_shared("/scratch/results/smoke", reason="the cluster has 3 nodes", mounts=MOUNTS)
    message = str(caught.value)
    assert "\n" not in message
    for needed in ("/scratch/results/smoke", "ext4", "3 nodes", "Ray >= 2.7", "s3://", "--results"):
        assert needed in message
    require_shared("/mnt/efs/smoke", reason="the cluster has 3 nodes", mounts=MOUNTS)
    require_shared("s3://bucket/smoke", reason="the cluster has 3 nodes", mounts=MOUNTS)


CHECK_ON_TWO_NODES = """
import sys
import ray
from ray.cluster_utils import Cluster
from orchestrator.storage import StorageError, check_results_storage

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
ray.init(address=cluster.address)
try:
    cluster.wait_for_nodes()
    outcomes = []
    for location in (sys.argv[1], "s3://bucket/smoke"):
        try:
            check_results_storage(location, trial_resources={"CPU": 1})
            outcomes.append("accepted")
        except StorageError:
            outcomes.append("refused")
    print(" ".join(outcomes))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_real_two_node_cluster_refuses_node_local_results(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK_ON_TWO_NODES, str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "refused accepted"

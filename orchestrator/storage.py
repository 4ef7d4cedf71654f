"""Where a study's results may live when its trials run on more than one node.

Since Ray 2.7, Tune no longer copies trial directories from worker nodes to the head: each trial writes its Parquet
rows and checkpoints straight to the results location, and the driver reads them back from there. So when trials can
run on a node other than the driver's, the results location must be one every node sees: an ``s3://`` / ``gs://`` URI
(pyarrow filesystems) or a path on a network filesystem (NFS, EFS, SMB, Lustre, a FUSE-mounted bucket). A node-local
path would silently scatter the rows across the nodes' disks; `check_results_storage` refuses it before anything runs.

Trials may leave the driver's node when the cluster has several nodes now, or when the driver's node cannot host a
trial at all (``cluster.yaml``'s head has ``CPU: 0``, so every trial waits for a worker the autoscaler adds). A single
node that can host the trials (a laptop, one workstation running ``ray start --head``) may use any path. A head that
could host trials and will also gain autoscaled workers later is not detected: Ray has no public API for the
autoscaler's bounds.

The filesystem is read from the driver node's ``/proc/mounts``; the other nodes are assumed to mount it the same way,
as ``cluster.yaml``'s set-up does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.errors import InputError

MOUNTS = Path("/proc/mounts")
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "efs", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "wekafs", "panfs"}
)
# FUSE mounts are mostly network clients (s3fs, gcsfuse, mountpoint-s3, sshfs, JuiceFS); these are local ones: NTFS
# disks, rootless container layers, and desktop or container plumbing.
LOCAL_FUSE = frozenset({"fuseblk", "fuse.fuse-overlayfs", "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse"})


class StorageError(InputError):
    """Results on storage that not every node of the study can reach."""


@dataclass(frozen=True)
class Storage:
    """What backs a results location: whether every node sees the same files, and in words (for messages)."""

    shared: bool
    description: str


def storage_of(location: str, mounts: str) -> Storage:
    """The storage behind `location` (a URI or a local path), given the text of ``/proc/mounts``."""
    if "://" in location:
        scheme, rest = location.split("://", 1)
        if scheme != "file":
            return Storage(True, f"{scheme}://")
        location = rest
    path = Path(location).expanduser().resolve().as_posix()
    best: tuple[str, str] | None = None
    for mount_point, fstype in _mount_table(mounts):
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        # ">=": a later mount on the same point hides the earlier one
        if inside and (best is None or len(mount_point) >= len(best[0])):
            best = (mount_point, fstype)
    if best is None:
        return Storage(False, "a filesystem not listed in /proc/mounts")
    mount_point, fstype = best
    shared = fstype in NETWORK_FILESYSTEMS or (fstype.startswith("fuse") and fstype not in LOCAL_FUSE)
    return Storage(shared, f"{fstype} mounted at {mount_point}")


def multi_node_reason(nodes: Sequence[Mapping[str, Any]], trial_resources: Mapping[str, float]) -> str | None:
    """Why trials may run on a node other than the driver's, or None when they all run beside it.

    `nodes` are ``ray.nodes()`` entries; `trial_resources` is one trial's demand in Ray's resource names (``CPU``,
    ``GPU``). With one live node, that node is the driver's.
    """
    alive = [n for n in nodes if n.get("Alive")]
    if len(alive) > 1:
        return f"the cluster has {len(alive)} nodes"
    available = alive[0].get("Resources", {}) if alive else {}
    short = [f"{amount:g} {name}" for name, amount in trial_resources.items() if amount > available.get(name, 0)]
    if short:
        return (
            f"this node cannot host a trial (it needs {', '.join(short)}), "
            "so trials run on worker nodes the autoscaler adds"
        )
    return None


def require_shared(location: str, *, reason: str, mounts: str) -> None:
    """Raise `StorageError` unless `location` is on storage every node sees; `reason` says why that matters."""
    storage = storage_of(location, mounts)
    if storage.shared:
        return
    raise StorageError(
        f"results location {location} is on this node's own disk ({storage.description}), but {reason}: Ray >= 2.7 "
        "no longer copies trial directories to the head, so rows written on other nodes would never reach it. "
        "Put the results on storage every node mounts (an NFS/EFS path) or in a bucket (s3://BUCKET/PATH, "
        "gs://BUCKET/PATH): pass --results or set 'results' in the spec"
    )


def check_results_storage(location: str, *, trial_resources: Mapping[str, float]) -> None:
    """Refuse node-local `location` when trials may run on other nodes than this driver's (Ray must be connected).

    Call it after joining a cluster and before anything is written; a private local Ray is one node by construction.
    """
    import ray

    reason = multi_node_reason(ray.nodes(), trial_resources)
    if reason is not None:
        require_shared(location, reason=reason, mounts=MOUNTS.read_text() if MOUNTS.exists() else "")


def _mount_table(mounts: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) pairs; ``/proc/mounts`` escapes spaces and such as octal (``\\040``)."""
    table = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            table.append((re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]), fields[2]))
    return table

"""Reading back what the experiment trackers wrote, with each tracker's own reader: TensorBoard's event accumulator,
MLflow's client on the file store, and W&B's protobuf records from an offline run file."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Points = list[tuple[int, float]]
"""(step, value) pairs of one metric."""


def tensorboard_scalars(directory: Path) -> dict[str, Points]:
    """Every scalar tag of a TensorBoard run directory as its reader shows it (purged steps left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_client(results: Path) -> Any:
    """An MLflow client on the default file store of a results directory."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(results / "mlruns").as_uri())


def mlflow_runs(results: Path, study: str, trial_id: str | None = None) -> list[Any]:
    """The MLflow runs of a study (of one trial, by the tag scalesweep gives them)."""
    client = mlflow_client(results)
    experiment = client.get_experiment_by_name(study)
    where = f"tags.`scalesweep.trial_id` = '{trial_id}'" if trial_id else ""
    return client.search_runs([experiment.experiment_id], filter_string=where)


def wandb_run_files(results: Path, run_id: str) -> list[Path]:
    """The offline run files of W&B run `run_id` under a results directory, oldest first (W&B names a directory by
    the second it started, with a suffix -1, -2, … when that name is taken)."""
    return sorted(results.glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb"), key=lambda p: p.stat().st_mtime)


def wandb_records(run_file: Path) -> Iterator[Any]:
    """The records of a W&B run file: a LevelDB-style log (a 7-byte ':W&B' header, then 32 KiB blocks, each record a
    7-byte header — checksum, length, type full/first/middle/last — and its bytes) of W&B's own protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = run_file.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the zero padding at a block's end
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_updates(items: Any) -> dict[str, Any]:
    """Key → value of W&B config, summary or history items."""
    return {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in items}


def wandb_history(run_file: Path) -> dict[str, Points]:
    """Every logged metric of a W&B run file (W&B's own _-prefixed keys left out)."""
    by_key: dict[str, Points] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "history":
            items = wandb_updates(record.history.item)
            for key, value in items.items():
                if not key.startswith("_"):
                    by_key.setdefault(key, []).append((items["_step"], value))
    return by_key

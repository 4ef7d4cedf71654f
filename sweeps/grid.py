"""From a spec to its trials: grid expansion and trial identity.

A trial's identity is a short hash of its resolved *semantic* config — what it trains and how — and not of resources,
paths, the study name, how often it checkpoints or whether it measures Adam statistics (those read the state and
change no number; Marin's executor hashes a step's versioned config the same way).
So re-running a study skips the ids that already have a finished row, adding a value to an axis runs only the new cells,
and changing a training setting changes every affected id (old rows stay, never mixed with new ones).

Expansion order is deterministic: model sizes, then cases (if any), then the crossed axes in AXES order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from sweeps.spec import AXES, DataSpec, Init, StudySpec, TrainSpec

# Bump when what a config computes changes, so old ids cannot be confused with new ones. 2: documents in a seeded
# random order, a trial's sequences drawn from the whole training stream, eval windows across all held-out documents.
ID_VERSION = 2
ID_LENGTH = 12


@dataclass(frozen=True)
class TrialConfig:
    """One cell of the grid, fully resolved."""

    study: str
    architecture: str
    n_layer: int
    d_model: int
    head_dim: int
    seq_len: int
    tokens: int
    init: Init
    weight_decay: float
    seed: int
    lr: float
    data: DataSpec
    train: TrainSpec

    @property
    def n_head(self) -> int:
        return self.d_model // self.head_dim

    @property
    def size_label(self) -> str:
        return f"{self.n_layer}x{self.d_model}"

    def semantic(self) -> dict[str, Any]:
        """The fields that decide what the trial computes: the input of the trial id."""
        data = self.data.model_dump(mode="json", exclude={"cache_dir"})
        # width_scaling is left out: its effect is the trial's own lr and warmup_steps, which are in
        train = self.train.model_dump(mode="json", exclude={"lr", "checkpoint_interval", "adam_stats", "width_scaling"})
        return {
            "id_version": ID_VERSION,
            "architecture": self.architecture,
            "n_layer": self.n_layer,
            "d_model": self.d_model,
            "head_dim": self.head_dim,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "init": self.init.model_dump(mode="json"),
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "lr": self.lr,
            "data": data,
            "train": train,
        }

    @property
    def trial_id(self) -> str:
        blob = json.dumps(self.semantic(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for a Ray Tune config and the trials table's config_json."""
        return {
            "study": self.study,
            "trial_id": self.trial_id,
            **self.semantic(),
            "data": self.data.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        return cls(
            study=d["study"],
            architecture=d["architecture"],
            n_layer=d["n_layer"],
            d_model=d["d_model"],
            head_dim=d["head_dim"],
            seq_len=d["seq_len"],
            tokens=d["tokens"],
            init=Init(**d["init"]),
            weight_decay=d["weight_decay"],
            seed=d["seed"],
            lr=d["lr"],
            data=DataSpec.model_validate(d["data"]),
            train=TrainSpec.model_validate(d["train"]),
        )


def _axis_values(spec: StudySpec) -> list[dict[str, Any]]:
    """Every combination of the axis values: the cases crossed with the list axes (defaults where unset)."""
    grid = spec.grid
    defaults = {"weight_decay": [0.0], "seed": [0], "lr": [spec.train.lr], "init": [Init(std=0.02)]}
    crossed = [a for a in AXES if a not in grid.case_axes]
    lists = [getattr(grid, a) if getattr(grid, a) is not None else defaults[a] for a in crossed]
    cases = [{a: getattr(c, a) for a in grid.case_axes} for c in grid.cases] if grid.cases else [{}]
    return [{**case, **dict(zip(crossed, combo, strict=True))} for case in cases for combo in itertools.product(*lists)]


def expand(spec: StudySpec) -> list[TrialConfig]:
    """All trials of a study, in a deterministic order, without duplicates."""
    trials: dict[str, TrialConfig] = {}
    scaling = spec.train.width_scaling
    for size in spec.model.sizes:
        train = spec.train
        if scaling is not None:
            warmup = scaling.warmup_steps(spec.train.warmup_steps, size.d_model)
            train = spec.train.model_copy(update={"warmup_steps": warmup, "width_scaling": None})
        for values in _axis_values(spec):
            lr = values["lr"] if scaling is None else scaling.lr(values["lr"], size.d_model)
            trial = TrialConfig(
                study=spec.name,
                architecture=spec.model.architecture,
                n_layer=size.n_layer,
                d_model=size.d_model,
                head_dim=spec.model.head_dim,
                seq_len=spec.model.seq_len,
                tokens=values["tokens"],
                init=values["init"],
                weight_decay=values["weight_decay"],
                seed=values["seed"],
                lr=lr,
                data=spec.data,
                train=train,
            )
            trials.setdefault(trial.trial_id, trial)
    return list(trials.values())

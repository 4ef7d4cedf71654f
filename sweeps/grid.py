"""From a language-model spec to its trials: grid expansion, the model shape and trial identity.

A trial's identity is a short hash (``sweeps.base.content_id``) of its resolved *semantic* config — what it trains
and how — and not of resources, paths, the study name, how often it checkpoints or whether it measures Adam
statistics (those read the state and change no number). So re-running a study skips the ids that already have a
finished row, adding a value to an axis runs only the new cells, and changing a training setting changes every
affected id (old rows stay, never mixed with new ones).

Expansion order is deterministic: model sizes, then cases (if any), then the crossed axes in AXES order.

A cell of a budget axis (``grid.flops`` or ``grid.tokens_per_param``) trains the D its budget gives its size
(``LMStudyBody.cell_tokens``), and its id hashes that D like any cell's: the budget is how the cell was chosen, not
what it computes, so a budget cell and a ``tokens`` cell of the same D are one trial. The budget travels with the
trial (``flops_budget``, ``tokens_per_param``) into its row, out of its id.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sweeps.accounting import ModelShape
from sweeps.base import content_id
from sweeps.spec import (
    AXES,
    D_AXES,
    DataSpec,
    Init,
    LMStudyBody,
    ProbesSpec,
    ResourcesSpec,
    StudySpec,
    TrackingSpec,
    TrainSpec,
)

# Bump when what a config computes changes, so old ids cannot be confused with new ones. 2: documents in a seeded
# random order, a trial's sequences drawn from the whole training stream, eval windows across all held-out documents.
ID_VERSION = 2


@dataclass(frozen=True)
class TrialConfig:
    """One cell of the grid, fully resolved: the unit of work of a language-model study (one Tune trial)."""

    TABLE: ClassVar[str] = "trials"

    study: str
    shape: ModelShape
    tokens: int
    init: Init
    weight_decay: float
    seed: int
    lr: float
    data: DataSpec
    train: TrainSpec
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    """Where and how the trial runs (not part of its identity)."""
    probes: ProbesSpec | None = None
    """What the trial hands to curvature probes (not part of its identity: probes only read the state)."""
    tracking: TrackingSpec | None = None
    """The trackers that mirror the trial's rows (not part of its identity: they only watch)."""
    flops_budget: float | None = None
    """The compute budget C of ``grid.flops`` this cell's D was designed from (not part of its identity)."""
    tokens_per_param: float | None = None
    """The ratio r of ``grid.tokens_per_param`` this cell's D was designed from (not part of its identity)."""

    def semantic(self) -> dict[str, Any]:
        """The fields that decide what the trial computes: the input of the trial id."""
        return {
            "id_version": ID_VERSION,
            "architecture": self.shape.architecture,
            "n_layer": self.shape.n_layer,
            "d_model": self.shape.d_model,
            "head_dim": self.shape.head_dim,
            "seq_len": self.shape.seq_len,
            "tokens": self.tokens,
            "init": self.init.model_dump(mode="json"),
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "lr": self.lr,
            "data": self.data.identity(),
            "train": _train_identity(self.train),
        }

    @property
    def trial_id(self) -> str:
        return content_id(self.semantic())

    @property
    def batch_tokens(self) -> int:
        """Tokens in one optimizer step's batch: train.batch_size × seq_len."""
        return self.train.batch_size * self.shape.seq_len

    @property
    def steps(self) -> int:
        """Optimizer steps: whole batches of the trial's tokens."""
        return self.tokens // self.batch_tokens

    @property
    def decay_start(self) -> int | None:
        """Under a ``wsd`` schedule, the first step of the decay (the fork point of this cell's cooldown branch):
        steps − round(decay_fraction × steps), the decay at least one step long; otherwise None."""
        if self.train.schedule != "wsd":
            return None
        fraction = self.train.decay_fraction or 0.0
        decay = min(self.steps, max(1, math.floor(fraction * self.steps + 0.5)))
        return self.steps - decay

    @property
    def stable_id(self) -> str:
        """The identity of the trial's stable phase: everything that decides its training before the decay (the
        trial's semantic config without D and the decay's settings). Cells of one ``wsd`` grid that differ only in D
        share it, and so share one stable run."""
        semantic = self.semantic()
        decay = ("decay_fraction", "decay_shape", "min_lr_ratio")
        train = {k: v for k, v in semantic["train"].items() if k not in decay}
        return content_id({**semantic, "tokens": None, "train": train, "unit": "stable"}, prefix="s-")

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return (self.trial_id,)

    def pending(self, finished: set[str]) -> TrialConfig | None:
        """This trial if it has no finished row, else None."""
        return None if self.trial_id in finished else self

    def to_config(self) -> dict[str, Any]:
        """JSON-safe form, for a Ray Tune trial and the trials table's ``config_json``."""
        return {
            "study": self.study,
            "trial_id": self.trial_id,
            **self.semantic(),
            "data": self.data.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            "resources": self.resources.model_dump(mode="json"),
            "probes": None if self.probes is None else self.probes.model_dump(mode="json"),
            "tracking": None if self.tracking is None else self.tracking.model_dump(mode="json"),
            **{key: value for key, value in self.budget().items() if value is not None},
        }

    def budget(self) -> dict[str, float | None]:
        """What the cell's D was designed from, as the trials table's columns (both null for a ``tokens`` cell)."""
        return {"flops_budget": self.flops_budget, "tokens_per_param": self.tokens_per_param}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialConfig:
        return cls(
            study=config["study"],
            shape=ModelShape(
                config["architecture"], config["n_layer"], config["d_model"], config["head_dim"], config["seq_len"]
            ),
            tokens=config["tokens"],
            init=Init(**config["init"]),
            weight_decay=config["weight_decay"],
            seed=config["seed"],
            lr=config["lr"],
            data=DataSpec.model_validate(config["data"]),
            train=TrainSpec.model_validate(config["train"]),
            resources=ResourcesSpec.model_validate(config.get("resources") or {}),
            probes=None if config.get("probes") is None else ProbesSpec.model_validate(config["probes"]),
            tracking=None if config.get("tracking") is None else TrackingSpec.model_validate(config["tracking"]),
            flops_budget=config.get("flops_budget"),
            tokens_per_param=config.get("tokens_per_param"),
        )


# How a trial runs, not what it computes: left out of its id. width_scaling's effect is the trial's own lr and
# warmup_steps, which are in.
_NOT_IDENTITY = ("lr", "checkpoint_interval", "adam_stats", "width_scaling", "branching", "compile")
# Settings added after ids existed: in the id only when set, so the ids of trials that do not use them stay the same.
_IDENTITY_WHEN_SET = ("decay_fraction", "decay_shape")


def _train_identity(train: TrainSpec) -> dict[str, Any]:
    dumped = train.model_dump(mode="json", exclude=set(_NOT_IDENTITY))
    return {k: v for k, v in dumped.items() if not (k in _IDENTITY_WHEN_SET and v is None)}


def _axis_values(body: LMStudyBody) -> list[dict[str, Any]]:
    """Every combination of the axis values: the cases crossed with the list axes (defaults where unset)."""
    grid = body.grid
    defaults = {"weight_decay": [0.0], "seed": [0], "lr": [body.train.lr], "init": [Init(std=0.02)]}
    defaults |= {axis: [None] for axis in D_AXES}  # only the grid's one D axis is given
    crossed = [a for a in AXES if a not in grid.case_axes]
    lists = [getattr(grid, a) if getattr(grid, a) is not None else defaults[a] for a in crossed]
    cases = [{a: getattr(c, a) for a in grid.case_axes} for c in grid.cases] if grid.cases else [{}]
    return [{**case, **dict(zip(crossed, combo, strict=True))} for case in cases for combo in itertools.product(*lists)]


def trials_of(body: LMStudyBody, study: str) -> list[TrialConfig]:
    """All trials of a language-model study named ``study``, in a deterministic order, without duplicates."""
    trials: dict[str, TrialConfig] = {}
    scaling = body.train.width_scaling
    for size in body.model.sizes:
        train = body.train
        if scaling is not None:
            warmup = scaling.warmup_steps(body.train.warmup_steps, size.d_model)
            train = body.train.model_copy(update={"warmup_steps": warmup, "width_scaling": None})
        shape = body.model.shape(size)
        axis = body.grid.d_axis
        for values in _axis_values(body):
            lr = values["lr"] if scaling is None else scaling.lr(values["lr"], size.d_model)
            trial = TrialConfig(
                study=study,
                shape=shape,
                tokens=values[axis] if axis == "tokens" else body.cell_tokens(size, axis, values[axis]),
                init=values["init"],
                weight_decay=values["weight_decay"],
                seed=values["seed"],
                lr=lr,
                data=body.data,
                train=train,
                resources=body.resources,
                probes=body.probes,
                tracking=body.tracking,
                flops_budget=values["flops"],
                tokens_per_param=values["tokens_per_param"],
            )
            trials.setdefault(trial.trial_id, trial)
    return list(trials.values())


def expand(spec: StudySpec) -> list[TrialConfig]:
    """The trials of a ``kind: lm`` study."""
    return trials_of(spec, spec.name)

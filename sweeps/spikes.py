"""The Adam-spikes study spec (``kind: spikes``): the spike mechanism measured on two kinds of network at once.

arXiv:2506.04805 shows Adam's loss spikes on fully connected networks fitted to a function and on Transformers. A
spikes study therefore has two parts, either or both:

* ``function``: fully connected networks trained full-batch with Adam on a function-approximation task
  (``runs``: every lr × seed). Each run is one Ray task that trains, measures the inline Adam statistics and probes
  its own state every ``probes.every`` steps (the network is small enough that a probe costs about as much as
  shipping a checkpoint would), then writes its rows to the usual ``trials``, ``steps`` and ``probes`` tables.
  A run's ``trial_id`` is a short hash of its semantic config (task, network, optimizer, steps, lr, seed, probe
  settings), not of the study name, resources or paths: a rerun skips finished runs (the rule of ``sweeps.grid``).
* ``lm``: an ordinary language-model study (the body of a ``kind: lm`` spec without ``name``/``results``, which it
  takes from this spec) with ``probes.curvature`` and ``train.adam_stats``; it runs through the Tune grid as any
  lm study and writes to the same results directory.

The task: inputs x ~ N(0, I_d) (``samples`` points drawn once with ``task.seed``), target y = sin(wᵀx) with w ~
N(0, I_d) drawn with the same seed. The network: ``depth`` hidden layers of ``width`` units with ``activation``,
PyTorch's default initialization drawn with the run's seed, float64. This module imports no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer, model_validator

from sweeps.spec import (
    AdamStatsSpec,
    PositiveFloat,
    PositiveInt,
    Strict,
    StudyName,
    StudySpec,
)

ID_VERSION = 1
ID_LENGTH = 12


class SineTask(Strict):
    """y = sin(wᵀx) on ``samples`` inputs x ~ N(0, I_d); x and w drawn with ``seed`` (the same for every run)."""

    target: Literal["sine"] = "sine"
    inputs: PositiveInt = 4
    samples: PositiveInt = 256
    test_samples: PositiveInt = 1024
    seed: int = 1000


class FCNetwork(Strict):
    width: PositiveInt = 32
    depth: PositiveInt = 2
    activation: Literal["tanh", "relu", "gelu"] = "tanh"


class FunctionProbes(Strict):
    """A curvature probe (``models/probes/curvature.py``) on the full training set after every ``every`` steps."""

    every: PositiveInt = 5
    top_k: PositiveInt = 1


class FunctionPart(Strict):
    task: SineTask = SineTask()
    network: FCNetwork = FCNetwork()
    steps: PositiveInt = 3000
    lr: Annotated[list[PositiveFloat], Field(min_length=1)]
    seed: Annotated[tuple[int, ...], Field(min_length=1)] = (0,)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    adam_stats: AdamStatsSpec = AdamStatsSpec(every=1)
    probes: FunctionProbes = FunctionProbes()


class SpikesResources(Strict):
    cpus_per_task: PositiveFloat = 1
    retries: Annotated[int, Field(ge=0)] = 1


class SpikesSpec(Strict):
    """An Adam-spikes study (``kind: spikes``): a ``function`` part, an ``lm`` part, or both."""

    kind: Literal["spikes"]
    name: StudyName
    function: FunctionPart | None = None
    lm: StudySpec | None = None
    resources: SpikesResources = SpikesResources()
    results: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lm_takes_our_name(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("lm"), dict):
            for key in ("name", "results", "kind"):
                if key in raw["lm"]:
                    raise ValueError(f"lm.{key}: the lm part takes its {key} from the study; remove it")
            raw = {**raw, "lm": {**raw["lm"], "name": raw.get("name", "lm")}}
        return raw

    @field_serializer("lm")
    def _lm_without_identity(self, lm: StudySpec | None) -> dict[str, Any] | None:
        # Dumped as written: the lm part's name and results are the study's (a saved spec.yaml must load again).
        if lm is None:
            return None
        return lm.model_dump(mode="json", exclude_none=True, exclude={"name", "kind", "results"})

    @model_validator(mode="after")
    def _something_to_run(self) -> SpikesSpec:
        if self.function is None and self.lm is None:
            raise ValueError("give a function part, an lm part, or both")
        return self

    @property
    def results_path(self) -> str:
        return self.results or f"results/{self.name}"

    def lm_study(self) -> StudySpec | None:
        """The lm part as a study of its own, writing into this study's results."""
        if self.lm is None:
            return None
        return self.lm.model_copy(update={"name": self.name, "results": self.results_path})


@dataclass(frozen=True)
class FunctionRun:
    """One fully connected network trained on the task with one (lr, seed): one trial."""

    study: str
    part: FunctionPart
    lr: float
    seed: int

    def semantic(self) -> dict[str, Any]:
        """What decides the run's numbers: the input of its trial id (the inline statistics only read state)."""
        part = self.part.model_dump(mode="json", exclude={"lr", "seed", "adam_stats"})
        return {"id_version": ID_VERSION, **part, "lr": self.lr, "seed": self.seed}

    @property
    def trial_id(self) -> str:
        blob = json.dumps(self.semantic(), sort_keys=True, separators=(",", ":"))
        return "fc-" + hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "part": self.part.model_dump(mode="json"), "lr": self.lr, "seed": self.seed}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FunctionRun:
        return cls(raw["study"], FunctionPart.model_validate(raw["part"]), raw["lr"], raw["seed"])


def function_runs(spec: SpikesSpec) -> list[FunctionRun]:
    """Every run of the function part, lr-major (deterministic); none without a function part."""
    part = spec.function
    if part is None:
        return []
    runs = [FunctionRun(spec.name, part, lr, seed) for lr in part.lr for seed in part.seed]
    return list({run.trial_id: run for run in runs}.values())

"""The Adam-spikes study spec (``kind: spikes``): the spike mechanism measured on two kinds of network at once.

arXiv:2506.04805 shows Adam's loss spikes on fully connected networks fitted to a function and on Transformers. A
spikes study therefore has two parts, either or both, and its units of work are the two parts' units:

* ``function``: fully connected networks trained full-batch with Adam on a function-approximation task, one
  ``FunctionRun`` per lr × seed. Each run is one Ray task that trains, measures the inline Adam statistics and probes
  its own state every ``probes.every`` steps (the network is small enough that a probe costs about as much as
  shipping a checkpoint would), then writes its ``function_runs`` row and its ``steps`` and ``probes`` rows. A run's
  id is ``fc-`` + the content hash (``sweeps.base.content_id``) of its semantic config (task, network, optimizer,
  steps, lr, seed, probe settings), not of the study name, resources or paths.
* ``lm``: the body of a language-model study (``sweeps.spec.LMStudyBody``: a ``kind: lm`` spec without name and
  results, which it takes from this spec), usually with ``probes.curvature`` and ``train.adam_stats``; its trials run
  through the Tune grid as any language-model trials do and write to the same results directory.

The task: inputs x ~ N(0, I_d) (``samples`` points drawn once with ``task.seed``), target y = sin(wᵀx) with w ~
N(0, I_d) drawn with the same seed. The network: ``depth`` hidden layers of ``width`` units with ``activation``,
PyTorch's default initialization drawn with the run's seed, float64. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from sweeps.base import PositiveFloat, PositiveInt, Seed, Strict, StudyBase, TaskResources, Unit, content_id
from sweeps.branching import lm_units
from sweeps.spec import AdamStatsSpec, LMStudyBody

ID_VERSION = 1


class SineTask(Strict):
    """y = sin(wᵀx) on ``samples`` inputs x ~ N(0, I_d); x and w drawn with ``seed`` (the same for every run)."""

    target: Literal["sine"] = "sine"
    inputs: PositiveInt = 4
    samples: PositiveInt = 256
    test_samples: PositiveInt = 1024
    seed: Seed = 1000


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
    seed: Annotated[tuple[Seed, ...], Field(min_length=1)] = (0,)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    adam_stats: AdamStatsSpec = AdamStatsSpec(every=1)
    probes: FunctionProbes = FunctionProbes()


class SpikesSpec(StudyBase):
    """An Adam-spikes study (``kind: spikes``): a ``function`` part, an ``lm`` part, or both."""

    kind: Literal["spikes"]
    function: FunctionPart | None = None
    lm: LMStudyBody | None = None
    resources: TaskResources = TaskResources()

    @model_validator(mode="after")
    def _something_to_run(self) -> SpikesSpec:
        if self.function is None and self.lm is None:
            raise ValueError("give a function part, an lm part, or both")
        return self


@dataclass(frozen=True)
class FunctionRun:
    """One fully connected network trained on the task with one (lr, seed): one Ray task."""

    TABLE: ClassVar[str] = "function_runs"

    study: str
    part: FunctionPart
    lr: float
    seed: int

    def semantic(self) -> dict[str, Any]:
        """What decides the run's numbers: the input of its id (the inline statistics only read state)."""
        part = self.part.model_dump(mode="json", exclude={"lr", "seed", "adam_stats"})
        return {"id_version": ID_VERSION, **part, "lr": self.lr, "seed": self.seed}

    @property
    def run_id(self) -> str:
        """Its row's key in ``function_runs`` (its steps and probes rows carry it as ``trial_id``)."""
        return content_id(self.semantic(), prefix="fc-")

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return (self.run_id,)

    def pending(self, finished: set[str]) -> FunctionRun | None:
        return None if self.run_id in finished else self

    def to_config(self) -> dict[str, Any]:
        return {"study": self.study, "part": self.part.model_dump(mode="json"), "lr": self.lr, "seed": self.seed}

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> FunctionRun:
        return cls(raw["study"], FunctionPart.model_validate(raw["part"]), raw["lr"], raw["seed"])


def function_runs(spec: SpikesSpec) -> list[FunctionRun]:
    """Every run of the function part, lr-major (deterministic); none without a function part."""
    part = spec.function
    if part is None:
        return []
    runs = [FunctionRun(spec.name, part, lr, seed) for lr in part.lr for seed in part.seed]
    return list({run.run_id: run for run in runs}.values())


def spikes_units(spec: SpikesSpec) -> list[Unit]:
    """The function runs, then the trials of the lm part."""
    lm = lm_units(spec.lm, spec.name) if spec.lm is not None else []
    return [*function_runs(spec), *lm]

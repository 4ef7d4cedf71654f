"""The recovery study spec (``kind: recovery``) and its tasks: what to train, on how many samples, how often.

A recovery study trains a *student* model from small initialization on n samples of a *target* function and asks
whether it recovers the target (relative test error on fresh points below ``recovered_threshold``). It sweeps
settings (target × student) × n × seed × init scale. Definitions:

* **task**: one (setting, n, seed, init scale): one training run and one row of the recovery table. Its ``task_id``
  is a short hash of its semantic config — target, student, n, seed, init scale, training and measurement settings —
  and not of the study name, resources or paths, so a rerun skips finished tasks and a grown axis runs only the new
  ones (the same rule as ``sweeps.grid``).
* **batch**: the tasks of one (setting, n, init scale) that differ only in their seed. They share tensor shapes, so
  one Ray task trains them together (seeds batched with ``torch.func.vmap``).

Targets (``family``): ``matrix`` (a d×d matrix of rank r, entries observed at random or in the textbook order: first
row, first column, then the rest row by row), ``conv_tanh`` (f*(x) = Σₛ tanh(kernel · x[s:s+k]), a one-channel CNN),
``neuron`` (a·tanh(wᵀx + b)), ``linear`` (c₀ + Σᵢ cᵢxᵢ). Students: ``matrix_factorization`` (AB, A, B ∈ ℝ^{d×d}),
``fc_tanh`` (Σᵢ aᵢ tanh(wᵢᵀx [+ bᵢ])), ``cnn1d`` (shared kernels over valid positions, a readout weight per position),
``toy`` (θ₀ + θ₁x₁ + θ₂θ₃x₂), ``affine`` (θ₀ + θᵀx), ``diagonal`` (Σᵢ (∏ₗ w_{l,i}) xᵢ). Which student fits which
target is in ``STUDENTS_OF``. This module imports no torch: the math lives in ``models/probes``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sweeps.base import PositiveFloat, PositiveInt, Seed, Strict, StudyBase, TaskResources, content_id

ID_VERSION = 1  # bump when the meaning of a field changes, so old task ids cannot be confused with new ones

# ------------------------------------------------------------------------------------------------------ targets


class MatrixTarget(Strict):
    """A d×d target UVᵀ of rank r, U, V ∈ ℝ^{d×r} standard Gaussian drawn with ``seed`` (the same for every run)."""

    family: Literal["matrix"]
    d: Annotated[int, Field(ge=2, le=12)] = 4
    rank: PositiveInt = 1
    observations: Literal["random", "textbook"] = "random"
    seed: Seed = 0

    @model_validator(mode="after")
    def _rank_fits(self) -> MatrixTarget:
        if self.rank > self.d:
            raise ValueError(f"rank {self.rank} exceeds d = {self.d}")
        return self

    @property
    def input_dim(self) -> int:
        return self.d

    @property
    def label(self) -> str:
        return f"matrix(d={self.d},r={self.rank},{self.observations})"


class ConvTanhTarget(Strict):
    """f*(x) = Σ_{s=0..d−k} tanh(kernel · x[s:s+k]) on x ~ N(0, I_d); the default is the d = 5 target of
    arXiv:2211.11623."""

    family: Literal["conv_tanh"]
    d: Annotated[int, Field(ge=1)] = 5
    kernel: Annotated[tuple[float, ...], Field(min_length=1)] = (0.6, 0.8, 1.0)

    @model_validator(mode="after")
    def _kernel_fits(self) -> ConvTanhTarget:
        if len(self.kernel) > self.d:
            raise ValueError(f"kernel of size {len(self.kernel)} is longer than the input (d = {self.d})")
        return self

    @property
    def input_dim(self) -> int:
        return self.d

    @property
    def terms(self) -> int:
        return self.d - len(self.kernel) + 1

    @property
    def label(self) -> str:
        return f"conv_tanh(d={self.d},kernel={','.join(f'{k:g}' for k in self.kernel)})"


class NeuronTarget(Strict):
    """f*(x) = a·tanh(wᵀx + b). ``inputs: grid`` (d = 1 only) trains on n evenly spaced points of [low, high] and
    tests on uniform points there; ``gaussian`` uses x ~ N(0, I_d) for both."""

    family: Literal["neuron"]
    a: float = 1.0
    w: Annotated[tuple[float, ...], Field(min_length=1)] = (1.0,)
    b: float = 1.0
    inputs: Literal["grid", "gaussian"] = "grid"
    low: float = -2.0
    high: float = 2.0

    @model_validator(mode="after")
    def _grid_is_1d(self) -> NeuronTarget:
        if self.inputs == "grid" and len(self.w) != 1:
            raise ValueError(f"inputs: grid needs a 1-D neuron (w of length 1), got w of length {len(self.w)}")
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        return self

    @property
    def input_dim(self) -> int:
        return len(self.w)

    @property
    def label(self) -> str:
        w = ",".join(f"{v:g}" for v in self.w)
        return f"neuron(a={self.a:g},w={w},b={self.b:g},{self.inputs})"


class LinearTarget(Strict):
    """f*(x) = c₀ + Σᵢ cᵢxᵢ on x ~ N(0, I_d); ``coefficients`` = [c₀, c₁, …, c_d]."""

    family: Literal["linear"]
    coefficients: Annotated[list[float], Field(min_length=2)]

    @property
    def input_dim(self) -> int:
        return len(self.coefficients) - 1

    @property
    def label(self) -> str:
        return f"linear({','.join(f'{c:g}' for c in self.coefficients)})"


Target = Annotated[MatrixTarget | ConvTanhTarget | NeuronTarget | LinearTarget, Field(discriminator="family")]

# ----------------------------------------------------------------------------------------------------- students


class MatrixFactorizationStudent(Strict):
    family: Literal["matrix_factorization"]

    @property
    def label(self) -> str:
        return "matrix_factorization"


class FcTanhStudent(Strict):
    family: Literal["fc_tanh"]
    width: PositiveInt
    bias: bool = True

    @property
    def label(self) -> str:
        return f"fc_tanh(m={self.width}{',bias' if self.bias else ''})"


class Cnn1dStudent(Strict):
    family: Literal["cnn1d"]
    channels: PositiveInt = 1
    kernel: PositiveInt = 3
    bias: bool = True

    @property
    def label(self) -> str:
        return f"cnn1d(c={self.channels},s={self.kernel}{',bias' if self.bias else ''})"


class ToyStudent(Strict):
    family: Literal["toy"]

    @property
    def label(self) -> str:
        return "toy"


class AffineStudent(Strict):
    family: Literal["affine"]

    @property
    def label(self) -> str:
        return "affine"


class DiagonalStudent(Strict):
    family: Literal["diagonal"]
    depth: Annotated[int, Field(ge=2)] = 2

    @property
    def label(self) -> str:
        return f"diagonal(L={self.depth})"


Student = Annotated[
    MatrixFactorizationStudent | FcTanhStudent | Cnn1dStudent | ToyStudent | AffineStudent | DiagonalStudent,
    Field(discriminator="family"),
]

STUDENTS_OF: dict[str, tuple[str, ...]] = {
    "matrix": ("matrix_factorization",),
    "conv_tanh": ("cnn1d", "fc_tanh"),
    "neuron": ("fc_tanh",),
    "linear": ("toy", "affine", "diagonal"),
}

# ------------------------------------------------------------------------------------------------------ the spec


class TrainSettings(Strict):
    """Full-batch gradient descent on the mean squared error, stopped at ``loss_tolerance`` or ``max_steps``."""

    lr: PositiveFloat = 0.1
    loss_tolerance: PositiveFloat = 1e-12
    max_steps: PositiveInt = 50_000


Seeds = list[Seed] | PositiveInt


class Setting(Strict):
    """One target × student; ``n``, ``seeds`` and ``train`` override the study-wide values for this setting."""

    target: Target
    student: Student
    n: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    seeds: Seeds | None = None
    train: TrainSettings | None = None

    @model_validator(mode="after")
    def _student_fits(self) -> Setting:
        allowed = STUDENTS_OF[self.target.family]
        if self.student.family not in allowed:
            raise ValueError(
                f"student {self.student.family!r} cannot fit a {self.target.family!r} target; allowed: "
                f"{', '.join(allowed)}"
            )
        if isinstance(self.student, ToyStudent) and self.target.input_dim != 2:
            raise ValueError(
                f"the toy student needs d = 2 (coefficients [c0, c1, c2]), got d = {self.target.input_dim}"
            )
        if isinstance(self.student, DiagonalStudent) and self.target.coefficients[0] != 0:  # type: ignore[union-attr]
            raise ValueError("the diagonal student has no intercept: the target's c0 must be 0")
        target, student = self.target, self.student
        # The closed-form model ranks assume the student can represent the target exactly; say so up front.
        cnn_on_conv = isinstance(student, Cnn1dStudent) and isinstance(target, ConvTanhTarget)
        if cnn_on_conv and student.kernel != len(target.kernel):  # type: ignore[union-attr]
            raise ValueError(f"cnn1d kernel {student.kernel} must equal the target's kernel size {len(target.kernel)}")
        if isinstance(student, FcTanhStudent) and isinstance(target, ConvTanhTarget) and student.width < target.terms:
            raise ValueError(f"fc_tanh width {student.width} is below the target's {target.terms} neurons")
        if isinstance(student, FcTanhStudent) and isinstance(target, NeuronTarget) and target.b and not student.bias:
            raise ValueError(f"the target neuron has bias b = {target.b:g}: the fc_tanh student needs bias: true")
        return self

    @property
    def label(self) -> str:
        return f"{self.target.label} ← {self.student.label}"


class RecoveryResources(TaskResources):
    vmap_seeds: bool = True


class RecoverySpec(StudyBase):
    """A recovery study (``kind: recovery``)."""

    kind: Literal["recovery"]
    settings: Annotated[list[Setting], Field(min_length=1)]
    n: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    seeds: Seeds = 10
    init_scales: Annotated[tuple[PositiveFloat, ...], Field(min_length=1)] = (1e-10,)
    train: TrainSettings = TrainSettings()
    recovered_threshold: PositiveFloat = 1e-4
    test_points: Annotated[int, Field(ge=10)] = 1000
    rank_rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    resources: RecoveryResources = RecoveryResources()

    @field_validator("init_scales")
    @classmethod
    def _small_enough(cls, scales: tuple[float, ...]) -> tuple[float, ...]:
        # Recovery theory is about the small-initialization limit; std above 1 is an input error, not a study.
        for s in scales:
            if s > 1:
                raise ValueError(f"init scale (std) {s:g} is above 1; use values such as 1e-10 (variance 1e-20)")
        return scales

    @model_validator(mode="after")
    def _every_setting_has_n(self) -> RecoverySpec:
        for i, setting in enumerate(self.settings):
            n = setting.n or self.n
            if not n:
                raise ValueError(f"settings.{i}: give n (sample sizes) for the setting or for the study")
            if isinstance(setting.target, MatrixTarget) and max(n) > setting.target.d**2:
                raise ValueError(
                    f"settings.{i}: n = {max(n)} exceeds the {setting.target.d**2} entries of the "
                    f"{setting.target.d}×{setting.target.d} target"
                )
        return self


# --------------------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class RecoveryBatch:
    """The tasks of one (setting, n, init scale), one per seed: trained together (one Ray task), one row each."""

    TABLE: ClassVar[str] = "recovery"

    study: str
    setting: Setting
    n: int
    init_scale: float
    seeds: tuple[int, ...]
    train: TrainSettings
    recovered_threshold: float
    test_points: int
    rank_rtol: float
    vectorize: bool = True
    """Train the seeds together with ``torch.func.vmap`` (``resources.vmap_seeds``; not part of the task ids)."""

    def semantic(self, seed: int) -> dict[str, Any]:
        """What decides the result of the run with ``seed``: the input of its task id."""
        return {
            "id_version": ID_VERSION,
            "target": self.setting.target.model_dump(mode="json"),
            "student": self.setting.student.model_dump(mode="json"),
            "n": self.n,
            "seed": seed,
            "init_scale": self.init_scale,
            "train": self.train.model_dump(mode="json"),
            "recovered_threshold": self.recovered_threshold,
            "test_points": self.test_points,
            "rank_rtol": self.rank_rtol,
        }

    def task_id(self, seed: int) -> str:
        return content_id(self.semantic(seed))

    @property
    def unit_ids(self) -> tuple[str, ...]:
        return tuple(self.task_id(s) for s in self.seeds)

    def pending(self, finished: set[str]) -> RecoveryBatch | None:
        """This batch restricted to its seeds without a row, or None when every seed has one."""
        seeds = tuple(s for s in self.seeds if self.task_id(s) not in finished)
        return RecoveryBatch(**{**self.__dict__, "seeds": seeds}) if seeds else None

    def to_config(self) -> dict[str, Any]:
        """JSON-safe form, to ship to a Ray task."""
        return {**self.__dict__, "setting": self.setting.model_dump(mode="json"), "train": self.train.model_dump()}

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> RecoveryBatch:
        return cls(
            **{
                **raw,
                "setting": Setting.model_validate(raw["setting"]),
                "train": TrainSettings.model_validate(raw["train"]),
                "seeds": tuple(raw["seeds"]),
            }
        )


def recovery_batches(spec: RecoverySpec) -> list[RecoveryBatch]:
    """Every batch of the study, in order: settings, then n, then init scale (deterministic)."""
    out = []
    for setting in spec.settings:
        seeds = _seed_list(setting.seeds if setting.seeds is not None else spec.seeds)
        for n, scale in itertools.product(setting.n or spec.n or [], spec.init_scales):
            out.append(
                RecoveryBatch(
                    study=spec.name,
                    setting=setting,
                    n=n,
                    init_scale=scale,
                    seeds=seeds,
                    train=setting.train or spec.train,
                    recovered_threshold=spec.recovered_threshold,
                    test_points=spec.test_points,
                    rank_rtol=spec.rank_rtol,
                    vectorize=spec.resources.vmap_seeds,
                )
            )
    return out


def _seed_list(seeds: list[int] | int) -> tuple[int, ...]:
    return tuple(range(seeds)) if isinstance(seeds, int) else tuple(dict.fromkeys(seeds))

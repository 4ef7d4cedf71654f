"""The language-model study spec (``kind: lm``): data, model sizes, the grid, training, resources and probes.

A bad spec raises ``SpecError`` (``sweeps.base``) with one line naming the field, the value and what is allowed.

Conventions the rest of the project relies on:

* ``init`` values are ``{rate: γ}`` (every weight matrix drawn from N(0, fan_in^(−2γ)); embeddings and the LM head use
  d_model^(−γ)) or ``{std: σ}`` (a fixed std for every weight matrix, the GPT-2-style baseline).
* ``grid`` axes (``tokens``, ``init``, ``weight_decay``, ``seed``, optionally ``lr``) are crossed with each other and
  with ``model.sizes``. ``grid.cases`` pairs values instead: each case sets several axes together, and the cases are
  crossed with the remaining axes. An axis is given either as a list or inside the cases, never both.
* ``LMStudyBody`` is everything but the study's name and results: a ``kind: lm`` spec is one with a name, and a
  spikes study's ``lm`` part is one without (it takes the spikes study's).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sweeps.base import NonNegativeFloat, PositiveFloat, PositiveInt, Seed, Strict, StudyBase

AXES = ("tokens", "init", "weight_decay", "seed", "lr")
BYTE_ALPHABET = 256  # a byte-level BPE vocabulary holds every byte plus its special tokens


# --------------------------------------------------------------------------------------------------------- data


class BPETokenizer(Strict):
    """Byte-level BPE trained with `tokenizers` on the training text."""

    vocab_size: PositiveInt = 1024

    @field_validator("vocab_size")
    @classmethod
    def _covers_bytes(cls, v: int) -> int:
        if v <= BYTE_ALPHABET:
            raise ValueError(f"must exceed the {BYTE_ALPHABET}-symbol byte alphabet of byte-level BPE")
        return v

    @property
    def identity(self) -> str:
        return f"bpe-{self.vocab_size}"


class PretrainedTokenizer(Strict):
    """A pretrained tokenizer by name or local path (loaded with `transformers.AutoTokenizer`)."""

    pretrained: Annotated[str, Field(min_length=1)]

    @property
    def identity(self) -> str:
        return f"pretrained:{self.pretrained}"


class SyntheticCorpus(Strict):
    """A seeded Zipf–Markov language: its tokens are its symbols, and its entropy rate is known exactly."""

    vocab_size: Annotated[int, Field(ge=2, le=8192)] = 256  # the stationary distribution is an exact O(V³) solve
    zipf_exponent: PositiveFloat = 1.1
    branching: Annotated[int, Field(ge=2)] = 32
    tokens: PositiveInt = 2_000_000
    seed: Seed = 0

    @model_validator(mode="after")
    def _branching_fits(self) -> SyntheticCorpus:
        if self.branching > self.vocab_size:
            raise ValueError(f"branching {self.branching} exceeds vocab_size {self.vocab_size}")
        return self


class DatasetsCorpus(Strict):
    """Any dataset `datasets.load_dataset` can read: a hub name, or a builder (json, parquet, text) with local files."""

    path: Annotated[str, Field(min_length=1)]
    name: str | None = None
    data_files: list[str] | None = None
    split: str = "train"
    text_field: str = "text"

    @field_validator("data_files")
    @classmethod
    def _files_exist(cls, files: list[str] | None) -> list[str] | None:
        if files is not None:
            if not files:
                raise ValueError("must list at least one file")
            for f in files:
                if "://" not in f and not any(ch in f for ch in "*?[") and not Path(f).expanduser().exists():
                    raise ValueError(f"file {f!r} does not exist")
        return files


class DataSpec(Strict):
    corpus: Literal["python-stdlib", "synthetic"] | DatasetsCorpus = "python-stdlib"
    synthetic: SyntheticCorpus | None = None
    tokenizer: BPETokenizer | PretrainedTokenizer | None = None
    eval_tokens: PositiveInt = 65_536
    cache_dir: str = "~/.cache/scalesweep"
    fingerprint: str | None = None
    """A text corpus's fingerprint (sha256 of exactly the text read), filled in by the driver from the text it reads
    before any trial id is made, so that ids name the text and not where it lies; a trial refuses text that no
    longer matches it."""

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        if self.corpus == "synthetic":
            if self.tokenizer is not None:
                raise ValueError("the synthetic corpus is already tokens (its symbols): remove data.tokenizer")
            if self.fingerprint is not None:
                raise ValueError("the synthetic corpus is named by its parameters: remove data.fingerprint")
            if self.synthetic is None:
                object.__setattr__(self, "synthetic", SyntheticCorpus())
        else:
            if self.synthetic is not None:
                raise ValueError("data.synthetic is only for corpus: synthetic")
            if self.tokenizer is None:
                object.__setattr__(self, "tokenizer", BPETokenizer())
        return self

    @property
    def corpus_name(self) -> str:
        return self.corpus if isinstance(self.corpus, str) else self.corpus.path

    @property
    def tokenizer_identity(self) -> str:
        return "symbols" if self.tokenizer is None else self.tokenizer.identity

    def identity(self) -> dict[str, Any]:
        """What of the data decides a trial's numbers: the synthetic corpus's parameters; for a text corpus, once
        its fingerprint is known, that fingerprint in place of the corpus's location (the same bytes anywhere are
        the same data, edited bytes are not). Where the cache lies never counts."""
        dumped = self.model_dump(mode="json", exclude={"cache_dir", "fingerprint"})
        if self.fingerprint is None:
            return dumped
        return {**dumped, "corpus": {"fingerprint": self.fingerprint}}


# -------------------------------------------------------------------------------------------------------- model

_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


class Size(Strict):
    n_layer: PositiveInt
    d_model: PositiveInt

    @property
    def label(self) -> str:
        return f"{self.n_layer}x{self.d_model}"


class ModelSpec(Strict):
    architecture: Literal["llama", "gpt2"] = "llama"
    sizes: Annotated[list[Size], Field(min_length=1)]
    head_dim: PositiveInt = 32
    seq_len: PositiveInt = 128

    @field_validator("sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = _SIZE.match(item)
                if not m:
                    raise ValueError(f"size {item!r} is not 'n_layer x d_model' such as '2x64'")
                item = {"n_layer": int(m.group(1)), "d_model": int(m.group(2))}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        for size in self.sizes:
            if size.d_model % self.head_dim:
                raise ValueError(
                    f"d_model {size.d_model} of size {size.label} is not a multiple of head_dim {self.head_dim}"
                )
        return self


# --------------------------------------------------------------------------------------------------------- grid


class Init(Strict):
    """Exactly one of a rate γ (std = fan_in^(−γ)) or a fixed std."""

    rate: PositiveFloat | None = None
    std: PositiveFloat | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Init:
        if (self.rate is None) == (self.std is None):
            raise ValueError("give exactly one of rate (std = fan_in^-rate) or std (fixed), e.g. {rate: 0.5}")
        return self

    @property
    def label(self) -> str:
        return f"γ={self.rate:g}" if self.rate is not None else f"std={self.std:g}"


class Case(Strict):
    """Values set together; unset fields come from the crossed axes."""

    tokens: PositiveInt | None = None
    init: Init | None = None
    weight_decay: NonNegativeFloat | None = None
    seed: Seed | None = None
    lr: PositiveFloat | None = None


class GridSpec(Strict):
    tokens: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    init: Annotated[list[Init], Field(min_length=1)] | None = None
    weight_decay: Annotated[list[NonNegativeFloat], Field(min_length=1)] | None = None
    seed: Annotated[list[Seed], Field(min_length=1)] | None = None
    lr: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None
    cases: Annotated[list[Case], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _axes_once(self) -> GridSpec:
        in_cases: set[str] = set()
        for case in self.cases or []:
            set_here = {k for k in AXES if getattr(case, k) is not None}
            if not set_here:
                raise ValueError("a case must set at least one axis")
            if in_cases and set_here != in_cases:
                raise ValueError(f"every case must set the same axes; got {sorted(set_here)} and {sorted(in_cases)}")
            in_cases = set_here
        for axis in in_cases:
            if getattr(self, axis) is not None:
                raise ValueError(f"axis {axis!r} is given both as a list and inside cases; keep one")
        if self.tokens is None and "tokens" not in in_cases:
            raise ValueError("the tokens axis is required (training tokens D per trial)")
        return self

    @property
    def case_axes(self) -> tuple[str, ...]:
        if not self.cases:
            return ()
        return tuple(k for k in AXES if getattr(self.cases[0], k) is not None)


# -------------------------------------------------------------------------------------------------------- train


class AdamStatsSpec(Strict):
    """Inline Adam statistics (``models/probes/adam.py::adam_step_stats``) every ``every`` steps; 0 = off.

    A coordinate is in the critical regime g² ≪ v̂ when g² < ρ·v̂. The default ρ = 0.01 puts g² two orders below v̂,
    where v's update v_{t+1}/v_t = β2 + (1 − β2)·g²/v̂ is β2 to within 1% of (1 − β2).
    """

    every: Annotated[int, Field(ge=0)] = 0
    rho: PositiveFloat = 0.01


class WidthScaling(Strict):
    """Learning rate and warmup that follow model width: ``train.lr`` and ``train.warmup_steps`` are the settings of
    a model of width ``reference_d_model``; a model of width d trains with lr·(d/reference)^lr_exponent and
    round(warmup_steps·(d/reference)^warmup_exponent) warmup steps. An lr grid axis scales the same way (its values
    are lrs at the reference width). lr ∝ 1/width (exponent −1) is what µP prescribes for Adam's hidden matrices."""

    reference_d_model: PositiveInt
    lr_exponent: float = -1.0
    warmup_exponent: float = 0.0

    def lr(self, base: float, d_model: int) -> float:
        return base * (d_model / self.reference_d_model) ** self.lr_exponent

    def warmup_steps(self, base: int, d_model: int) -> int:
        return round(base * (d_model / self.reference_d_model) ** self.warmup_exponent)


WSD_DEFAULTS = (0.2, "1-sqrt", True)
"""decay_fraction, decay_shape and branching of a ``wsd`` schedule when the spec leaves them out."""


class TrainSpec(Strict):
    """How every trial trains. ``schedule`` after the linear warmup: ``cosine`` to ``min_lr_ratio`` × lr at the last
    step, ``constant``, or ``wsd`` (warmup–stable–decay: the peak lr until the final ``decay_fraction`` of the run,
    then a ``decay_shape`` decay to ``min_lr_ratio`` × lr; Hägele et al. 2024). Under ``wsd`` a study trains each
    setting once and fills every D of the tokens axis from cooldown branches (``branching``, on by default; README
    "Cooldown branches"). ``compile`` compiles the model with ``torch.compile`` (default: on for GPU trials, off on
    CPU). ``decay_fraction``, ``decay_shape`` and ``branching`` exist only under ``wsd``; ``branching`` and
    ``compile`` change how a trial runs, not what it computes, so they are not part of its id."""

    batch_size: PositiveInt = 16
    lr: PositiveFloat = 3e-3
    warmup_steps: Annotated[int, Field(ge=0)] = 20
    schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    decay_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    decay_shape: Literal["linear", "1-sqrt"] | None = None
    branching: bool | None = None
    compile: bool | None = None
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    eps: PositiveFloat = 1e-8
    grad_clip: NonNegativeFloat = 1.0
    eval_interval: PositiveInt = 50
    log_interval: PositiveInt = 1
    checkpoint_interval: Annotated[int, Field(ge=0)] = 0
    adam_stats: AdamStatsSpec = AdamStatsSpec()
    width_scaling: WidthScaling | None = None

    @model_validator(mode="after")
    def _wsd_settings(self) -> TrainSpec:
        wsd_only = ("decay_fraction", "decay_shape", "branching")
        if self.schedule != "wsd":
            for key in wsd_only:
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is a setting of schedule: wsd (got schedule: {self.schedule})")
            return self
        for key, default in zip(wsd_only, WSD_DEFAULTS, strict=True):
            if getattr(self, key) is None:
                object.__setattr__(self, key, default)
        return self

    @model_validator(mode="after")
    def _stats_on_logged_steps(self) -> TrainSpec:
        every = self.adam_stats.every
        if every % self.log_interval:
            raise ValueError(
                f"adam_stats.every {every} is not a multiple of log_interval {self.log_interval}: "
                "the statistics go into the logged steps rows"
            )
        return self


class ResourcesSpec(Strict):
    """Per training process; a trial with ``workers: k`` runs k processes under Ray Train and takes k times these."""

    cpus_per_trial: PositiveFloat = 1
    gpus_per_trial: NonNegativeFloat = 0
    workers: PositiveInt = 1
    fsdp_min_params: Annotated[int, Field(ge=0)] = 1_000_000_000
    max_concurrent: PositiveInt | None = None
    retries: Annotated[int, Field(ge=0)] = 1
    torch_threads: PositiveInt | None = None


class CurvatureProbeSpec(Strict):
    """A curvature probe (``models/probes/curvature.py``) of the trial's state after every ``every`` steps."""

    every: PositiveInt
    batch: PositiveInt = 8
    top_k: PositiveInt = 1


class ProbesSpec(Strict):
    curvature: CurvatureProbeSpec | None = None


class LMStudyBody(Strict):
    """What a language-model study trains and how: a ``kind: lm`` spec without its name and results."""

    data: DataSpec = DataSpec()
    model: ModelSpec
    grid: GridSpec
    train: TrainSpec = TrainSpec()
    resources: ResourcesSpec = ResourcesSpec()
    probes: ProbesSpec | None = None

    @model_validator(mode="after")
    def _one_batch_at_least(self) -> LMStudyBody:
        batch_tokens = self.train.batch_size * self.model.seq_len
        values = list(self.grid.tokens or []) + [c.tokens for c in self.grid.cases or [] if c.tokens is not None]
        for tokens in values:
            if tokens < batch_tokens:
                raise ValueError(
                    f"grid.tokens value {tokens:,} is less than one batch "
                    f"(train.batch_size × model.seq_len = {batch_tokens:,} tokens)"
                )
        if self.train.batch_size % self.resources.workers:
            raise ValueError(
                f"train.batch_size {self.train.batch_size} is not a multiple of resources.workers "
                f"{self.resources.workers}: each worker takes an equal share of every batch"
            )
        probed = self.probes is not None and self.probes.curvature is not None
        if probed and self.probes.curvature.every % self.train.log_interval:  # type: ignore[union-attr]
            raise ValueError(
                f"probes.curvature.every {self.probes.curvature.every} is not a multiple of train.log_interval "  # type: ignore[union-attr]
                f"{self.train.log_interval}: a probe step must be a logged step"
            )
        for key, on in (("train.adam_stats", self.train.adam_stats.every > 0), ("probes.curvature", probed)):
            if on and self.resources.workers > 1:
                raise ValueError(
                    f"{key} needs resources.workers: 1 (a sharded optimizer state has no single-process view)"
                )
        if self.train.eval_interval and self.data.eval_tokens < self.model.seq_len:
            raise ValueError(
                f"data.eval_tokens {self.data.eval_tokens} is shorter than one sequence ({self.model.seq_len})"
            )
        return self


class StudySpec(LMStudyBody, StudyBase):
    """A language-model scaling study (``kind: lm``, the default)."""

    kind: Literal["lm"] = "lm"

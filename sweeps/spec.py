"""The language-model study spec (``kind: lm``): data, model sizes, the grid, training, resources and probes.

A bad spec raises ``SpecError`` (``sweeps.base``) with one line naming the field, the value and what is allowed.

Conventions the rest of the project relies on:

* ``init`` values are ``{rate: γ}`` (every weight matrix drawn from N(0, fan_in^(−2γ)); embeddings and the LM head use
  d_model^(−γ)) or ``{std: σ}`` (a fixed std for every weight matrix, the GPT-2-style baseline).
* ``grid`` axes (``tokens``, ``init``, ``weight_decay``, ``seed``, optionally ``lr``) are crossed with each other and
  with ``model.sizes``. ``grid.cases`` pairs values instead: each case sets several axes together, and the cases are
  crossed with the remaining axes. An axis is given either as a list or inside the cases, never both.
* D comes from exactly one of three axes: ``tokens`` (D itself), ``flops`` (compute budgets C: each size's D =
  C / (6·N)) or ``tokens_per_param`` (ratios r: D = r·N), N = non-embedding parameters plus the LM head (the N of
  the trials' ``flops`` column, `sweeps.accounting`). A budget's D is rounded to the nearest whole batch (half up);
  a cell whose unrounded D is below one batch, or whose D exceeds a synthetic corpus, is refused here. A budget
  needs the vocabulary size from the spec (the synthetic corpus's or a BPE tokenizer's), so that every machine
  computes the same D, and so the same trial ids, without loading a tokenizer.
* ``LMStudyBody`` is everything but the study's name and results: a ``kind: lm`` spec is one with a name, and a
  spikes study's ``lm`` part is one without (it takes the spikes study's).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sweeps.accounting import ModelShape, budget_tokens, shape_counts
from sweeps.base import NonNegativeFloat, PositiveFloat, PositiveInt, Seed, Strict, StudyBase

D_AXES = ("tokens", "flops", "tokens_per_param")
"""The axes D comes from: D itself, a compute budget, or tokens per parameter (exactly one per grid)."""
AXES = (*D_AXES, "init", "weight_decay", "seed", "lr")
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

    @property
    def vocab_size(self) -> int | None:
        """The vocabulary size the spec fixes: the synthetic corpus's, or the one a BPE tokenizer is trained to;
        None for a pretrained tokenizer, whose size is known only once it is loaded."""
        if self.synthetic is not None:
            return self.synthetic.vocab_size
        return self.tokenizer.vocab_size if isinstance(self.tokenizer, BPETokenizer) else None

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

    def shape(self, size: Size) -> ModelShape:
        """The shape of the model of `size` in this family."""
        return ModelShape(self.architecture, size.n_layer, size.d_model, self.head_dim, self.seq_len)


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
    flops: PositiveFloat | None = None
    tokens_per_param: PositiveFloat | None = None
    init: Init | None = None
    weight_decay: NonNegativeFloat | None = None
    seed: Seed | None = None
    lr: PositiveFloat | None = None


class GridSpec(Strict):
    tokens: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    flops: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None
    tokens_per_param: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None
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
        given = [axis for axis in D_AXES if getattr(self, axis) is not None or axis in in_cases]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of tokens (D per trial), flops (compute budgets C, D = C/(6·N)) or tokens_per_param "
                f"(D = r·N) to set the training tokens D; got {', '.join(given) or 'none'}"
            )
        return self

    @property
    def d_axis(self) -> str:
        """The axis D comes from: tokens, flops or tokens_per_param."""
        return next(axis for axis in D_AXES if getattr(self, axis) is not None or axis in self.case_axes)

    def values(self, axis: str) -> list[Any]:
        """The values of `axis`, from its list or its cases, in order and without repeats."""
        listed = getattr(self, axis) or [getattr(case, axis) for case in self.cases or []]
        return list(dict.fromkeys(listed))

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


# ----------------------------------------------------------------------------------------------------- tracking


class MLflowTracking(Strict):
    """An MLflow run per trial in the experiment named after the study: a file store under ``RESULTS/mlruns`` by
    default, or ``tracking_uri`` (credentials come from MLflow's own environment variables, never from the spec)."""

    tracking_uri: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, raw: Any) -> Any:
        # The spec is copied into RESULTS/spec.yaml, every trials row and Tune's files: a password there would leak.
        # Checked on the whole section, so that the error line does not quote the URI (and its password) back.
        uri = raw.get("tracking_uri") if isinstance(raw, dict) else None
        if isinstance(uri, str) and "@" in uri.partition("://")[2].split("/", 1)[0]:
            raise ValueError(
                "tracking_uri must not carry credentials (user:password@); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN in the environment instead"
            )
        return raw


class WandbTracking(Strict):
    """A W&B run per trial (id = trial id) in ``project``, grouped by study. ``mode``: default offline, or online when
    the environment has ``WANDB_API_KEY``; offline runs lie under ``RESULTS/wandb`` for ``wandb sync``."""

    project: Annotated[str, Field(min_length=1)] = "scalesweep"
    mode: Literal["offline", "online"] | None = None


class TrackingSpec(Strict):
    """Mirrors of every trial's Parquet rows in experiment trackers (``orchestrator/tracking.py``). ``true`` turns a
    tracker on with its defaults. How a trial is watched, not what it computes: not part of its id."""

    tensorboard: bool = False
    mlflow: MLflowTracking | None = None
    wandb: WandbTracking | None = None

    @field_validator("mlflow", "wandb", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {} if value else None
        return value

    @property
    def names(self) -> tuple[str, ...]:
        """The trackers turned on."""
        on = {"tensorboard": self.tensorboard, "mlflow": self.mlflow is not None, "wandb": self.wandb is not None}
        return tuple(name for name, is_on in on.items() if is_on)


class LMStudyBody(Strict):
    """What a language-model study trains and how: a ``kind: lm`` spec without its name and results."""

    data: DataSpec = DataSpec()
    model: ModelSpec
    grid: GridSpec
    train: TrainSpec = TrainSpec()
    resources: ResourcesSpec = ResourcesSpec()
    probes: ProbesSpec | None = None
    tracking: TrackingSpec | None = None

    @property
    def batch_tokens(self) -> int:
        """Tokens in one batch: train.batch_size × model.seq_len."""
        return self.train.batch_size * self.model.seq_len

    @model_validator(mode="after")
    def _one_batch_at_least(self) -> LMStudyBody:
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

    @model_validator(mode="after")
    def _cells_fit(self) -> LMStudyBody:
        """Every cell's D can be trained: at least one batch (a budget's before rounding), no two budgets give one
        size the same D, and no D exceeds a synthetic corpus (a text corpus is counted once it is tokenized, when a
        run sets up its data, still before anything is written)."""
        axis, corpus = self.grid.d_axis, self.data.synthetic.tokens if self.data.synthetic is not None else None
        batch = self.batch_tokens
        if axis == "tokens":
            for tokens in self.grid.values(axis):
                if tokens < batch:
                    raise ValueError(
                        f"grid.tokens value {tokens:,} is less than one batch "
                        f"(train.batch_size × model.seq_len = {batch:,} tokens)"
                    )
            largest = max(self.grid.values(axis))
            if corpus is not None and largest > corpus:
                raise ValueError(
                    f"grid.tokens value {largest:,} exceeds the {corpus:,} training tokens of the synthetic corpus: "
                    "lower grid.tokens or raise data.synthetic.tokens"
                )
            return self
        if self.data.vocab_size is None:
            raise ValueError(
                f"grid.{axis} needs the vocabulary size when the spec is read, and a pretrained tokenizer's is known "
                "only once it is loaded: use a bpe tokenizer, or give grid.tokens"
            )
        for size in self.model.sizes:
            given: dict[int, float] = {}
            for value in self.grid.values(axis):
                exact = self._budget_tokens(size, axis, value)
                tokens = self._whole_batches(exact)
                where = f"grid.{axis} value {value:g} gives size {size.label} D = {exact:,.0f} tokens"
                if exact < batch:
                    raise ValueError(f"{where}, less than one batch ({batch:,} tokens): raise it or drop the size")
                if corpus is not None and tokens > corpus:
                    raise ValueError(
                        f"{where}, more than the {corpus:,} training tokens of the synthetic corpus: lower it or "
                        "raise data.synthetic.tokens"
                    )
                if tokens in given:
                    raise ValueError(
                        f"grid.{axis} values {given[tokens]:g} and {value:g} give size {size.label} the same D "
                        f"({tokens:,} tokens in whole batches): space them further apart"
                    )
                given[tokens] = value
        return self

    def _budget_tokens(self, size: Size, axis: str, value: float) -> float:
        vocab = self.data.vocab_size
        assert vocab is not None, "_cells_fit refuses a budget axis without a vocabulary size"
        return budget_tokens(shape_counts(self.model.shape(size), vocab), **{axis: value})

    def cell_tokens(self, size: Size, axis: str, value: float) -> int:
        """The D of the model of `size` in a cell whose `axis` (flops or tokens_per_param) has `value`: the budget's
        D (`sweeps.accounting.budget_tokens`) rounded to the nearest whole batch, half up."""
        return self._whole_batches(self._budget_tokens(size, axis, value))

    def _whole_batches(self, tokens: float) -> int:
        return math.floor(tokens / self.batch_tokens + 0.5) * self.batch_tokens


class StudySpec(LMStudyBody, StudyBase):
    """A language-model scaling study (``kind: lm``, the default)."""

    kind: Literal["lm"] = "lm"

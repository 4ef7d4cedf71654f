"""The Parquet tables of a results directory, declared once.

Every layer that writes or reads results (the trial, the status command, the analysis layer) goes through these
declarations, so a column is named, typed and documented in exactly one place. A table is a directory of Parquet files
(``RESULTS/<table>/<key>.parquet``); each file carries the table name and schema version in its metadata, so a reader
can tell a file written by an older scalesweep from a corrupted one.

Only pyarrow is imported here: ``sweeps`` stays importable on a machine without torch or ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 3
"""1: the first tables. 2: ``flops`` and ``flops_per_token`` count the LM head; ``params_head`` and ``eval_loss_se``
added (a version-1 row's flops counts non-embedding parameters only). 3: a spikes study's function runs have their
own table, ``function_runs``; ``trials`` holds language-model trials only (a version-2 results directory may hold
function runs in ``trials``, with ``architecture`` mlp-<activation>: `analysis.results` reads them as function
runs)."""
METADATA_TABLE = b"scalesweep.table"
METADATA_VERSION = b"scalesweep.schema_version"


class SchemaError(ValueError):
    """Rows or a file that do not match a table's declaration."""


class NewerSchemaError(SchemaError):
    """A file written by a newer scalesweep: its columns may mean something else, so nothing may act on it."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    """A results table: its directory name, key columns and declared columns."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def schema(self) -> pa.Schema:
        fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns]
        metadata = {METADATA_TABLE: self.name.encode(), METADATA_VERSION: str(SCHEMA_VERSION).encode()}
        return pa.schema(fields, metadata=metadata)

    def to_arrow(self, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
        """Rows (dicts) → an Arrow table with this schema; undeclared or missing required columns are errors."""
        rows = list(rows)
        declared = set(self.names)
        for row in rows:
            unknown = set(row) - declared
            if unknown:
                raise SchemaError(
                    f"table {self.name!r}: undeclared column(s) {sorted(unknown)}; declare them in sweeps/tables.py"
                )
        columns = {}
        for col in self.columns:
            values = [_clean(row.get(col.name)) for row in rows]
            if not col.nullable and any(v is None for v in values):
                raise SchemaError(f"table {self.name!r}: column {col.name!r} must not be null")
            columns[col.name] = pa.array(values, type=col.type)
        return pa.Table.from_pydict(columns, schema=self.schema())

    def check(self, schema: pa.Schema, where: str) -> None:
        """Raise SchemaError naming `where` if a file's schema does not match this table's declaration, or if a newer
        scalesweep wrote it (its schema version is above ours: its columns may mean something else).

        A nullable column the file lacks is fine: it was declared after the file was written and reads as null.
        """
        metadata = schema.metadata or {}
        if metadata.get(METADATA_TABLE) not in (None, self.name.encode()):
            raise SchemaError(f"{where}: is a {metadata[METADATA_TABLE].decode()!r} file, expected {self.name!r}")
        version = metadata.get(METADATA_VERSION, b"").decode(errors="replace")
        if version and (not version.isdigit() or int(version) > SCHEMA_VERSION):
            raise NewerSchemaError(
                f"{where}: written with schema version {version}, newer than this scalesweep reads "
                f"({SCHEMA_VERSION}); upgrade scalesweep to read it"
            )
        for col in self.columns:
            if col.name not in schema.names:
                if col.nullable:
                    continue
                raise SchemaError(f"{where}: missing column {col.name!r} of table {self.name!r}")
            found = schema.field(col.name).type
            if not _reads_as(found, col.type):
                raise SchemaError(f"{where}: column {col.name!r} has type {found}, expected {col.type}")

    def conform(self, data: pa.Table, where: str) -> pa.Table:
        """`data` checked, with the declared columns and types first (absent ones as nulls), then any extras."""
        self.check(data.schema, where)
        declared = self.schema()
        columns = [
            data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
            for f in declared
        ]
        extra = [name for name in data.column_names if name not in declared.names]
        schema = pa.schema(list(declared) + [data.schema.field(name) for name in extra])
        return pa.Table.from_arrays(columns + [data.column(name) for name in extra], schema=schema)


def read_file(filesystem: pafs.FileSystem, path: str, table: Table) -> pa.Table:
    """The one reader of a results file, for every layer that decides from it (the driver's "finished", ``status``,
    the analysis): `path` read whole, checked against `table` and conformed (each value cast without loss), or
    SchemaError, ArrowException, OSError."""
    with filesystem.open_input_file(path) as handle:
        data = pq.read_table(handle)
    return table.conform(data, path)


def _reads_as(found: pa.DataType, declared: pa.DataType) -> bool:
    """Whether a file column of type `found` may hold `declared` values: the same type, all nulls, or a narrower or
    differently encoded one that tools write for the same values (a pandas round trip writes large_string, and an
    integer column with missing values as float64; float32, int32, timestamps in another unit, categoricals).
    `conform` then casts each value safely, so a value that would change (2.5 as an integer) fails the read."""
    if found == declared or pa.types.is_null(found):
        return True
    if pa.types.is_dictionary(found):
        return _reads_as(found.value_type, declared)
    if pa.types.is_string(declared):
        return pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_string_view(found)
    if pa.types.is_integer(declared) or pa.types.is_floating(declared):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_timestamp(declared):
        return pa.types.is_timestamp(found) and found.tz == declared.tz
    if pa.types.is_list(declared):
        listed = pa.types.is_list(found) or pa.types.is_large_list(found) or pa.types.is_list_view(found)
        return listed and _reads_as(found.value_type, declared.value_type)
    return False


def _clean(value: Any) -> Any:
    # numpy scalars and NaN: Arrow stores a missing measurement as null, never as NaN-for-missing.
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    return value


def _c(name: str, type_: pa.DataType, doc: str, *, nullable: bool = True) -> Column:
    return Column(name, type_, doc, nullable)


f64, i64, s = pa.float64(), pa.int64(), pa.string()


def _outcome(key: str, doc: str) -> tuple[Column, ...]:
    """The leading columns of a table of units that end in a status: key, study, status, error."""
    return (
        _c(key, s, doc, nullable=False),
        _c("study", s, "Study name from the spec.", nullable=False),
        _c("status", s, "ok, diverged (non-finite loss) or failed (an exception; see `error`).", nullable=False),
        _c("error", s, "One-line reason when status is diverged or failed, else null."),
    )


_PROVENANCE = (
    _c("versions_json", s, "Library versions: scalesweep, torch, transformers, ray, python."),
    _c("schema_version", i64, "Version of these table declarations.", nullable=False),
    _c("finished_at", pa.timestamp("ms", tz="UTC"), "When the row was written."),
)
"""The trailing columns of a table of units: what wrote the row and when."""


TRIALS = Table(
    name="trials",
    key=("trial_id",),
    columns=(
        *_outcome("trial_id", "Short hash of the trial's resolved semantic config (not resources, not paths)."),
        _c("architecture", s, "transformers architecture (llama, gpt2)."),
        _c("n_layer", i64, "Decoder blocks."),
        _c("d_model", i64, "Residual stream width."),
        _c("n_head", i64, "Attention heads (d_model / head_dim)."),
        _c("head_dim", i64, "Width of one attention head."),
        _c("seq_len", i64, "Tokens per training sequence."),
        _c("vocab_size", i64, "Tokenizer vocabulary size (= embedding rows)."),
        _c("params_total", i64, "All parameters, sum(p.numel()); tied weights counted once."),
        _c("params_embedding", i64, "Token (and position) embedding parameters, plus an untied LM head."),
        _c("params_non_embedding", i64, "params_total − params_embedding: the N of Kaplan et al. (2020)."),
        _c(
            "params_head",
            i64,
            "Parameters of an untied LM head (part of params_embedding; 0 when tied to the input embedding).",
        ),
        _c(
            "tokens",
            i64,
            "Training tokens D actually consumed: steps × batch_size × seq_len.",
        ),
        _c("steps", i64, "Optimizer steps taken (planned steps for a finished trial)."),
        _c("init_rate", f64, "Initialization rate γ: std = fan_in^(−γ); null when a fixed std was used."),
        _c("init_std", f64, "Fixed init std for every weight matrix; null when a rate was used."),
        _c("weight_decay", f64, "AdamW decoupled weight decay λ."),
        _c("seed", i64, "Seed of initialization and data order."),
        _c("lr", f64, "Peak learning rate."),
        _c("batch_size", i64, "Sequences per optimizer step."),
        _c("warmup_steps", i64, "Linear warmup steps."),
        _c(
            "flops",
            f64,
            "Training compute C = 6·N·tokens with N = params_non_embedding + the LM head's d_model·vocab_size (tied or "
            "not): every parameter a token is multiplied by (sweeps/accounting.py). Schema 1 left the head out.",
        ),
        _c(
            "flops_budget",
            f64,
            "The compute budget C of the grid's flops axis this cell's tokens were designed from (tokens = C/(6·N) "
            "rounded to whole batches, so flops is within 6·N·batch_size·seq_len/2 of it); null for other grids.",
        ),
        _c(
            "tokens_per_param",
            f64,
            "The ratio r of the grid's tokens_per_param axis this cell's tokens were designed from (r·N rounded to "
            "whole batches); null for other grids.",
        ),
        _c(
            "flops_per_token",
            f64,
            "6·(params_non_embedding + LM head) + 6·n_layer·seq_len·d_model (forward+backward with attention).",
        ),
        _c(
            "final_eval_loss",
            f64,
            "Eval loss (nats/token) after the last step, averaged over eval sequences spread across the held-out "
            "documents.",
        ),
        _c(
            "eval_loss_se",
            f64,
            "Standard error of final_eval_loss: sd of the per-sequence mean losses / √(sequences) (the sequence is "
            "the unit, since tokens within one are correlated).",
        ),
        _c("min_eval_loss", f64, "Lowest eval loss measured during the trial."),
        _c(
            "final_train_loss",
            f64,
            "Mean logged train loss over the last eval_interval steps (non-finite if diverged).",
        ),
        _c(
            "irreducible_loss",
            f64,
            "Exact entropy rate of the corpus in nats/token (synthetic corpus only, else null).",
        ),
        _c("corpus", s, "Corpus name (python-stdlib, synthetic, or the datasets source)."),
        _c("corpus_fingerprint", s, "Hash of exactly the text that was read."),
        _c("tokenizer", s, "Tokenizer identity (e.g. bpe-1024 or a pretrained name)."),
        _c("eval_tokens", i64, "Held-out tokens the eval loss is averaged over (whole sequences)."),
        _c("wall_s", f64, "Seconds the trial ran (its own process; excludes scheduling)."),
        _c(
            "tokens_per_s",
            f64,
            "Training tokens per second of the training loop (data, step, logging, Parquet writes; eval excluded).",
        ),
        _c("device", s, "cpu or cuda device name."),
        _c("workers", i64, "Training processes of the trial (1 = a single process)."),
        _c("parallelism", s, "single, ddp (replicated, below resources.fsdp_min_params) or fsdp (FSDP2 sharding)."),
        _c("config_json", s, "The trial's full resolved config as JSON (the input of trial_id)."),
        _c(
            "tracking_error",
            s,
            "Why a tracker of spec section tracking stopped mirroring this trial (one line per tracker, ';'-joined); "
            "null when every tracker mirrored every row, or none was on. The Parquet rows are complete either way.",
        ),
        *_PROVENANCE,
    ),
)

STEPS = Table(
    name="steps",
    key=("trial_id", "step"),
    columns=(
        _c("trial_id", s, "Trial this step belongs to.", nullable=False),
        _c("step", i64, "Optimizer step count after the update (1-based).", nullable=False),
        _c("tokens", i64, "Training tokens consumed so far (null for a function run)."),
        _c("lr", f64, "Learning rate used for this step."),
        _c("train_loss", f64, "Training loss of this step's batch (nats/token)."),
        _c("eval_loss", f64, "Held-out loss when measured at this step, else null."),
        _c("eval_loss_se", f64, "Standard error of eval_loss over eval sequences, else null."),
        _c("grad_norm", f64, "Global L2 norm of the gradient before clipping."),
        _c("elapsed_s", f64, "Seconds since the trial started."),
        _c(
            "adam_critical_share",
            f64,
            "Share of coordinates with g² < ρ·v̂ (Adam's g² ≪ v̂ regime; ρ from the spec, v̂ bias-corrected), over "
            "coordinates with v̂ > 0 (models/probes/adam.py::adam_step_stats); null when not measured.",
        ),
        _c(
            "adam_median_g2_over_v",
            f64,
            "Median over coordinates of g²/v̂ for this step's gradient and v̂ (bias-corrected); null when not measured.",
        ),
        _c(
            "update_rms",
            f64,
            "RMS over coordinates of Adam's step η·m̂/(√v̂+ε), weight decay excluded; null when not measured.",
        ),
    ),
)

PROBES = Table(
    name="probes",
    key=("trial_id", "step"),
    columns=(
        _c("trial_id", s, "Trial probed.", nullable=False),
        _c("step", i64, "Optimizer step of the probed checkpoint.", nullable=False),
        _c("lr", f64, "Learning rate η at that step."),
        _c("beta1", f64, "Adam β1."),
        _c("lambda_max_hessian", f64, "Largest eigenvalue of the loss Hessian H on the probe batch."),
        _c("lambda_max_precond", f64, "Largest eigenvalue of diag(1/(√v̂+ε))·H, v̂ bias-corrected as AdamW uses it."),
        _c("dir_curvature", f64, "gᵀHg/‖g‖²."),
        _c(
            "dir_curvature_precond",
            f64,
            "Preconditioned directional curvature (definition in models/probes/curvature.py).",
        ),
        _c("threshold_gd", f64, "2/η."),
        _c("threshold_momentum", f64, "(2+2β1)/((1−β1)η)."),
        _c("hvps", i64, "Hessian-vector products used."),
        _c(
            "top_eigenvalues_hessian",
            pa.list_(f64),
            "The top-k eigenvalues of H, descending (k = the spec's top_k; the first is lambda_max_hessian).",
        ),
        _c("top_eigenvalues_precond", pa.list_(f64), "The top-k eigenvalues of diag(1/(√v̂+ε))·H, descending."),
        _c("cosine_hessian", f64, "|gᵀy₁|/‖g‖: alignment of the gradient with H's top eigenvector y₁."),
        _c(
            "cosine_precond",
            f64,
            "|(D^½g)ᵀy₁|/‖D^½g‖ with y₁ the top eigenvector of D^½HD^½, D = diag(1/(√v̂+ε)): the alignment where "
            "Adam's step is gradient descent (models/probes/curvature.py).",
        ),
        _c("loss", f64, "Loss on the probe batch at the probed parameters (nats/token for an LM)."),
        _c("grad_norm", f64, "‖g‖₂ of the probe batch's gradient."),
        _c("converged", pa.bool_(), "Whether both Lanczos runs met their residual tolerance within max_iter."),
    ),
)

RECOVERY = Table(
    name="recovery",
    key=("task_id",),
    columns=(
        _c("task_id", s, "Short hash of the recovery task's config.", nullable=False),
        _c("study", s, "Study name.", nullable=False),
        _c("target", s, "Target function family."),
        _c("student", s, "Student model family."),
        _c("d", i64, "Input dimension."),
        _c("n", i64, "Training samples."),
        _c("seed", i64, "Seed."),
        _c("init_scale", f64, "Initialization std of the student."),
        _c("train_loss", f64, "Final training loss."),
        _c("test_error", f64, "Error on fresh points."),
        _c("recovered", pa.bool_(), "test_error below the spec's threshold."),
        _c("target_rank", i64, "Rank of the target where it has one."),
        _c("model_rank_theory", i64, "Optimistic sample size (model rank) from the closed form."),
        _c("model_rank_empirical", i64, "Jacobian rank at the found solution."),
        _c("n_params", i64, "Student parameter count."),
        _c("model_rank_gap", f64, "σ_r/σ_{r+1} of the Jacobian behind model_rank_empirical (huge = unambiguous)."),
        _c("rank_rtol", f64, "Relative singular-value tolerance of the empirical ranks in this row."),
        _c("steps", i64, "Gradient-descent steps taken (stops at the loss tolerance or max_steps)."),
        _c("converged", pa.bool_(), "train_loss reached the spec's loss tolerance within max_steps."),
        _c("lr", f64, "Gradient-descent step size."),
        _c(
            "components",
            i64,
            "Matrix targets: connected components of the bipartite row–column graph of the observed "
            "entries, counting unobserved rows and columns as components of their own; 1 = connected and covering.",
        ),
        _c("connected_covering", pa.bool_(), "Matrix targets: components == 1."),
        _c("learned_rank", i64, "Matrix targets: numerical rank of the learned matrix (σ > rank_rtol·σ₁)."),
        _c("learned_nuclear_norm", f64, "Matrix targets: nuclear norm of the learned matrix."),
        _c("min_nuclear_norm", f64, "Matrix targets: nuclear norm of the minimum-nuclear-norm completion (ADMM)."),
        _c("min_nuclear_rank", i64, "Matrix targets: numerical rank of the minimum-nuclear-norm completion."),
        _c(
            "min_nuclear_test_error", f64, "Matrix targets: relative test error of the minimum-nuclear-norm completion."
        ),
        _c(
            "min_nuclear_converged",
            pa.bool_(),
            "Matrix targets: the completion's ADMM met its residual tolerance (1e-10) within its step cap; when false, "
            "the min_nuclear_* numbers describe an unfinished iterate, not the minimum (models/probes/completion.py).",
        ),
        _c("min_nuclear_iterations", i64, "Matrix targets: ADMM steps (SVDs) the completion took."),
        _c("target_nuclear_norm", f64, "Matrix targets: nuclear norm of the target."),
        _c(
            "imbalance_ratio",
            pa.list_(f64),
            "Neuron targets: C/‖C‖ at initialization, Cᵢ = aᵢ‖β‖ + w̃ᵢᵀβ, "
            "β = Σⱼ yⱼx̃ⱼ (x̃ = (x, 1) and w̃ = (w, b) with biases).",
        ),
        _c("imbalance_max", f64, "Neuron targets: maxᵢ Cᵢ/‖C‖ at initialization."),
        _c(
            "branch",
            s,
            "Neuron targets: which target-set branch the run reached: all_equal (every neuron equals the "
            "target neuron), one_alive (one target neuron, the others dead) or none.",
        ),
        _c(
            "lifting_output_change",
            f64,
            "Two-layer tanh students with biases: max |f_lifted − f| on the training inputs when the solution found is "
            "lifted to a network with a ReLU layer inserted (the embedding principle in depth, arXiv:2205.13283; "
            "models/probes/lifting.py); 0 up to rounding.",
        ),
        _c("lifting_grad_norm_shallow", f64, "‖∇L‖ of the mean squared error at the solution found."),
        _c(
            "lifting_grad_norm_lifted",
            f64,
            "‖∇L‖ at its lifted point: as small as the shallow one at a critical point.",
        ),
        _c("lifting_hessian_min_shallow", f64, "Smallest eigenvalue of the Hessian of L at the solution found."),
        _c(
            "lifting_hessian_min_lifted",
            f64,
            "Smallest eigenvalue of the Hessian at the lifted point (≥ 0 up to rounding when the shallow point is a "
            "local minimum; negative at a strict saddle).",
        ),
        _c("config_json", s, "The task's semantic config as JSON (the input of task_id)."),
        _c("wall_s", f64, "Seconds the task's batch trained, divided by its seeds."),
    ),
)

FUNCTION_RUNS = Table(
    name="function_runs",
    key=("run_id",),
    columns=(
        *_outcome(
            "run_id", "fc- + a short hash of the run's semantic config; its steps and probes rows carry it as trial_id."
        ),
        _c("activation", s, "Hidden-layer activation (tanh, relu, gelu)."),
        _c("depth", i64, "Hidden layers."),
        _c("width", i64, "Units per hidden layer."),
        _c("params", i64, "Parameters of the network."),
        _c("task", s, "The task: sine(d=inputs,n=samples,seed=task seed)."),
        _c("inputs", i64, "Input dimension d."),
        _c("samples", i64, "Training points: every step is full batch over them."),
        _c("test_samples", i64, "Fresh points the test loss is measured on."),
        _c("seed", i64, "Seed of the network's initialization."),
        _c("lr", f64, "Adam's learning rate (constant)."),
        _c("beta1", f64, "Adam β1."),
        _c("beta2", f64, "Adam β2."),
        _c("steps", i64, "Full-batch steps taken."),
        _c(
            "final_train_loss",
            f64,
            "Mean squared error on the training points at the last step (non-finite if diverged).",
        ),
        _c("final_test_loss", f64, "Mean squared error on the test points after the last step (null if diverged)."),
        _c("wall_s", f64, "Seconds the run took, probes included."),
        _c("device", s, "cpu or cuda device name."),
        _c("config_json", s, "The run's full config as JSON (the input of run_id)."),
        *_PROVENANCE,
    ),
)

SEGMENTS = Table(
    name="segments",
    key=("segment_id",),
    columns=(
        _c(
            "segment_id",
            s,
            "<stable_id>-<start_step>-<end_step> for a stretch of a stable run, <trial_id>-<start>-<end> for a "
            "cooldown branch.",
            nullable=False,
        ),
        _c("study", s, "Study name from the spec.", nullable=False),
        _c("kind", s, "stable (a stretch of a stable run) or cooldown (a branch to one cell's D).", nullable=False),
        _c("stable_id", s, "The stable run (s- + a short hash of the cells' shared config without D).", nullable=False),
        _c("trial_id", s, "The cell a cooldown branch finishes; null for a stable stretch."),
        _c("start_step", i64, "Step of the state it started from (0: a fresh initialization).", nullable=False),
        _c("end_step", i64, "Step it reached.", nullable=False),
        _c("tokens", i64, "Training tokens it trained: (end_step − start_step) × batch tokens.", nullable=False),
        _c("status", s, "ok, diverged or failed.", nullable=False),
        _c("wall_s", f64, "Seconds it took, state loads and saves included."),
        _c("finished_at", pa.timestamp("ms", tz="UTC"), "When the row was written."),
    ),
)
"""What a study with cooldown branches trained, stretch by stretch: the tokens it spent, and where each branch
forked. A rerun that trains a stretch again writes its row again."""

TABLES: dict[str, Table] = {t.name: t for t in (TRIALS, STEPS, PROBES, RECOVERY, FUNCTION_RUNS, SEGMENTS)}


def markdown() -> str:
    """Every table's columns as Markdown (``scalesweep schema``; the README embeds this text verbatim)."""
    out = []
    for table in TABLES.values():
        keys = ", ".join(f"`{k}`" for k in table.key)
        out += [f"#### `{table.name}/` (key: {keys})", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {c.doc} |" for c in table.columns]
        out.append("")
    return "\n".join(out).rstrip() + "\n"

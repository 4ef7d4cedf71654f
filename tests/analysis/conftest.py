"""Fixtures for the analysis tests: the published data in ../shared/data, and results directories generated from a
known law, written exactly as trials write them (``sweeps.tables`` declarations + ``pyarrow.parquet``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from sweeps.accounting import ModelShape, shape_counts
from sweeps.grid import trials_of
from sweeps.studies import parse_spec
from sweeps.tables import SCHEMA_VERSION, TABLES

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Law:
    """A known L(N, D) = E + A/N^α + B/D^β to generate trials from."""

    E: float = 1.9
    A: float = 300.0
    B: float = 900.0
    alpha: float = 0.34
    beta: float = 0.30

    def __call__(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        return self.E + self.A / n**self.alpha + self.B / d**self.beta


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"published data folder {SHARED_DATA} is absent (it lives beside the repo, in shared/data)")
    return SHARED_DATA


def write_rows(results: Path, table: str, name: str, rows: Iterable[Mapping[str, object]]) -> Path:
    """One Parquet file ``results/<table>/<name>.parquet`` with the declared schema, as a trial writes it."""
    directory = results / table
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.parquet"
    pq.write_table(TABLES[table].to_arrow(rows), path)
    return path


def trial_rows(
    law: Law,
    *,
    sizes: Iterable[float] = (2e6, 5e6, 1.2e7, 3e7, 8e7),
    tokens: Iterable[float] = (2e7, 6e7, 2e8, 6e8),
    noise: float = 0.005,
    seed: int = 0,
    extra: Mapping[str, object] | None = None,
) -> list[dict[str, object]]:
    """A full N × D grid of ok trials whose loss is ``law`` times log-normal noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in tokens:
            loss = float(law(np.float64(n), np.float64(d)) * np.exp(noise * rng.standard_normal()))
            rows.append(
                {
                    "trial_id": f"t{len(rows):04d}-{seed}",
                    "study": "generated",
                    "status": "ok",
                    # a llama of width 64 and vocabulary 512: N (non-embedding + the 32,768-parameter head) = n
                    "d_model": 64,
                    "vocab_size": 512,
                    "params_non_embedding": int(n) - 32_768,
                    "params_embedding": 65_536,
                    "params_total": int(n) + 32_768,
                    "tokens": int(d),
                    "flops": 6.0 * n * d,
                    "init_rate": 0.5,
                    "weight_decay": 0.1,
                    "seed": seed,
                    "final_eval_loss": loss,
                    "min_eval_loss": loss,
                    "schema_version": SCHEMA_VERSION,
                    **(extra or {}),
                }
            )
    return rows


def study_rows(spec: Mapping[str, object], law: Law, *, noise: float = 0.005, seed: int = 0) -> list[dict[str, object]]:
    """The ok trials of a language-model ``spec`` (as YAML gives it, on a synthetic corpus), as the trainable writes
    them: the columns a trial knows from its config, ``config_json`` from the trial's own resolved config, and a loss
    from ``law`` at N = 12·n_layer·d_model² (the blocks) + d_model·vocab_size (the head), D = tokens."""
    study = parse_spec(dict(spec))
    rng = np.random.default_rng(seed)
    rows = []
    for trial in trials_of(study, study.name):
        shape, vocab = trial.shape, trial.data.synthetic.vocab_size
        blocks, head = 12 * shape.n_layer * shape.d_model**2, shape.d_model * vocab
        loss = float(law(np.float64(blocks + head), np.float64(trial.tokens)) * np.exp(noise * rng.standard_normal()))
        rows.append(
            {
                "trial_id": trial.trial_id,
                "study": study.name,
                "status": "ok",
                "architecture": shape.architecture,
                "n_layer": shape.n_layer,
                "d_model": shape.d_model,
                "n_head": shape.n_head,
                "head_dim": shape.head_dim,
                "seq_len": shape.seq_len,
                "vocab_size": vocab,
                "params_non_embedding": blocks,
                "params_embedding": 2 * head,
                "params_head": head,
                "params_total": blocks + 2 * head,
                "tokens": trial.tokens,
                "init_rate": trial.init.rate,
                "init_std": trial.init.std,
                "weight_decay": trial.weight_decay,
                "seed": trial.seed,
                "lr": trial.lr,
                "batch_size": trial.train.batch_size,
                "warmup_steps": trial.train.warmup_steps,
                "flops": 6.0 * (blocks + head) * trial.tokens,
                "final_eval_loss": loss,
                "min_eval_loss": loss,
                "config_json": json.dumps(trial.to_config(), sort_keys=True),
                "schema_version": SCHEMA_VERSION,
            }
        )
    return rows


def isoflop_rows(
    law: Law,
    *,
    budgets: Iterable[float] = (2e12, 8e12, 3.2e13, 1.28e14),
    widths: Iterable[int] = (16, 32, 48, 64, 96, 128, 192, 256),
    n_layer: int = 2,
    noise: float = 0.005,
    seed: int = 0,
    throughput: tuple[float, float] = (3e8, 0.8),
) -> list[dict[str, object]]:
    """An IsoFLOP grid of ok trials: every width of a depth-``n_layer`` llama family (head_dim 16, vocabulary 512,
    seq_len 32, batch 8) at every budget C, with D = C/(6·N) in whole batches (N with the head, exact counts from
    ``sweeps.accounting``), loss ``law``(N, D) times log-normal noise of relative size ``noise``, and tokens/s
    exactly r0·N^(−q) for ``throughput`` = (r0, q)."""
    rng = np.random.default_rng(seed)
    rate, exponent = throughput
    batch = 8 * 32
    rows = []
    for budget in budgets:
        for width in widths:
            shape = ModelShape("llama", n_layer, width, 16, 32)
            counts = shape_counts(shape, 512)
            n = counts.compute
            tokens = max(1, int(budget / (6 * n) // batch)) * batch
            loss = float(law(np.float64(n), np.float64(tokens)) * np.exp(noise * rng.standard_normal()))
            rows.append(
                {
                    "trial_id": f"iso{len(rows):04d}-{seed}",
                    "study": "generated-isoflop",
                    "status": "ok",
                    "architecture": "llama",
                    "n_layer": n_layer,
                    "d_model": width,
                    "n_head": shape.n_head,
                    "head_dim": 16,
                    "seq_len": 32,
                    "vocab_size": 512,
                    "batch_size": 8,
                    "params_non_embedding": counts.non_embedding,
                    "params_embedding": counts.embedding,
                    "params_head": counts.head,
                    "params_total": counts.total,
                    "tokens": tokens,
                    "flops": 6.0 * n * tokens,
                    "flops_budget": budget,
                    "init_rate": 0.5,
                    "weight_decay": 0.1,
                    "seed": seed,
                    "final_eval_loss": loss,
                    "min_eval_loss": loss,
                    "tokens_per_s": rate * n**-exponent,
                    "device": "cpu",
                    "schema_version": SCHEMA_VERSION,
                }
            )
    return rows


def write_trials(results: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """One file per trial, named by its id, as the trials write them."""
    for row in rows:
        write_rows(results, "trials", str(row["trial_id"]), [row])
    return results


@pytest.fixture(scope="session")
def gen() -> SimpleNamespace:
    """The generators above, for test modules (which cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(
        Law=Law,
        trial_rows=trial_rows,
        study_rows=study_rows,
        isoflop_rows=isoflop_rows,
        write_rows=write_rows,
        write_trials=write_trials,
    )

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


def write_trials(results: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """One file per trial, named by its id, as the trials write them."""
    for row in rows:
        write_rows(results, "trials", str(row["trial_id"]), [row])
    return results


@pytest.fixture
def gen() -> SimpleNamespace:
    """The generators above, for test modules (which cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(
        Law=Law, trial_rows=trial_rows, study_rows=study_rows, write_rows=write_rows, write_trials=write_trials
    )

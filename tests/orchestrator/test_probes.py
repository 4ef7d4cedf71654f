"""Curvature probes as Ray tasks on a real local Ray: a tiny llama study with probes, and `scalesweep probe` after."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.checkpoint import load_state
from models.data import prepare_tokens
from models.probes.curvature import curvature_probe
from orchestrator.cli import main
from orchestrator.study import run_study
from sweeps.base import SpecError
from sweeps.grid import expand
from sweeps.studies import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EVERY, BATCH = 4, 4
SPEC = {
    "name": "probes-test",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 60000},
        "eval_tokens": 2048,
    },
    "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [3072], "init": [{"rate": 0.5}], "seed": [5]},  # 12 steps of 8 × 32 tokens
    "train": {"batch_size": 8, "warmup_steps": 6, "eval_interval": 12, "lr": 0.01},
    "probes": {"curvature": {"every": EVERY, "batch": BATCH, "top_k": 2}},
}


@pytest.fixture(scope="module")
def probed(ray_local, token_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    results = tmp_path_factory.mktemp("probes")
    spec = parse_spec({**SPEC, "results": str(results), "data": {**SPEC["data"], "cache_dir": str(token_cache)}})
    result = run_study(spec, stream=io.StringIO())
    assert (result.ok, result.failed) == (1, 0)
    return spec, results


def _direct_probe(directory: Path, trial) -> float:
    """λ_max(H) of the checkpoint, the probe batch drawn by the documented rule and `curvature_probe` called here."""
    store = prepare_tokens(trial.data, min_train_tokens=trial.tokens)
    state = load_state(trial, store.vocab_size, directory, torch.device("cpu"))
    # the sequences the trial trains on: the first steps × batch of a permutation of all windows, by the trial's seed
    windows = len(store.train) // trial.shape.seq_len
    n_seq = (trial.tokens // (trial.train.batch_size * trial.shape.seq_len)) * trial.train.batch_size
    trained = np.random.default_rng(trial.seed).permutation(windows)[:n_seq]
    rows = np.sort(trained[np.random.default_rng(trial.seed).choice(n_seq, size=BATCH, replace=False)])
    sequences = store.train[: windows * trial.shape.seq_len].reshape(windows, trial.shape.seq_len)
    batch = torch.from_numpy(sequences[rows].astype(np.int64))

    def loss() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return state.model(input_ids=batch, labels=batch).loss

    params = [p for group in state.optimizer.param_groups for p in group["params"]]
    return curvature_probe(loss, params, state.optimizer, top_k=2, seed=trial.seed).lambda_max_hessian


def test_probe_rows_at_the_requested_steps_match_a_direct_probe(probed) -> None:
    spec, results = probed
    (trial,) = expand(spec)
    probes = pd.read_parquet(results / "probes").set_index("step").sort_index()
    assert list(probes.index) == [4, 8, 12] and set(probes.trial_id) == {trial.trial_id}
    assert sorted(p.name for p in (results / "probes").iterdir()) == [
        f"{trial.trial_id}-{s}.parquet" for s in (12, 4, 8)
    ]
    steps = pd.read_parquet(results / "steps").set_index("step")
    for step, row in probes.iterrows():
        lr = steps.loc[step, "lr"]  # the learning rate of update `step` (warmup: a different one at each probe)
        assert row.lr == pytest.approx(lr, rel=1e-12)
        assert row.threshold_gd == pytest.approx(2 / lr, rel=1e-12)
        assert row.threshold_momentum == pytest.approx(38 / lr, rel=1e-12)
        assert len(row.top_eigenvalues_hessian) == 2 and row.lambda_max_hessian == row.top_eigenvalues_hessian[0]
        assert row.lambda_max_hessian > 0 and row.hvps > 0
    checkpoint = results / "probe-checkpoints" / trial.trial_id / "step-8"
    assert probes.loc[8, "lambda_max_hessian"] == pytest.approx(_direct_probe(checkpoint, trial), rel=1e-6)


def test_probe_command_fills_in_missing_rows(probed, capsys) -> None:
    _, results = probed
    before = pd.read_parquet(results / "probes").set_index("step").sort_index()
    (row_file,) = (results / "probes").glob("*-8.parquet")
    row_file.unlink()
    assert main(["probe", str(results)]) == 0
    assert "1 curvature probe(s) written" in capsys.readouterr().out
    after = pd.read_parquet(results / "probes").set_index("step").sort_index()
    assert after.lambda_max_hessian.tolist() == pytest.approx(before.lambda_max_hessian.tolist(), rel=1e-6)
    assert main(["probe", str(results)]) == 0  # nothing left to probe
    assert "no probe checkpoint without a probe row" in capsys.readouterr().out


def test_probe_spec_is_validated() -> None:
    with pytest.raises(SpecError, match=r"probes\.curvature needs resources\.workers: 1"):
        parse_spec({**SPEC, "resources": {"workers": 2}})
    with pytest.raises(SpecError, match=r"probes\.curvature\.every 3 is not a multiple of train\.log_interval 2"):
        parse_spec({**SPEC, "train": {**SPEC["train"], "log_interval": 2}, "probes": {"curvature": {"every": 3}}})

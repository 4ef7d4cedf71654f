"""GPU paths (skipped without CUDA): a trial on the GPU learns as the CPU one does, in bf16 autocast."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.data import prepare_tokens
from models.lm import use_bf16_autocast
from models.state import new_state
from models.train import train
from sweeps.grid import expand
from sweeps.studies import parse_spec

pytestmark = pytest.mark.gpu

SPEC = {
    "name": "gpu",
    "data": {
        "corpus": "synthetic",
        "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 60000},
        "eval_tokens": 2048,
    },
    "model": {"sizes": ["2x64"], "head_dim": 32, "seq_len": 64},
    "grid": {"tokens": [16384], "init": [{"rate": 0.5}], "seed": [0]},
    "train": {"batch_size": 8, "lr": 0.01, "warmup_steps": 4, "eval_interval": 16},
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_gpu_trial_matches_the_cpu_trial(token_cache: Path) -> None:
    trial = expand(parse_spec({**SPEC, "data": {**SPEC["data"], "cache_dir": str(token_cache)}}))[0]
    store = prepare_tokens(trial.data)
    cpu = train(trial, store)
    state = new_state(trial, store.vocab_size, torch.device("cuda"))
    use_bf16_autocast(state.model, "cuda")
    gpu = train(trial, store, state=state, device=torch.device("cuda"))
    assert gpu.status == "ok" and gpu.row["final_eval_loss"] < math.log(store.vocab_size)
    # bf16 matmuls change the trajectory slightly, not the outcome
    assert gpu.row["final_eval_loss"] == pytest.approx(cpu.row["final_eval_loss"], abs=0.05)

"""`models.distributed` on real 2-rank gloo process groups, against the single-process trial's own numbers.

The known answer is `models.train.train` run in this process on the same trial, data and seed. The distributed runs
happen in two processes that this file starts as scripts (``python test_distributed.py SCENARIO DIR``) with the
environment torchrun and Ray Train set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), like OLMo-core's
``run_distributed_test``. They run `models.train.train` with this module's batch split and loss reduction, which is
what the trainable does on each worker.

Launch 1 trains the DDP and FSDP paths (fp32 and bf16, llama and gpt2), and an FSDP run that checkpoints at step 10
and is killed at step 13 (``os._exit`` on both ranks, as when Ray Train tears down a worker group after a failure).
Launches 2 and 3 resume that run from its checkpoint in fresh processes, on 2 ranks and on 1, and train it to the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from functools import cache, partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from models.accounting import count_params
from models.batches import batch_order
from models.data import TokenStore
from models.distributed import (
    DistContext,
    decoder_blocks,
    load_sharded_state,
    local_indices,
    mean_over_ranks,
    save_sharded_state,
    setup_process_group,
    shard_model,
    sharded_state,
    strategy_of,
    teardown_process_group,
    unwrap,
)
from models.lm import build_lm
from models.state import TrainState, new_state
from models.train import Report, Shard, evaluate, train
from sweeps.grid import ModelShape, TrialConfig
from sweeps.spec import DataSpec, Init, TrainSpec

VOCAB = 64
SEQ_LEN = 32
BATCH = 8
STEPS = 20
CHECKPOINT_STEP = 10
KILL_STEP = 13
KILLED = 75  # the exit status of a deliberately killed worker, distinct from a crash's
LAUNCH_TIMEOUT_S = 150

TRIAL = TrialConfig(
    study="distributed-test",
    shape=ModelShape("llama", n_layer=2, d_model=32, head_dim=16, seq_len=SEQ_LEN),
    tokens=STEPS * BATCH * SEQ_LEN,
    init=Init(rate=0.5),
    weight_decay=0.1,
    seed=11,
    lr=1e-2,
    data=DataSpec(corpus="synthetic"),
    train=TrainSpec(
        batch_size=BATCH, lr=1e-2, warmup_steps=4, grad_clip=1.0, eval_interval=STEPS, checkpoint_interval=1
    ),
)
TRIALS = {
    "llama": TRIAL,
    "gpt2": replace(TRIAL, shape=replace(TRIAL.shape, architecture="gpt2")),
}  # gpt2: a tied LM head under FSDP
SHARD_ALWAYS, SHARD_NEVER = 0, 10**12  # min_params_for_fsdp forcing each strategy on a tiny model
# name → (architecture, min_params_for_fsdp, mixed_precision) of the uninterrupted runs of launch 1
RUNS = {
    "fsdp": ("llama", SHARD_ALWAYS, False),
    "ddp": ("llama", SHARD_NEVER, False),
    "fsdp-gpt2": ("gpt2", SHARD_ALWAYS, False),
    "fsdp-bf16": ("llama", SHARD_ALWAYS, True),
    "ddp-bf16": ("llama", SHARD_NEVER, True),
}


def token_stream(n_tokens: int, seed: int) -> np.ndarray:
    """A learnable stream: next = 3·current + 1 (mod VOCAB) nine times in ten, else a uniform draw."""
    rng = np.random.default_rng(seed)
    tokens = np.empty(n_tokens, dtype=np.uint16)
    tokens[0] = 0
    noise = rng.random(n_tokens) < 0.1
    draws = rng.integers(0, VOCAB, n_tokens)
    for i in range(1, n_tokens):
        tokens[i] = draws[i] if noise[i] else (3 * int(tokens[i - 1]) + 1) % VOCAB
    return tokens


def token_store() -> TokenStore:
    train_tokens, eval_tokens = token_stream(TRIAL.tokens, seed=1), token_stream(4 * SEQ_LEN, seed=2)
    return TokenStore(
        train=train_tokens,
        held_out=eval_tokens,
        eval_tokens=len(eval_tokens),
        vocab_size=VOCAB,
        eos_id=None,
        corpus="synthetic",
        fingerprint="test",
        tokenizer="symbols",
        entropy_rate=None,
        path=Path("."),
        train_range=(0, len(train_tokens)),
        eval_range=(len(train_tokens), len(train_tokens) + len(eval_tokens)),
    )


# ------------------------------------------------------------------------------------------ the distributed worker


def train_distributed(
    trial: TrialConfig,
    state: TrainState,
    ctx: DistContext,
    *,
    checkpoint_dir: Path | None = None,
    kill_at: int | None = None,
) -> None:
    """`models.train.train` on this rank's share of each global batch, as the trainable runs it on every worker."""
    shard = Shard(
        rows_of=partial(local_indices, rank=ctx.rank, world_size=ctx.world_size),
        reduce_loss=partial(mean_over_ranks, device=ctx.device),
    )

    def checkpoint_then_die(report: Report) -> None:  # called at every step: checkpoint_interval is 1
        if checkpoint_dir is not None and report.state.step == CHECKPOINT_STEP:
            save_sharded_state(report.state, checkpoint_dir)
        if report.state.step == kill_at:
            os._exit(KILLED)

    train(trial, token_store(), state=state, device=ctx.device, on_report=checkpoint_then_die, shard=shard)


def worker(scenario: str, workdir: Path) -> None:
    ctx = setup_process_group()

    def record(name: str, strategy: str, state: TrainState) -> None:
        # what the trainable reports besides the curve: the eval loss (every rank evaluates) and the parameter counts
        outcome = {
            "strategy": strategy,
            "rows": [{k: r[k] for k in ("step", "train_loss", "grad_norm")} for r in state.rows],  # not timings
            "eval_loss": evaluate(state.model, token_store().eval_sequences(SEQ_LEN), ctx.device).mean,
            "params_total": count_params(unwrap(state.model)).total,
        }
        (workdir / f"{name}.rank{ctx.rank}.json").write_text(json.dumps(outcome))

    if scenario == "train":
        for name, (architecture, threshold, bf16) in RUNS.items():
            trial = TRIALS[architecture]
            state = sharded_state(trial, VOCAB, ctx, mixed_precision=bf16, min_params_for_fsdp=threshold)
            train_distributed(trial, state, ctx)
            record(name, strategy_of(state.model), state)
        state = sharded_state(TRIAL, VOCAB, ctx, mixed_precision=False, min_params_for_fsdp=SHARD_ALWAYS)
        train_distributed(TRIAL, state, ctx, checkpoint_dir=workdir / "checkpoint", kill_at=KILL_STEP)
    else:
        state = sharded_state(TRIAL, VOCAB, ctx, mixed_precision=False, min_params_for_fsdp=SHARD_ALWAYS)
        load_sharded_state(state, workdir / "checkpoint")
        train_distributed(TRIAL, state, ctx)
        record(f"resumed-ws{ctx.world_size}", strategy_of(state.model), state)
    teardown_process_group()


# ------------------------------------------------------------------------------------------------------- the tests

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="this torch build has no gloo backend"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, workdir: Path, world_size: int = 2) -> list[int]:
    """Run `worker(scenario)` on `world_size` fresh processes; returns their exit statuses."""
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    procs = []
    for rank in range(world_size):
        env = os.environ | {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",  # two ranks on a small machine: one thread each, no oversubscription
            "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
        }
        log = (workdir / f"{scenario}.rank{rank}.log").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, scenario, str(workdir)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    try:
        return [p.wait(timeout=LAUNCH_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def logs(workdir: Path, scenario: str) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(workdir.glob(f"{scenario}.rank*.log")))


def result(workdir: Path, name: str) -> dict:
    by_rank = [json.loads(p.read_text()) for p in sorted(workdir.glob(f"{name}.rank*.json"))]
    assert by_rank and all(r == by_rank[0] for r in by_rank), "ranks disagree on the reduced loss or the gradient norm"
    return by_rank[0]


@cache
def reference(architecture: str) -> tuple[list[dict], dict]:
    """The single-process trial's rows and summary row: the known answer."""
    trial = TRIALS[architecture]
    state = new_state(trial, VOCAB, torch.device("cpu"))
    outcome = train(trial, token_store(), state=state)
    assert outcome.status == "ok"
    return state.rows, outcome.row


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("distributed")
    statuses = launch("train", workdir)
    assert statuses == [KILLED, KILLED], f"launch 1 exited {statuses}:\n{logs(workdir, 'train')}"
    for world_size in (2, 1):
        statuses = launch("resume", workdir, world_size)
        assert statuses == [0] * world_size, f"resuming exited {statuses}:\n{logs(workdir, 'resume')}"
    return workdir


def losses(rows: list[dict]) -> np.ndarray:
    return np.array([r["train_loss"] for r in rows])


def grad_norms(rows: list[dict]) -> np.ndarray:
    return np.array([r["grad_norm"] for r in rows])


@needs_gloo
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", ["fsdp", "ddp", "fsdp-gpt2"])
def test_two_ranks_reproduce_the_single_process_loss_curve(name: str, runs: Path) -> None:
    architecture, _, _ = RUNS[name]
    run, (known, summary) = result(runs, name), reference(architecture)
    assert run["strategy"] == name.split("-")[0]
    assert run["params_total"] == summary["params_total"]
    assert abs(run["eval_loss"] - summary["final_eval_loss"]) <= 1e-4
    assert [r["step"] for r in run["rows"]] == [r["step"] for r in known] == list(range(1, STEPS + 1))
    assert np.max(np.abs(losses(run["rows"]) - losses(known))) <= 1e-4
    # clipping is active early on (norms above grad_clip), so this also checks the clip on sharded gradients
    assert grad_norms(known)[:3].max() > TRIAL.train.grad_clip
    np.testing.assert_allclose(grad_norms(run["rows"]), grad_norms(known), rtol=1e-5)
    assert losses(known)[-1] < losses(known)[0] - 0.5  # the curve moves, so agreement is not trivial


@needs_gloo
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", ["fsdp-bf16", "ddp-bf16"])
def test_bf16_mixed_precision_follows_the_fp32_curve(name: str, runs: Path) -> None:
    # bf16 keeps 8 bits of mantissa: the curve agrees to about a percent, not to 1e-4 (GPU runs use this path)
    run, (known, _) = result(runs, name), reference("llama")
    assert run["strategy"] == name.split("-")[0]
    assert 0 < np.max(np.abs(losses(run["rows"]) - losses(known))) <= 0.02


@needs_gloo
@pytest.mark.slow
@pytest.mark.distributed
def test_killed_fsdp_run_resumes_from_its_checkpoint_to_the_same_numbers(runs: Path) -> None:
    uninterrupted, resumed = result(runs, "fsdp"), result(runs, "resumed-ws2")
    assert resumed["strategy"] == "fsdp"
    # steps 1..10 come back from the checkpoint's bookkeeping, 11..20 are retrained (11..13 for the second time)
    assert [r["step"] for r in resumed["rows"]] == list(range(1, STEPS + 1))
    assert abs(resumed["rows"][-1]["train_loss"] - uninterrupted["rows"][-1]["train_loss"]) <= 1e-6
    np.testing.assert_allclose(losses(resumed["rows"]), losses(uninterrupted["rows"]), rtol=0, atol=1e-6)
    assert abs(resumed["eval_loss"] - uninterrupted["eval_loss"]) <= 1e-6


@needs_gloo
@pytest.mark.slow
@pytest.mark.distributed
def test_a_two_rank_checkpoint_resumes_on_one_rank(runs: Path) -> None:
    # DCP reshards on load; only the 2-rank vs 1-rank arithmetic differs (summation order), as in the comparison above
    uninterrupted, resumed = result(runs, "fsdp"), result(runs, "resumed-ws1")
    assert resumed["strategy"] == "fsdp"
    assert np.max(np.abs(losses(resumed["rows"]) - losses(uninterrupted["rows"]))) <= 1e-5


def test_each_rank_takes_a_contiguous_share_and_together_the_whole_batch() -> None:
    row = batch_order(TRIAL, STEPS, windows=STEPS * BATCH)[3]
    shares = [local_indices(row, rank=r, world_size=4) for r in range(4)]
    assert [len(s) for s in shares] == [BATCH // 4] * 4
    assert np.array_equal(np.concatenate(shares), row)
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        local_indices(row, rank=0, world_size=3)


@pytest.mark.parametrize(("architecture", "block"), [("llama", "LlamaDecoderLayer"), ("gpt2", "GPT2Block")])
def test_decoder_blocks_are_found_for_both_architectures(architecture: str, block: str) -> None:
    model = build_lm(ModelShape(architecture, 3, 32, 16, SEQ_LEN), VOCAB)
    assert [type(m).__name__ for m in decoder_blocks(model)] == [block] * 3


def test_sharding_without_a_process_group_says_what_to_call_first() -> None:
    model = build_lm(ModelShape("llama", 1, 32, 16, SEQ_LEN), VOCAB)
    with pytest.raises(RuntimeError, match="setup_process_group"):
        shard_model(model, device=torch.device("cpu"), mixed_precision=False, min_params_for_fsdp=0)


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
    # Everything is written and the group is torn down; leave without interpreter finalization, where gloo's
    # background threads can abort the process ("terminate called without an active exception", seen 1 in ~6 runs).
    os._exit(0)

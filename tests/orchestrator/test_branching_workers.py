"""Cooldown branches of a 2-worker study (FSDP2 on gloo, real Ray Train), with a real fault.

Known answer: the same cells trained from scratch as separate 2-worker ``wsd`` trials (by the distributed trial's
worker, `orchestrator.trainable.train_worker`): every branch's trials row and steps rows equal theirs to 1e-5; those
in turn follow the single-process trial's loss curve to 1e-4. On the way, one Ray Train worker of the stable run is
killed with SIGKILL after its periodic checkpoint, and the driver retries the stretch from that sharded state. The
fork states on disk are sharded (one safetensors file per rank) and hold exactly the weights and both AdamW moments;
``scalesweep plan`` counts them as it counts single-process states.

Cost: mostly Ray Train's start-up (three processes per run), so the file runs five Ray Train runs, the fewest that
cover this: the killed stretch, its retry and two branches (the first overlapping the stable run), and one run that
trains both separate trials. One study of 2 cells (100 and 200 steps, forks at 75 and 150), a 2x32 llama.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from models.data import prepare_tokens
from models.distributed import TRAIN_STATE_FILE
from models.lm import build_lm
from models.train import Report, train
from orchestrator.results import ResultsDir
from orchestrator.study import StudyResult, plan_text, run_study
from orchestrator.trainable import TrialRun, torch_trainer, train_worker
from sweeps.branching import lm_units
from sweeps.grid import expand
from sweeps.studies import parse_spec
from tests.processes import pids_of

pytestmark = [pytest.mark.ray, pytest.mark.distributed, pytest.mark.slow]

BATCH, SEQ = 8, 32
BATCH_TOKENS = BATCH * SEQ
STEPS = [100, 200]
TOLERANCE = 1e-5


def spec_for(tiny_study, results: Path, steps: list[int], *, branching: bool = True):
    raw = tiny_study(
        "branch-workers",
        results,
        model={"sizes": ["2x32"], "head_dim": 16, "seq_len": SEQ},
        grid={"tokens": [s * BATCH_TOKENS for s in steps], "init": [{"rate": 0.5}], "seed": [4]},
        train={
            "batch_size": BATCH,
            "lr": 0.01,
            "warmup_steps": 10,
            "eval_interval": 50,
            # separate trials here run one after the other in one Ray Train run: a checkpoint of the first would
            # be the second's to resume from (the setting is not part of a trial's id)
            "checkpoint_interval": 50 if branching else 0,
            "schedule": "wsd",
            "decay_fraction": 0.25,
            "branching": branching,
        },
        # a quarter CPU per worker: the test's Ray (2 CPUs) holds both branches' Ray Train runs and the separate
        # trials' at once, so their start-ups overlap (a first branch starts while the stable run goes on)
        resources={"workers": 2, "cpus_per_trial": 0.25, "fsdp_min_params": 0, "retries": 1},
    )
    return parse_spec(raw)


def train_separately(spec) -> None:
    """The cells of `spec` as separate 2-worker trials, trained by the distributed trial's own worker function, one
    after the other in one Ray Train run (one start-up; under Tune each trial would start its own)."""
    runs = [TrialRun(trial, ResultsDir.at(spec.results_path).uri).to_config() for trial in expand(spec)]
    trainer = torch_trainer(
        TrialRun.from_config(runs[0]),
        lambda: [train_worker({"run": run}) for run in runs],
        name="separate",
        max_failures=0,
    )
    trainer.fit()


@pytest.fixture(scope="module")
def studies(ray_local, tiny_study, tmp_path_factory):
    """The branched study, one of whose Ray Train workers is killed with SIGKILL once the stable run's periodic
    checkpoint at step 50 is on disk; from then on, the separate trials train beside it."""
    results = tmp_path_factory.mktemp("branched") / "r"
    spec = spec_for(tiny_study, results, STEPS)
    (run,) = lm_units(spec, spec.name)
    states = results / "stable-states" / run.stable_id
    separate = spec_for(tiny_study, tmp_path_factory.mktemp("separate") / "r", STEPS, branching=False)
    reference = threading.Thread(target=train_separately, args=(separate,))

    stream = io.StringIO()
    outcome: dict[str, StudyResult] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("r", run_study(spec, stream=stream)))
    runner.start()
    deadline, killed = time.monotonic() + 180, 0
    while runner.is_alive() and time.monotonic() < deadline and not killed:
        if (states / "step-50" / TRAIN_STATE_FILE).exists():
            for pid in pids_of("ray::RayTrainWorker")[:1]:  # only the stable run's are up: branches wait for 75
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.02)
    reference.start()  # after the kill: its workers must not be the ones killed
    runner.join(timeout=300)
    reference.join(timeout=300)
    return spec, results, states, outcome["r"], stream.getvalue(), killed, Path(separate.results_path)


@pytest.fixture(scope="module")
def branched(studies):
    return studies[:6]


@pytest.fixture(scope="module")
def separate(studies) -> Path:
    return studies[6]


def test_a_killed_worker_of_the_stable_run_resumes_from_its_sharded_checkpoint(branched) -> None:
    _, results, states, result, log, killed = branched
    assert killed == 1, "the stable run finished before its checkpoint could be interrupted"
    assert (result.ok, result.failed) == (2, 0), log
    assert log.count("; retrying") == 1, log
    segments = pd.read_parquet(results / "segments")
    stable = segments[segments.kind == "stable"]
    # the first stretch died; its retry started from the checkpoint at 50, not from scratch
    assert sorted(zip(stable.start_step, stable.end_step, strict=True)) == [(50, 150)]
    cooldowns = segments[segments.kind == "cooldown"]
    assert sorted(zip(cooldowns.start_step, cooldowns.end_step, strict=True)) == [(75, 100), (150, 200)]
    # fork states are kept (for a grown axis); the periodic checkpoint is gone
    assert sorted(p.name for p in states.iterdir()) == ["step-150", "step-75"]


def test_every_branch_writes_the_rows_of_a_separate_two_worker_trial(branched, separate: Path) -> None:
    spec, results, _, result, log, _ = branched
    assert (result.ok, result.failed) == (2, 0), log
    mine = pd.read_parquet(results / "trials").set_index("trial_id")
    theirs = pd.read_parquet(separate / "trials").set_index("trial_id")
    assert sorted(mine.index) == sorted(theirs.index) == sorted(c.trial_id for c in lm_units(spec, spec.name)[0].cells)
    for trial_id, row in mine.iterrows():
        scratch = theirs.loc[trial_id]
        assert (row.status, row.workers, row.parallelism) == (scratch.status, 2, "fsdp") == ("ok", 2, "fsdp")
        assert (row.tokens, row.steps, row.params_total) == (scratch.tokens, scratch.steps, scratch.params_total)
        for column in ("final_eval_loss", "eval_loss_se", "min_eval_loss", "final_train_loss"):
            assert abs(row[column] - scratch[column]) <= TOLERANCE, column
    columns = ["trial_id", "step", "tokens", "lr", "train_loss", "grad_norm", "eval_loss"]
    steps = pd.read_parquet(results / "steps")[columns].merge(
        pd.read_parquet(separate / "steps")[columns], on=["trial_id", "step"], how="outer", suffixes=("", "_scratch")
    )
    for trial_id, cell_steps in steps.groupby("trial_id"):
        assert sorted(cell_steps.step) == list(range(1, mine.loc[trial_id, "steps"] + 1))  # one row per step, both
    assert (steps.tokens == steps.tokens_scratch).all()
    for column in ("lr", "train_loss", "grad_norm", "eval_loss"):
        a, b = steps[column], steps[f"{column}_scratch"]
        assert ((a - b).abs() <= TOLERANCE).sum() == a.notna().sum() == b.notna().sum() > 0, column
    first, last = steps.sort_values("step").train_loss.iloc[[0, -1]]
    assert last < first - 0.5  # the curve moves: agreement is not trivial


def test_fork_states_are_sharded_and_hold_the_weights_and_both_adam_moments(branched) -> None:
    spec, _, states, *_ = branched
    cell = lm_units(spec, spec.name)[0].longest
    params = list(build_lm(cell.shape, prepare_tokens(cell.data).vocab_size).parameters())
    for state in states.iterdir():
        files = sorted(p.name for p in state.iterdir())
        shards = [f for f in files if f.endswith(".safetensors")]
        assert files == sorted([*shards, TRAIN_STATE_FILE]) and len(shards) == 2, files  # one file per rank
        saved = 0
        for shard in shards:
            with safe_open(state / shard, framework="pt") as f:
                tensors = [f.get_tensor(name) for name in f.keys()]  # noqa: SIM118 (safe_open is not iterable)
                saved += sum(t.numel() * t.element_size() for t in tensors)
        # fp32 weights, exp_avg and exp_avg_sq (12 bytes per parameter), and AdamW's step count per tensor (4 bytes)
        assert saved == 12 * sum(p.numel() for p in params) + 4 * len(params)


def test_plan_counts_the_sharded_states_on_disk(branched, tiny_study) -> None:
    _, results, *_ = branched
    grown = spec_for(tiny_study, results, [*STEPS, 300])  # forks at 75, 150 and 225
    text = plan_text(grown)
    # stable run to 225 steps + cooldowns of 25, 50, 75 steps, against 100 + 200 + 300 steps as separate trials
    branched_steps, separate_steps = 225 + 25 + 50 + 75, 100 + 200 + 300
    assert (
        f"with cooldown branches: {branched_steps * BATCH_TOKENS:,} training tokens ({225 * BATCH_TOKENS:,} in 1 "
        f"stable run(s) + {150 * BATCH_TOKENS:,} in 3 cooldowns) against {separate_steps * BATCH_TOKENS:,} as "
        f"separate trials ({branched_steps / separate_steps:.2f}×)"
    ) in text
    # what is left: the new cell's stretch from the fork state at 150 to 225, and its cooldown
    assert f"left to train: {150 * BATCH_TOKENS:,} tokens ({75 * BATCH_TOKENS:,} stable + " in text


def test_separate_two_worker_trials_follow_the_single_process_loss_curve(separate: Path, tiny_study) -> None:
    """The reference itself (what the FSDP case of test_distributed_trial.py checked before this file existed)."""
    rows = pd.read_parquet(separate / "trials").set_index("trial_id")
    steps = pd.read_parquet(separate / "steps")
    for cell in expand(spec_for(tiny_study, separate, STEPS, branching=False)):
        captured: list[dict] = []

        def keep(report: Report, captured: list[dict] = captured) -> None:
            captured[:] = report.state.rows

        single = train(cell, prepare_tokens(cell.data), on_report=keep)
        row = rows.loc[cell.trial_id]
        assert (row.status, row.workers, row.parallelism) == ("ok", 2, "fsdp")
        assert abs(row.final_eval_loss - single.row["final_eval_loss"]) <= 1e-4
        mine = steps[steps.trial_id == cell.trial_id].sort_values("step")
        assert mine.step.tolist() == [r["step"] for r in captured] == list(range(1, cell.steps + 1))
        assert (mine.train_loss - [r["train_loss"] for r in captured]).abs().max() <= 1e-4

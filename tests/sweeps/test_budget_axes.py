"""Budget axes (``grid.flops``, ``grid.tokens_per_param``): each cell's D, its identity, its row, the plan and the
refusals.

Known answers are worked by hand for a tiny llama at vocabulary 64 (`sweeps.accounting` holds the closed form to the
real models in tests/models/test_accounting.py): 1x16 has 4·16² + 3·16·48 + 3·16 = 3,376 non-embedding parameters
and a 16·64 = 1,024 head, N = 4,400; 1x32 has 4·32² + 3·32·96 + 3·32 = 13,408 and 2,048, N = 15,456. A batch is
8 sequences of 32 tokens = 256 tokens.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from models.train import config_columns
from orchestrator.cli import main
from sweeps.branching import StableRun, TokenBudget, lm_units, token_budget
from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec, parse_spec
from sweeps.tables import SCHEMA_VERSION, TRIALS, Table, read_file

N = {"1x16": 4_400, "1x32": 15_456}
BATCH = 256
C1 = 6 * 4_400 * BATCH * 10  # 10 batches for 1x16 exactly; 728.8 tokens = 2.85 batches for 1x32
SPEC = {
    "name": "budget",
    "data": {"corpus": "synthetic", "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 100_000}},
    "model": {"sizes": ["1x16", "1x32"], "head_dim": 8, "seq_len": 32},
    "grid": {"flops": [C1, 4 * C1]},
    "train": {"batch_size": 8},
}


def spec_with(**grid: object) -> dict:
    spec = copy.deepcopy(SPEC)
    spec["grid"] = grid
    return spec


def cells(raw: dict) -> dict[tuple[str, float], int]:
    """(size, budget) → D of every trial of the spec."""
    return {(t.shape.label, t.flops_budget or t.tokens_per_param): t.tokens for t in expand(parse_spec(raw))}


def test_a_flops_cell_trains_its_budget_in_whole_batches_rounded_to_the_nearest() -> None:
    # 1x16: 10 and 40 batches exactly; 1x32: 2.85 → 3 and 11.39 → 11 batches
    assert cells(SPEC) == {("1x16", C1): 2_560, ("1x16", 4 * C1): 10_240, ("1x32", C1): 768, ("1x32", 4 * C1): 2_816}
    for trial in expand(parse_spec(SPEC)):
        n = N[trial.shape.label]
        assert abs(6 * n * trial.tokens - trial.flops_budget) <= 6 * n * BATCH / 2  # at most half a batch off


def test_half_a_batch_rounds_up() -> None:
    # 10.5 batches for 1x16 (Python's round() would give 10)
    assert cells(spec_with(flops=[6 * 4_400 * BATCH * 10.5]))[("1x16", 6 * 4_400 * BATCH * 10.5)] == 11 * BATCH


def test_a_tokens_per_param_cell_trains_r_times_n_in_whole_batches() -> None:
    # r = 2: 1x16: 8,800 tokens = 34.375 → 34 batches; 1x32: 30,912 = 120.75 → 121 batches
    assert cells(spec_with(tokens_per_param=[2])) == {("1x16", 2): 34 * BATCH, ("1x32", 2): 121 * BATCH}


def test_a_budget_inside_cases_pairs_with_the_other_case_values() -> None:
    raw = spec_with(cases=[{"flops": C1, "lr": 0.01}, {"flops": 4 * C1, "lr": 0.005}])
    got = {(t.shape.label, t.flops_budget, t.lr, t.tokens) for t in expand(parse_spec(raw))}
    assert got == {
        ("1x16", C1, 0.01, 2_560),
        ("1x16", 4 * C1, 0.005, 10_240),
        ("1x32", C1, 0.01, 768),
        ("1x32", 4 * C1, 0.005, 2_816),
    }


def test_a_budget_cell_is_the_trial_of_its_d() -> None:
    """What a trial computes from is D, not the budget that chose it: the same id as a tokens cell of that D, and
    the budget travels with the trial (across the wire to the worker, and into its row) out of its id."""
    budget = {t.shape.label: t for t in expand(parse_spec(spec_with(flops=[C1])))}
    tokens = {t.shape.label: t for t in expand(parse_spec(spec_with(tokens=[2_560])))}
    assert budget["1x16"].trial_id == tokens["1x16"].trial_id
    assert budget["1x32"].trial_id != tokens["1x32"].trial_id  # 768 tokens there
    rebuilt = type(budget["1x16"]).from_config(budget["1x16"].to_config())
    assert rebuilt == budget["1x16"] and rebuilt.flops_budget == C1
    assert config_columns(rebuilt)["flops_budget"] == C1 and config_columns(rebuilt)["tokens_per_param"] is None
    assert config_columns(tokens["1x16"])["flops_budget"] is None
    assert "flops_budget" not in tokens["1x16"].to_config()  # a tokens grid's config_json is as it was


def test_the_budget_columns_are_written_and_older_rows_read_them_as_null(tmp_path: Path) -> None:
    trial = expand(parse_spec(spec_with(tokens_per_param=[2])))[0]
    row = {**config_columns(trial), "study": "budget", "status": "ok", "schema_version": SCHEMA_VERSION}
    pq.write_table(TRIALS.to_arrow([row]), tmp_path / "new.parquet")
    new = read_file(pafs.LocalFileSystem(), str(tmp_path / "new.parquet"), TRIALS).to_pylist()[0]
    assert (new["tokens_per_param"], new["flops_budget"]) == (2.0, None)

    # a file written before the columns were declared (same schema version): read, the budgets null
    older = Table(
        "trials", TRIALS.key, tuple(c for c in TRIALS.columns if c.name not in ("flops_budget", "tokens_per_param"))
    )
    pq.write_table(older.to_arrow([{k: v for k, v in row.items() if k in older.names}]), tmp_path / "old.parquet")
    old = read_file(pafs.LocalFileSystem(), str(tmp_path / "old.parquet"), TRIALS)
    assert old.column("flops_budget").to_pylist() == [None] and old.schema.field("flops_budget").type == pa.float64()


def test_under_wsd_the_budgets_of_one_size_share_its_stable_run() -> None:
    """Each size gets one D per budget; cells that differ only in D share a stable run, as in a tokens grid."""
    raw = {**SPEC, "train": {"batch_size": 8, "schedule": "wsd"}}
    runs = lm_units(parse_spec(raw), "budget")
    assert all(isinstance(run, StableRun) for run in runs)
    assert {run.cells[0].shape.label: [c.tokens for c in run.cells] for run in runs} == {
        "1x16": [2_560, 10_240],
        "1x32": [768, 2_816],
    }
    # steps 10, 40 (1x16) and 3, 11 (1x32); a 20% decay of round(0.2·steps) forks at 8, 32 and 2, 9
    separate = (10 + 40 + 3 + 11) * BATCH
    stable = (32 + 9) * BATCH
    cooldown = (2 + 8 + 1 + 2) * BATCH
    assert token_budget(runs) == TokenBudget(separate, stable, cooldown)  # type: ignore[arg-type]


def test_plan_shows_each_cells_budget_d_and_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    assert main(["plan", str(path), "--results", str(tmp_path / "none")]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for trial in expand(parse_spec(SPEC)):
        shown = lines[trial.trial_id]
        flops = 6 * N[trial.shape.label] * trial.tokens
        assert f"C={trial.flops_budget:.3g}" in shown and f" {trial.tokens:,} " in shown and f"{flops:.3g}" in shown
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("grid", "data", "says"),
    [
        ({"flops": [1e5]}, None, "grid.flops value 100000 gives size 1x16 D = 4 tokens, less than one batch (256"),
        ({"tokens_per_param": [1e3]}, None, "gives size 1x16 D = 4,400,000 tokens, more than the 100,000 training"),
        ({"tokens": [200_000]}, None, "grid.tokens value 200,000 exceeds the 100,000 training tokens"),
        ({"flops": [C1, 6 * 4_400 * BATCH * 10.5]}, None, "give size 1x32 the same D (768 tokens in whole batches)"),
        ({"tokens": [2_560], "flops": [C1]}, None, "give exactly one of tokens"),
        ({"init": [{"rate": 0.5}]}, None, "got none"),
        ({"flops": [C1]}, {"corpus": "python-stdlib", "tokenizer": {"pretrained": "gpt2"}}, "use a bpe tokenizer"),
        ({"flops": [-1.0]}, None, "grid.flops.0"),
    ],
)
def test_a_cell_that_cannot_be_trained_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: dict, data: dict | None, says: str
) -> None:
    raw = {**spec_with(**grid), **({"data": data} if data else {})}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    for command in ("plan", "run"):
        assert main([command, str(path), "--results", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "results").exists()


def test_the_isoflop_study_crosses_three_budgets_with_five_sizes_and_branches() -> None:
    """Issue 14 item 5: at least 3 budgets × 5 sizes, every size at every budget, one stable run per size."""
    spec = load_spec(builtin_spec_path("isoflop"))
    assert len(spec.grid.flops) >= 3 and len(spec.model.sizes) >= 5
    runs = lm_units(spec, spec.name)
    assert len(runs) == len(spec.model.sizes)
    assert all(sorted(c.flops_budget for c in run.cells) == sorted(spec.grid.flops) for run in runs)  # type: ignore[union-attr]

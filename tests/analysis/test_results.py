"""Loading a results directory: declared columns always, stray files named (strict) or skipped and listed."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import AnalysisInputError, load, summarize
from sweeps.tables import PROBES, RECOVERY, STEPS, TRIALS


def test_loads_trials_and_gives_empty_declared_frames_for_absent_tables(tmp_path: Path, gen) -> None:
    rows = gen.trial_rows(gen.Law())
    gen.write_trials(tmp_path, rows)
    results = load(tmp_path)
    assert len(results.trials) == len(rows)
    assert set(results.trials["trial_id"]) == {r["trial_id"] for r in rows}
    assert list(results.trials.columns) == TRIALS.names
    for frame, table in ((results.steps, STEPS), (results.probes, PROBES), (results.recovery, RECOVERY)):
        assert frame.empty and list(frame.columns) == table.names
    assert results.skipped == ()


def test_reads_a_pyarrow_filesystem_uri(tmp_path: Path, gen) -> None:
    rows = gen.trial_rows(gen.Law())
    gen.write_trials(tmp_path, rows)
    assert len(load(tmp_path.as_uri()).trials) == len(rows)


def test_ignores_unfinished_writes(tmp_path: Path, gen) -> None:
    rows = gen.trial_rows(gen.Law())[:3]
    gen.write_trials(tmp_path, rows)
    (tmp_path / "trials" / "t9.parquet.tmp").write_bytes(b"half a file")
    (tmp_path / "trials" / ".t9.parquet").write_bytes(b"hidden partial")
    assert len(load(tmp_path, strict=True).trials) == 3


@pytest.mark.parametrize("kind", ["corrupt", "wrong_table", "wrong_type"])
def test_bad_file_is_named_in_strict_mode_and_skipped_otherwise(tmp_path: Path, gen, kind: str) -> None:
    gen.write_trials(tmp_path, gen.trial_rows(gen.Law())[:2])
    bad = tmp_path / "trials" / "bad.parquet"
    if kind == "corrupt":
        bad.write_bytes(b"not parquet at all")
    elif kind == "wrong_table":
        pq.write_table(STEPS.to_arrow([{"trial_id": "x", "step": 1}]), bad)
    else:
        table = TRIALS.to_arrow(gen.trial_rows(gen.Law())[:1])
        index = table.schema.get_field_index("tokens")
        pq.write_table(table.set_column(index, "tokens", table.column("tokens").cast(pa.string())), bad)
    with pytest.raises(AnalysisInputError, match=r"bad\.parquet"):
        load(tmp_path, strict=True)
    with pytest.warns(UserWarning, match=r"bad\.parquet"):
        results = load(tmp_path)
    assert len(results.trials) == 2
    assert [Path(s.path).name for s in results.skipped] == ["bad.parquet"]


def test_all_null_column_written_as_null_type_gets_the_declared_type(tmp_path: Path, gen) -> None:
    table = TRIALS.to_arrow(gen.trial_rows(gen.Law())[:1])
    index = table.schema.get_field_index("init_std")
    (tmp_path / "trials").mkdir()
    pq.write_table(table.set_column(index, "init_std", pa.nulls(1)), tmp_path / "trials" / "a.parquet")
    gen.write_trials(tmp_path, gen.trial_rows(gen.Law(), seed=1)[:1])
    assert load(tmp_path, strict=True).trials["init_std"].isna().all()


def test_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisInputError, match="no results directory"):
        load(tmp_path / "nope")


def test_summary_counts_statuses_rows_and_best_loss(tmp_path: Path, gen) -> None:
    rows = gen.trial_rows(gen.Law())[:5]
    rows[0] = {**rows[0], "status": "diverged", "final_eval_loss": None}
    rows[1] = {**rows[1], "status": "failed", "final_eval_loss": None}
    rows[4] = {**rows[4], "final_eval_loss": float("-inf")}  # not a loss: never the "best"
    gen.write_trials(tmp_path, rows)
    steps = [{"trial_id": rows[2]["trial_id"], "step": s} for s in (1, 2)]
    gen.write_rows(tmp_path, "steps", rows[2]["trial_id"], steps)
    summary = summarize(load(tmp_path))
    assert summary.trials_by_status == {"diverged": 1, "failed": 1, "ok": 3}
    assert summary.rows == {"trials": 5, "steps": 2, "probes": 0, "recovery": 0, "function_runs": 0}
    assert summary.best_eval_loss == pytest.approx(min(r["final_eval_loss"] for r in rows[2:4]))
    assert any("3 ok" in line for line in summary.lines())


def test_a_copied_file_is_counted_once_keeping_the_newest_row_and_named(tmp_path: Path, gen) -> None:
    """A sync tool's "(conflicted copy)" of a trials file and an older copy of a steps file: one row per key."""
    rows = gen.trial_rows(gen.Law())[:4]
    gen.write_trials(tmp_path, rows)
    original = tmp_path / "trials" / f"{rows[0]['trial_id']}.parquet"
    older = {**rows[0], "final_eval_loss": 9.0, "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    newer = {**rows[0], "finished_at": datetime(2026, 2, 1, tzinfo=timezone.utc)}
    gen.write_rows(tmp_path, "trials", rows[0]["trial_id"], [newer])
    copy = gen.write_rows(tmp_path, "trials", f"{rows[0]['trial_id']} (conflicted copy)", [older])
    steps = [{"trial_id": "t0", "step": s, "train_loss": 1.0 / s} for s in range(1, 5)]
    gen.write_rows(tmp_path, "steps", "t0", steps)
    stale = gen.write_rows(tmp_path, "steps", "t0 (copy)", steps[:2])
    with pytest.warns(UserWarning, match=r"conflicted copy\).parquet: its rows repeat those of"):
        results = load(tmp_path)
    assert sorted(results.trials.trial_id) == sorted(r["trial_id"] for r in rows)
    kept = results.trials.set_index("trial_id").loc[rows[0]["trial_id"]]
    assert kept.final_eval_loss == rows[0]["final_eval_loss"]  # the newer row, not the copy's 9.0
    assert sorted(results.steps.step) == [1, 2, 3, 4]
    assert sorted(Path(s.path).name for s in results.skipped) == sorted([copy.name, stale.name])
    assert all(original.name in s.reason for s in results.skipped if s.path == str(copy))
    assert summarize(results).trials_by_status == {"ok": 4}
    with pytest.raises(AnalysisInputError, match=r"conflicted copy|\(copy\)"):
        load(tmp_path, strict=True)


def _with_added_column(tmp_path: Path, gen, values: list[pa.Array]) -> list[dict[str, object]]:
    """Trials whose files carry an undeclared column ``node``, one value (of its own type) per file."""
    rows = gen.trial_rows(gen.Law())[: len(values)]
    (tmp_path / "trials").mkdir()
    for row, value in zip(rows, values, strict=True):
        table = TRIALS.to_arrow([row]).append_column("node", value)
        pq.write_table(table, tmp_path / "trials" / f"{row['trial_id']}.parquet")
    return rows


def test_an_added_column_of_clashing_types_is_read_as_text_and_named(tmp_path: Path, gen) -> None:
    values = [pa.array([7]), pa.array([8]), pa.array(["gpu-a"]), pa.array([None], pa.int64())]
    rows = _with_added_column(tmp_path, gen, values)
    with pytest.warns(UserWarning, match=r"'node'.*int64 in 3 files.*; string in 1 file \(.*t0002-0\.parquet\)"):
        trials = load(tmp_path, strict=True).trials
    assert trials["node"].tolist()[:3] == ["7", "8", "gpu-a"] and pd.isna(trials["node"].iloc[3])
    assert trials["final_eval_loss"].tolist() == [row["final_eval_loss"] for row in rows]


def test_an_added_column_arrow_can_promote_stays_numeric(tmp_path: Path, gen) -> None:
    _with_added_column(tmp_path, gen, [pa.array([7]), pa.array([0.5])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trials = load(tmp_path, strict=True).trials
    assert trials["node"].tolist() == [7.0, 0.5]

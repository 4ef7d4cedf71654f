"""Table declarations: rows round-trip through Parquet with their declared types, and the README documents them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sweeps.tables import METADATA_VERSION, SCHEMA_VERSION, STEPS, TRIALS, SchemaError, markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_rows_round_trip_with_declared_types(tmp_path: Path) -> None:
    row = {
        "trial_id": "abc",
        "study": "s",
        "status": "ok",
        "schema_version": 1,
        "n_layer": 2,
        "lr": 0.1,
        "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
    }
    pq.write_table(TRIALS.to_arrow([row]), tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    TRIALS.check(back.schema, "t.parquet")  # the declared types survive Parquet, timestamps included
    assert back.to_pylist()[0]["n_layer"] == 2 and back.to_pylist()[0]["error"] is None


def test_undeclared_and_missing_required_columns_are_errors() -> None:
    with pytest.raises(SchemaError, match="undeclared"):
        STEPS.to_arrow([{"trial_id": "a", "step": 1, "surprise": 3}])
    with pytest.raises(SchemaError, match="must not be null"):
        STEPS.to_arrow([{"trial_id": "a"}])


def test_readme_documents_every_column() -> None:
    assert markdown() in README.read_text(), "README is stale: paste the output of `scalesweep schema` into it"


def test_files_written_before_a_column_was_declared_still_read(tmp_path: Path) -> None:
    old = STEPS.to_arrow([{"trial_id": "a", "step": 1, "train_loss": 2.0}]).drop_columns(["grad_norm"])
    conformed = STEPS.conform(old, "old.parquet")
    assert conformed.schema.names[: len(STEPS.names)] == STEPS.names
    assert conformed.column("grad_norm").to_pylist() == [None]
    with pytest.raises(SchemaError, match="missing column 'step'"):
        STEPS.conform(old.drop_columns(["step"]), "broken.parquet")


def test_a_file_from_a_newer_schema_is_refused_naming_file_and_version(tmp_path: Path) -> None:
    data = TRIALS.to_arrow([{"trial_id": "a", "study": "s", "status": "ok", "schema_version": SCHEMA_VERSION}])
    newer = data.replace_schema_metadata({**data.schema.metadata, METADATA_VERSION: b"99"})
    pq.write_table(newer, tmp_path / "a.parquet")
    with pytest.raises(SchemaError, match=r"a\.parquet: written with schema version 99, newer than this scalesweep"):
        TRIALS.check(pq.read_schema(tmp_path / "a.parquet"), "a.parquet")
    TRIALS.check(data.schema, "same.parquet")  # this version and older ones read
    older = data.replace_schema_metadata({**data.schema.metadata, METADATA_VERSION: b"1"})
    TRIALS.check(older.schema, "older.parquet")

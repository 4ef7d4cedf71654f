"""One reader decides what a finished row is: the driver (`run` skips it) and the analysis (`status`, `fit`) agree on
every file a user or a tool may leave in a table, and a file from a newer scalesweep stops a run instead of being
overwritten."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.results import load
from orchestrator.cli import main
from orchestrator.results import ResultsDir
from sweeps.tables import METADATA_VERSION, SCHEMA_VERSION, TRIALS


def _row(trial_id: str) -> dict:
    return {"trial_id": trial_id, "study": "s", "status": "ok", "schema_version": SCHEMA_VERSION, "lr": 0.1}


def _write(path: Path, data: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)


def _pandas_round_trip(path: Path) -> None:
    _write(path, TRIALS.to_arrow([_row(path.stem)]))
    pd.read_parquet(path).to_parquet(path)  # pandas writes strings back as large_string, without our metadata


def _float32_loss(path: Path) -> None:
    data = TRIALS.to_arrow([{**_row(path.stem), "final_eval_loss": 3.25}])
    at = data.schema.get_field_index("final_eval_loss")
    _write(path, data.set_column(at, "final_eval_loss", data.column(at).cast(pa.float32())))


def _fractional_layers(path: Path) -> None:
    data = TRIALS.to_arrow([_row(path.stem)])
    at = data.schema.get_field_index("n_layer")
    _write(path, data.set_column(at, "n_layer", pa.array([2.5])))  # an integer column holding a value no int is


def _status_as_number(path: Path) -> None:
    data = TRIALS.to_arrow([_row(path.stem)])
    at = data.schema.get_field_index("status")
    _write(path, data.set_column(at, "status", pa.array([1])))


def _truncated(path: Path) -> None:
    _write(path, TRIALS.to_arrow([_row(path.stem)]))
    path.write_bytes(path.read_bytes()[:-40])


def _another_table(path: Path) -> None:
    from sweeps.tables import STEPS

    _write(path, STEPS.to_arrow([{"trial_id": path.stem, "step": 1}]))


CASES = {
    "pandas-round-trip": (_pandas_round_trip, True),
    "float32-loss": (_float32_loss, True),
    "fractional-layers": (_fractional_layers, False),
    "status-as-number": (_status_as_number, False),
    "truncated": (_truncated, False),
    "steps-file-in-trials": (_another_table, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_and_the_analysis_agree_on_what_is_finished(tmp_path: Path, case: str) -> None:
    make, readable = CASES[case]
    _write(tmp_path / "trials" / "plain.parquet", TRIALS.to_arrow([_row("plain")]))
    make(tmp_path / "trials" / "odd.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysed = load(tmp_path)
    finished_for_analysis = set(analysed.trials.loc[analysed.trials["status"].isin(["ok", "diverged"]), "trial_id"])
    finished_for_run = ResultsDir.at(str(tmp_path)).finished_ids()
    assert finished_for_run == finished_for_analysis == ({"plain", "odd"} if readable else {"plain"})
    assert [s.path.endswith("odd.parquet") for s in analysed.skipped] == ([] if readable else [True])


def test_a_run_over_a_newer_schema_file_stops_in_one_line_and_leaves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = TRIALS.to_arrow([_row("t")])
    newer = data.replace_schema_metadata({**data.schema.metadata, METADATA_VERSION: b"99"})
    target = tmp_path / "trials" / "t.parquet"
    _write(target, newer)
    before = target.read_bytes()
    assert main(["run", "smoke", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schema version 99, newer than this scalesweep" in err
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials"]

"""Storage faults: a read-only or full results location is a clear error with no partial file visible to readers, and
a corrupted Parquet file is named by status, fit and report, which go on with the rest (or stop with --strict)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from sweeps.tables import TRIALS


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """Mount small tmpfs file systems (needs root; skipped elsewhere); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); run as root to test this")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def visible_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_read_only_results_is_one_line_exit_2(tmpfs, capsys: pytest.CaptureFixture[str]) -> None:
    read_only = tmpfs("ro", "ro,size=64k")
    code = main(["run", "smoke", "--results", str(read_only / "smoke")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot write" in err and "Read-only file system" in err
    assert visible_files(read_only) == []


def test_full_results_is_one_line_exit_2(tmpfs, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmpfs("full", "size=64k")
    filler = full / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * 128 * 1024)  # fill the file system up
    code = main(["run", "smoke", "--results", str(full / "smoke")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot write" in err and "No space left on device" in err
    assert visible_files(full) == [filler]


@pytest.fixture
def results_with_corrupt_file(tmp_path: Path) -> tuple[Path, Path]:
    trials = tmp_path / "r" / "trials"
    trials.mkdir(parents=True)
    for i, loss in enumerate([3.0, 2.5, 2.2, 2.1]):
        row = {
            "trial_id": f"t{i}",
            "study": "s",
            "status": "ok",
            "schema_version": 1,
            "final_eval_loss": loss,
            "params_non_embedding": 10**5 * (i + 1),
            "tokens": 10**6 * (i + 1),
            "flops": 6e11 * (i + 1) ** 2,
            "init_std": 0.02,
            "weight_decay": 0.0,
        }
        pq.write_table(TRIALS.to_arrow([row]), trials / f"t{i}.parquet")
    corrupt = trials / "broken.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    return tmp_path / "r", corrupt


@pytest.mark.parametrize("command", [["status"], ["fit", "--form", "N"], ["report", "-o", "REPORT"]])
def test_corrupt_file_is_named_and_the_rest_goes_on(
    results_with_corrupt_file, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, corrupt = results_with_corrupt_file
    args = [a.replace("REPORT", str(tmp_path / "report")) for a in command]
    with pytest.warns(UserWarning, match="broken.parquet"):
        assert main([args[0], str(results), *args[1:]]) == 0
    assert main([args[0], str(results), *args[1:], "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("scalesweep: error: ") and str(corrupt) in err[-1]

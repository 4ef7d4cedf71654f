"""The installed command line as a user runs it: a real subprocess, no Ray needed for these."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.submit import SubmitError, check_dashboard_url
from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec


def scalesweep(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_plan_lists_every_cell_with_totals(tmp_path: Path) -> None:
    done = scalesweep("plan", "smoke", "--results", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = expand(load_spec(builtin_spec_path("smoke")))
    for trial in trials:
        assert trial.trial_id in done.stdout
    assert f"{len(trials)} trials (0 finished, {len(trials)} to run)" in done.stdout
    assert not (tmp_path / "none").exists()  # a dry run writes nothing


def test_missing_spec_is_exit_2_one_line(tmp_path: Path) -> None:
    done = scalesweep("run", "no-such-study.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no such spec file" in done.stderr
    assert not (tmp_path / "results").exists()


def test_plan_of_a_wsd_study_shows_the_tokens_with_and_without_branching(tmp_path: Path) -> None:
    raw = yaml.safe_load(builtin_spec_path("smoke").read_text())
    raw["train"]["schedule"] = "wsd"
    (tmp_path / "wsd.yaml").write_text(yaml.safe_dump(raw))
    done = scalesweep("plan", "wsd.yaml", "--results", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # 8 settings (2 sizes × 2 inits × 2 weight decays) × D of 32 and 64 steps of 1,024 tokens; 20% decay: forks at
    # 32 − 6 = 26 and 64 − 13 = 51. Stable: 8 × 51 steps; cooldowns: 8 × (6 + 13); separate: 8 × (32 + 64).
    assert (
        "with cooldown branches: 573,440 training tokens (417,792 in 8 stable run(s) + 155,648 in 16 cooldowns) "
        "against 786,432 as separate trials (0.73×)"
    ) in done.stdout
    assert "left to train: 573,440 tokens" in done.stdout
    assert not (tmp_path / "none").exists()


def test_a_directory_that_is_not_this_studys_results_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """Nothing is written before every check has passed: not into a folder of other files, and not over a spec.yaml
    when the data cannot hold the grid."""
    raw = yaml.safe_load(builtin_spec_path("smoke").read_text())
    raw["data"]["cache_dir"] = str(tmp_path / "cache")
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(raw))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("my notes")
    (other / "spec.yaml").write_text("name: another-study\n")
    done = scalesweep("run", "smoke.yaml", "--results", str(other), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "no results of study 'smoke'" in done.stderr
    assert {p.name: p.read_text() for p in other.iterdir()} == {
        "notes.txt": "my notes",
        "spec.yaml": "name: another-study\n",
    }

    # this study's own results directory, and a grid the corpus cannot hold: refused before spec.yaml is touched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "spec.yaml").write_text("name: smoke\n# my earlier run\n")
    raw["grid"]["tokens"] = [10_000_000]
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(raw))
    done = scalesweep("run", "big.yaml", "--results", str(mine), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "exceeds" in done.stderr.strip().splitlines()[-1]  # the error, after the data set-up's progress lines
    assert {p.name: p.read_text() for p in mine.iterdir()} == {"spec.yaml": "name: smoke\n# my earlier run\n"}


def test_a_results_uri_pyarrow_cannot_open_is_one_line(tmp_path: Path) -> None:
    done = scalesweep("run", "smoke", "--results", "foo://bar", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "foo://bar: not a results location pyarrow can open" in done.stderr


def test_plan_with_a_pretrained_tokenizer_that_is_not_here_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = yaml.safe_load(builtin_spec_path("smoke").read_text())
    raw["data"] = {"corpus": "python-stdlib", "tokenizer": {"pretrained": "no-such-org/no-such-tokenizer"}}
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(raw))
    assert main(["plan", str(tmp_path / "pre.yaml"), "--results", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot load pretrained tokenizer 'no-such-org/no-such-tokenizer' offline" in err


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1:9", "is not the Ray dashboard's URL"),  # Ray would wait ~40 s for a GCS there, then a traceback
        ("auto", "is not the Ray dashboard's URL"),
        ("http://[::1", "is not a URL (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999", "is not a URL (Port out of range"),
    ],
)
def test_submit_to_an_address_that_is_no_dashboard_url_is_one_line_at_once(address: str, says: str) -> None:
    with pytest.raises(SubmitError, match=re.escape(says)) as err:
        check_dashboard_url(address)
    assert "\n" not in str(err.value)


def test_submit_to_a_bare_host_port_exits_2_in_one_line_without_waiting(tmp_path: Path) -> None:
    started = time.monotonic()
    done = scalesweep("submit", "smoke", "--results", "s3://bucket/x", "--address", "127.0.0.1:9", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "http://HEAD:8265" in done.stderr and time.monotonic() - started < 30

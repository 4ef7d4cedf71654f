"""A trial's id names the text it trains on, not where the text lies: the same bytes under another path are the same
trials, an edited corpus makes new trials (said in one line, the old rows kept), and a corpus edited while a study
runs is never trained under the earlier text's ids."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from models.data import DataError, prepare_tokens
from orchestrator.study import run_study, with_fingerprints
from sweeps.studies import parse_spec, units_of

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def _write_corpus(path: Path, seed: int) -> Path:
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 90))) + f" doc{i}." for i in range(120)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
    return path


def _spec(tiny_study, results: Path, corpus: Path) -> dict:
    raw = tiny_study("text", results, grid={"tokens": [4096]})
    data = {k: v for k, v in raw["data"].items() if k != "synthetic"}
    data.update(corpus={"path": "json", "data_files": [str(corpus)]}, tokenizer={"vocab_size": 300}, eval_tokens=512)
    return {**raw, "data": data}


def _ids(raw: dict) -> list[str]:
    return [i for unit in units_of(with_fingerprints(parse_spec(raw))) for i in unit.unit_ids]


def test_ids_follow_the_bytes_not_the_path(tiny_study, tmp_path: Path) -> None:
    here = _write_corpus(tmp_path / "a" / "docs.jsonl", seed=0)
    there = tmp_path / "b" / "copy.jsonl"
    there.parent.mkdir()
    there.write_bytes(here.read_bytes())
    same = _ids(_spec(tiny_study, tmp_path / "r", here))
    assert _ids(_spec(tiny_study, tmp_path / "r", there)) == same
    _write_corpus(there, seed=1)
    edited = _ids(_spec(tiny_study, tmp_path / "r", there))
    assert len(edited) == len(same) == 1 and edited != same


def test_a_corpus_edited_after_the_ids_were_made_is_refused(tiny_study, tmp_path: Path) -> None:
    corpus = _write_corpus(tmp_path / "docs.jsonl", seed=0)
    data = with_fingerprints(parse_spec(_spec(tiny_study, tmp_path / "r", corpus))).data
    assert prepare_tokens(data).fingerprint == data.fingerprint
    _write_corpus(corpus, seed=1)
    with pytest.raises(DataError, match=r"changed after the study started .*nothing was trained on it") as err:
        prepare_tokens(data)
    assert "\n" not in str(err.value)


@pytest.mark.ray
def test_a_rerun_over_edited_data_says_so_and_trains_new_trials_beside_the_old(
    ray_local, tiny_study, tmp_path: Path
) -> None:
    corpus = _write_corpus(tmp_path / "docs.jsonl", seed=0)
    raw = _spec(tiny_study, tmp_path / "r", corpus)
    first = run_study(parse_spec(raw), stream=io.StringIO())
    assert (first.ran, first.ok) == (1, 1)
    _write_corpus(corpus, seed=1)
    said = io.StringIO()
    second = run_study(parse_spec(raw), stream=said)
    changed = [line for line in said.getvalue().splitlines() if "data changed" in line]
    assert len(changed) == 1 and "1 finished trial(s) here trained on" in changed[0]
    assert (second.skipped, second.ran, second.ok) == (0, 1, 1)
    trials = pd.read_parquet(tmp_path / "r" / "trials")
    assert len(trials) == 2 and trials["corpus_fingerprint"].nunique() == 2
    assert run_study(parse_spec(raw), stream=io.StringIO()).ran == 0

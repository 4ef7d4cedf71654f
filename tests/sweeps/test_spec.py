"""Spec validation: every malformed spec is one line naming the field, exit code 2, and nothing starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from sweeps.base import SpecError
from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec, parse_spec

VALID = {
    "name": "t",
    "data": {"corpus": "synthetic", "synthetic": {"vocab_size": 64, "tokens": 50000}, "eval_tokens": 2048},
    "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
    "grid": {"tokens": [4096], "init": [{"rate": 0.5}], "weight_decay": [0.0], "seed": [0]},
    "train": {"batch_size": 4},
}


def with_change(path: str, value: object) -> dict:
    """VALID with the dotted `path` set to `value` (or removed when value is ...)."""
    spec = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        node.pop(last)
    else:
        node[last] = value
    return spec


# (change, field the message must name)
MALFORMED = [
    (("bogus", 1), "bogus"),
    (("train.learning_rate", 0.1), "train.learning_rate"),
    (("name", ...), "name"),
    (("name", "has spaces"), "name"),
    (("model.sizes", []), "model.sizes"),
    (("model.sizes", ["0x32"]), "model.sizes.0.n_layer"),
    (("model.sizes", ["2 by 32"]), "model.sizes"),
    (("model.sizes", ["1x40"]), "head_dim"),
    (("model.architecture", "mamba"), "model.architecture"),
    (("model.seq_len", -5), "model.seq_len"),
    (("grid.tokens", []), "grid.tokens"),
    (("grid.tokens", [-100]), "grid.tokens.0"),
    (("grid.tokens", ["many"]), "grid.tokens.0"),
    (("grid.tokens", [10]), "grid.tokens"),
    (("grid.tokens", ...), "tokens"),
    (("grid.init", [{"rate": 0.5, "std": 0.02}]), "grid.init.0"),
    (("grid.init", [{}]), "grid.init.0"),
    (("grid.weight_decay", [-0.1]), "grid.weight_decay.0"),
    (("grid.seed", []), "grid.seed"),
    (("grid.seed", [-1]), "grid.seed.0"),  # numpy refuses a negative seed: every trial would fail at run time
    (("grid.seed", [2**64]), "grid.seed.0"),  # torch.manual_seed overflows
    (("data.synthetic.seed", -3), "data.synthetic.seed"),
    (("train.batch_size", 0), "train.batch_size"),
    (("train.lr", "fast"), "train.lr"),
    (("train.betas", [0.9, 1.5]), "train.betas.1"),
    (("data.corpus", "wikipedia-nope"), "data.corpus"),
    (("data.corpus", {"path": "json", "data_files": ["/nonexistent/file.jsonl"]}), "data.corpus.data_files"),
    (("data.tokenizer", {"vocab_size": 1024}), "data"),  # a tokenizer on the synthetic corpus
    (("data.eval_tokens", 0), "data.eval_tokens"),
    (("resources.cpus_per_trial", 0), "resources.cpus_per_trial"),
    (("grid.cases", [{"init": {"rate": 1.0}, "weight_decay": 1.0}]), "both as a list and inside cases"),
]


def test_valid_spec_parses() -> None:
    spec = parse_spec(VALID)
    assert spec.model.sizes[0].n_layer == 1 and spec.model.sizes[0].d_model == 32


@pytest.mark.parametrize(("change", "field"), MALFORMED, ids=[f"{c[0]}={c[1]!r}"[:40] for c, _ in MALFORMED])
def test_malformed_spec_is_one_line_exit_2_and_nothing_starts(
    change: tuple[str, object], field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    spec = with_change(*change)
    if isinstance(spec, dict) and "name" in spec:
        spec["results"] = str(results)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))

    code = main(["run", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("scalesweep: error: ")
    assert field in lines[0]
    assert "Traceback" not in err
    assert not results.exists()


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(evil)


@pytest.mark.parametrize("name", ["smoke", "laptop", "laptop-text", "complexity-control"])
def test_ready_made_studies_validate(name: str) -> None:
    spec = load_spec(builtin_spec_path(name))
    assert spec.name == name
    trials = expand(spec)
    assert len({t.shape for t in trials}) >= (2 if name == "smoke" else 4)
    assert len({t.tokens for t in trials}) >= (2 if name == "smoke" else 3)
    if name != "laptop-text":  # all four axes: N × D × initialization × weight decay
        assert len({t.init.label for t in trials}) >= 2 and len({t.weight_decay for t in trials}) >= 2

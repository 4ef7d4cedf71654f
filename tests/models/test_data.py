"""The data pipeline against known answers: exact entropy rates, disjoint splits, cache hits, deterministic and
concurrent builds, real `datasets` files and real tokenizers, and the one-line errors for unusable data."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from models.data import DataError, TokenStore, prepare_tokens
from models.data.cache import publish
from models.data.corpora import document_order
from models.data.synthetic import ZipfMarkov
from sweeps.spec import DataSpec, SyntheticCorpus
from tests.processes import ctrl_c_reaches

EOS = "<|endoftext|>"


# ------------------------------------------------------------------------------------------------------ helpers


def synthetic(cache: Path, eval_tokens: int = 4096, **params: object) -> DataSpec:
    return DataSpec(
        corpus="synthetic", synthetic=SyntheticCorpus(**params), eval_tokens=eval_tokens, cache_dir=str(cache)
    )


def jsonl_spec(
    cache: Path, files: list[Path], *, text_field: str = "content", eval_tokens: int = 64, tokenizer: dict | None = None
) -> DataSpec:
    return DataSpec(
        corpus={"path": "json", "data_files": [str(f) for f in files], "text_field": text_field},
        tokenizer=tokenizer or {"vocab_size": 400},
        eval_tokens=eval_tokens,
        cache_dir=str(cache),
    )


def nll(chain: ZipfMarkov, tokens: np.ndarray) -> np.ndarray:
    """−log p(x_t | x_{t−1}) of every transition, from the chain's transition matrix (not from the sampler)."""
    p = chain.transition_matrix()[tokens[:-1].astype(np.int64), tokens[1:].astype(np.int64)]
    assert (p > 0).all(), "a transition the chain cannot make"
    return -np.log(p)


def batch_means_se(x: np.ndarray, batches: int = 100) -> float:
    means = x[: len(x) // batches * batches].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(batches))


def documents(tokens: np.ndarray, eos: int) -> list[tuple[int, ...]]:
    """The documents of a stream in which every document is followed by `eos`; a trailing fragment is dropped."""
    ends = np.flatnonzero(tokens == eos)
    starts = np.concatenate([[0], ends + 1])[: len(ends)]
    return [tuple(tokens[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]


def file_state(store: TokenStore) -> tuple[int, int, bytes]:
    tokens = store.path / "tokens.bin"
    stat = tokens.stat()
    return stat.st_ino, stat.st_mtime_ns, (store.path / "manifest.json").read_bytes()


WORDS = (
    "the model loss falls as data and parameters grow while the learning rate warms up then decays "
    "scaling laws fit power curves with an irreducible term estimated from many runs"
)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS.split()) for _ in range(rng.randint(20, 80))) + f" doc{i}." for i in range(300)]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    path = tmp_path_factory.mktemp("jsonl") / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": i, "content": t}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture(scope="session")
def stdlib_store(token_cache: Path) -> TokenStore:
    """python-stdlib with the default bpe-1024, built once per session (about 5-13 s on 2 cores)."""
    return prepare_tokens(DataSpec(cache_dir=str(token_cache)))


# ------------------------------------------------------------------------------------------------------ synthetic


def test_synthetic_entropy_rate_matches_monte_carlo(tmp_path: Path) -> None:
    spec = synthetic(tmp_path, tokens=200_000, vocab_size=256, branching=32, zipf_exponent=1.1, seed=7)
    store = prepare_tokens(spec)
    chain = ZipfMarkov.from_spec(spec.synthetic)
    fresh = chain.sample(1_000_000, np.random.default_rng(12345))
    for sample in (fresh, np.asarray(store.train), np.asarray(store.held_out)):
        x = nll(chain, sample)
        assert abs(x.mean() - store.entropy_rate) < 4 * batch_means_se(x)
    # long-run frequencies follow the solved stationary distribution
    freq = np.bincount(fresh, minlength=256) / len(fresh)
    assert 0.5 * np.abs(freq - chain.stationary).sum() < 0.01


def test_synthetic_entropy_rate_closed_form_on_tiny_chains(tmp_path: Path) -> None:
    # Every row is a permutation of the Zipf law q_k ∝ k^(−s) over the b = V successors, so H = −Σ q_k log q_k.
    s = 1.3
    q = np.array([1.0, 2.0**-s, 3.0**-s])
    q /= q.sum()
    store = prepare_tokens(
        synthetic(tmp_path, eval_tokens=16, tokens=1000, vocab_size=3, branching=3, zipf_exponent=s, seed=1)
    )
    assert store.entropy_rate == pytest.approx(-(q * np.log(q)).sum(), rel=1e-12)
    assert store.vocab_size == 3 and store.eos_id is None and store.tokenizer == "symbols"

    # π of a two-state chain by hand: π_0 = P[1,0] / (P[0,1] + P[1,0]); and of the 3-state chain by P^n.
    two = ZipfMarkov.from_spec(SyntheticCorpus(vocab_size=2, branching=2, zipf_exponent=s, seed=3))
    p = two.transition_matrix()
    pi0 = p[1, 0] / (p[0, 1] + p[1, 0])
    np.testing.assert_allclose(two.stationary, [pi0, 1 - pi0], rtol=1e-12)
    three = ZipfMarkov.from_spec(SyntheticCorpus(vocab_size=3, branching=3, zipf_exponent=s, seed=1))
    np.testing.assert_allclose(three.stationary, np.linalg.matrix_power(three.transition_matrix(), 200)[0], rtol=1e-10)


def test_synthetic_chain_is_irreducible_and_aperiodic() -> None:
    chain = ZipfMarkov.from_spec(SyntheticCorpus(vocab_size=50, branching=4, seed=5))
    p = chain.transition_matrix()
    states = np.arange(50)
    assert (p[states, states] > 0).all() and (p[states, (states + 1) % 50] > 0).all()
    assert ((p > 0).sum(axis=1) == 4).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(chain.stationary @ p, chain.stationary, atol=1e-15)


def test_synthetic_two_million_tokens_build_fast_and_disjoint(tmp_path: Path) -> None:
    start = time.monotonic()
    store = prepare_tokens(synthetic(tmp_path, eval_tokens=65_536))  # the default: V=256, 2,000,000 tokens
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"building 2M synthetic tokens took {elapsed:.2f} s"
    assert len(store.train) == 2_000_000 and len(store.held_out) == store.eval_tokens == 65_536
    assert store.train_range == (0, 2_000_000) and store.eval_range == (2_000_000, 2_065_536)
    assert store.train.dtype == np.uint16 and not store.train.flags.writeable
    assert isinstance(store.train, np.memmap) and int(store.train.max()) < store.vocab_size == 256


# ------------------------------------------------------------------------------------------------ python-stdlib


@pytest.mark.slow
def test_stdlib_eval_documents_never_in_training(stdlib_store: TokenStore) -> None:
    store = stdlib_store
    assert store.train_range[1] <= store.eval_range[0]
    assert store.eval_tokens == 65_536 and store.corpus == "python-stdlib" and store.tokenizer == "bpe-1024"
    assert store.vocab_size == 1024 and store.eos_id == 0 and store.train[-1] == store.eos_id
    manifest = json.loads((store.path / "manifest.json").read_text())
    train_docs = documents(np.asarray(store.train), store.eos_id)
    eval_docs = documents(np.asarray(store.held_out), store.eos_id)
    assert len(train_docs) == manifest["documents"]["train"] > 600
    assert len(eval_docs) == manifest["documents"]["eval"] > 10
    assert not set(train_docs) & set(eval_docs)
    # the stored tokenizer decodes every held-out document back to Python source that compiles
    tok = Tokenizer.from_file(str(store.path / "tokenizer.json"))
    for doc in eval_docs:
        compile(tok.decode(list(doc)), "<held-out>", "exec")


@pytest.mark.slow
def test_stdlib_cache_hit_is_cheap_and_reuses_the_entry(stdlib_store: TokenStore, token_cache: Path) -> None:
    before = file_state(stdlib_store)
    start = time.monotonic()
    again = prepare_tokens(DataSpec(cache_dir=str(token_cache)), min_train_tokens=1_000_000)
    elapsed = time.monotonic() - start
    assert again.path == stdlib_store.path and file_state(again) == before
    assert np.array_equal(again.train, stdlib_store.train) and again.fingerprint == stdlib_store.fingerprint
    assert elapsed < 2.0, f"a cache hit took {elapsed:.2f} s"


@pytest.mark.slow
def test_stdlib_builds_are_deterministic(stdlib_store: TokenStore, tmp_path: Path) -> None:
    fresh = prepare_tokens(DataSpec(cache_dir=str(tmp_path)))
    assert fresh.path.name == stdlib_store.path.name and fresh.path != stdlib_store.path
    for name in ("tokens.bin", "tokenizer.json"):
        assert (fresh.path / name).read_bytes() == (stdlib_store.path / name).read_bytes()


def test_too_few_training_tokens_names_both_numbers(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"the grid's largest D, 5,000,000 tokens, exceeds the 20,000 training tokens of "
        r"synthetic \(symbols\): lower grid.tokens",
    ):
        prepare_tokens(synthetic(tmp_path, tokens=20_000), min_train_tokens=5_000_000)


# ------------------------------------------------------------------------------------------ builds and the cache


def test_synthetic_builds_are_deterministic_and_cached(tmp_path: Path) -> None:
    spec = dict(tokens=50_000, vocab_size=128, branching=16, seed=11)
    first = prepare_tokens(synthetic(tmp_path / "a", **spec))
    second = prepare_tokens(synthetic(tmp_path / "b", **spec))
    assert (first.path / "tokens.bin").read_bytes() == (second.path / "tokens.bin").read_bytes()
    assert first.fingerprint == second.fingerprint and first.path.name == second.path.name
    before = file_state(first)
    assert prepare_tokens(synthetic(tmp_path / "a", **spec)).path == first.path and file_state(first) == before
    other_seed = prepare_tokens(synthetic(tmp_path / "a", **{**spec, "seed": 12}))
    assert other_seed.path != first.path and other_seed.fingerprint != first.fingerprint
    # more tokens with the same seed extend the corpus: the smaller one is a prefix, the eval split is unchanged
    longer = prepare_tokens(synthetic(tmp_path / "a", **{**spec, "tokens": 3_000_000}))
    assert np.array_equal(longer.train[:50_000], first.train) and np.array_equal(longer.held_out, first.held_out)


def test_a_synthetic_corpus_larger_than_the_disk_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    tokens = free // 2 + 1  # two bytes per token (uint16): one byte more than the disk has
    with pytest.raises(
        DataError, match=r"data\.synthetic\.tokens needs [\d,.]+ GB of token cache in .* GB free"
    ) as err:
        prepare_tokens(synthetic(tmp_path / "cache", tokens=tokens, vocab_size=128, branching=16, seed=0))
    assert "\n" not in str(err.value) and not (tmp_path / "cache").exists()


BUILD = """
import sys
from models.data import prepare_tokens
from sweeps.spec import DataSpec
prepare_tokens(DataSpec(corpus="synthetic", synthetic={"tokens": 10**9, "vocab_size": 128}, cache_dir=sys.argv[1]))
"""


def test_ctrl_c_during_a_build_stops_at_once_and_leaves_no_partial_entry(tmp_path: Path) -> None:
    if shutil.disk_usage(tmp_path).free < 3 * 10**9:
        pytest.skip("needs 3 GB free for a corpus big enough to interrupt")
    build = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches,
    )
    tokens = tmp_path / "tokens"
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tokens.glob(".*.tmp/*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    build.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    error = build.communicate(timeout=60)[1]
    assert build.returncode != 0 and "KeyboardInterrupt" in error
    assert time.monotonic() - interrupted < 10
    assert list(tokens.iterdir()) == []  # the half-written entry is gone


def test_a_lost_race_keeps_the_winners_entry(tmp_path: Path) -> None:
    path = tmp_path / "tokens" / "key"

    def writer(text: str):
        return lambda tmp: (tmp / "manifest.json").write_text(text)

    def build_while_another_process_wins(tmp: Path) -> None:
        publish(path, writer("winner"))
        writer("loser")(tmp)

    publish(path, build_while_another_process_wins)
    assert (path / "manifest.json").read_text() == "winner"
    assert os.listdir(tmp_path / "tokens") == ["key"]  # the loser's temporary directory is gone


def _build_in(cache: str) -> tuple[str, str]:
    store = prepare_tokens(synthetic(Path(cache), tokens=400_000, vocab_size=512, seed=3))
    return str(store.path), store.fingerprint


@pytest.mark.slow
def test_concurrent_builds_agree(tmp_path: Path) -> None:
    # Two processes race to build the same entry in an empty cache; both must end up with the one published copy.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_build_in, [str(tmp_path)] * 2)
    assert results[0] == results[1]
    entries = os.listdir(tmp_path / "tokens")
    assert entries == [Path(results[0][0]).name], f"left behind: {entries}"


# ----------------------------------------------------------------------------------------------------- datasets


def test_jsonl_dataset_through_datasets(tmp_path: Path, corpus_file: Path, texts: list[str]) -> None:
    store = prepare_tokens(jsonl_spec(tmp_path, [corpus_file], tokenizer={"vocab_size": 5000}))
    assert store.corpus == "json" and store.tokenizer == "bpe-5000" and store.eval_tokens == 64
    tok = Tokenizer.from_file(str(store.path / "tokenizer.json"))
    # the tiny corpus runs out of merges: the store reports the real vocabulary, not the requested 5000
    assert store.vocab_size == tok.get_vocab_size() < 5000
    assert store.eos_id == tok.token_to_id(EOS)
    train = [tok.decode(list(d)) for d in documents(np.asarray(store.train), store.eos_id)]
    held_out = [tok.decode(list(d)) for d in documents(np.asarray(store.held_out), store.eos_id)]
    # every row lands in exactly one split and byte-level BPE round-trips the text
    assert sorted(train + held_out, key=texts.index) == texts and 0 < len(held_out) < 40
    # each split lists its rows in the seeded random order, not in file order
    in_file_order = [t for t in texts if t in set(train)]
    assert train == [in_file_order[i] for i in document_order(len(train))] != in_file_order
    # a hit reads the texts again for the fingerprint but rebuilds nothing
    before = file_state(store)
    assert file_state(prepare_tokens(jsonl_spec(tmp_path, [corpus_file], tokenizer={"vocab_size": 5000}))) == before


def test_edited_data_file_gets_a_new_entry(tmp_path: Path, texts: list[str]) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts))
    first = prepare_tokens(jsonl_spec(tmp_path / "cache", [path]))
    path.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts[::-1]))
    second = prepare_tokens(jsonl_spec(tmp_path / "cache", [path]))
    assert second.fingerprint != first.fingerprint and second.path != first.path


def test_wrong_text_field_lists_the_fields(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"no text field 'text'; its fields are 'id', 'content': "
        r"set data.corpus.text_field",
    ):
        prepare_tokens(jsonl_spec(tmp_path, [corpus_file], text_field="text"))
    with pytest.raises(DataError, match=r"field 'id' .* not text"):
        prepare_tokens(jsonl_spec(tmp_path, [corpus_file], text_field="id"))


def test_empty_and_binary_files_are_rejected(tmp_path: Path, corpus_file: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    with pytest.raises(DataError, match=r"data file .*empty.jsonl is empty: fill it or remove it"):
        prepare_tokens(jsonl_spec(tmp_path, [corpus_file, empty]))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(DataError, match=r"data file .*binary.jsonl is binary, not UTF-8 text"):
        prepare_tokens(jsonl_spec(tmp_path, [binary]))
    garbage = tmp_path / "garbage.data"  # not a text suffix, so datasets itself gets to fail on it
    garbage.write_bytes(bytes(range(1, 256)) * 64)
    with pytest.raises(DataError, match=r"cannot load dataset json \(garbage.data\): .*check data.corpus"):
        prepare_tokens(jsonl_spec(tmp_path, [garbage]))


def test_missing_files_and_empty_texts_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pattern '.*nothing-\*.jsonl' matches no file"):
        prepare_tokens(jsonl_spec(tmp_path, [tmp_path / "nothing-*.jsonl"]))
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"content": ""}\n' * 5)
    with pytest.raises(DataError, match=r"has only empty texts in field 'content' \(5 rows\)"):
        prepare_tokens(jsonl_spec(tmp_path, [blank]))


def test_held_out_split_shorter_than_eval_tokens(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"held-out split of json \(bpe-400\) has [\d,]+ tokens, fewer than "
        r"data.eval_tokens 1,000,000: lower data.eval_tokens",
    ):
        prepare_tokens(jsonl_spec(tmp_path, [corpus_file], eval_tokens=1_000_000))


# -------------------------------------------------------------------------------------------------- tokenizers


def test_pretrained_tokenizer_from_a_local_directory(tmp_path: Path, corpus_file: Path, texts: list[str]) -> None:
    from transformers import PreTrainedTokenizerFast

    bpe = prepare_tokens(jsonl_spec(tmp_path, [corpus_file]))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(bpe.path / "tokenizer.json"), eos_token=EOS)
    fast.save_pretrained(tmp_path / "tok")
    store = prepare_tokens(jsonl_spec(tmp_path, [corpus_file], tokenizer={"pretrained": str(tmp_path / "tok")}))
    assert store.tokenizer == f"pretrained:{tmp_path / 'tok'}" and store.path != bpe.path
    assert store.eos_id == fast.eos_token_id == bpe.eos_id and store.vocab_size == len(fast) == bpe.vocab_size
    # the same tokenizer, loaded through transformers, gives the same tokens
    assert np.array_equal(store.train, bpe.train) and np.array_equal(store.held_out, bpe.held_out)
    first = documents(np.asarray(store.train), store.eos_id)[0]
    assert list(first) == fast(fast.decode(list(first)), add_special_tokens=False)["input_ids"]
    assert fast.decode(list(first)) in texts


def test_pretrained_tokenizer_missing_offline(
    tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALESWEEP_ALLOW_DOWNLOADS", raising=False)
    spec = jsonl_spec(tmp_path, [corpus_file], tokenizer={"pretrained": "no-such-org/no-such-tokenizer"})
    with pytest.raises(
        DataError,
        match=r"cannot load pretrained tokenizer 'no-such-org/no-such-tokenizer' "
        r"offline .*SCALESWEEP_ALLOW_DOWNLOADS=1",
    ):
        prepare_tokens(spec)

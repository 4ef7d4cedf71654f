"""`prepare_tokens`: turn a DataSpec into a TokenStore, building the token cache entry once and reusing it after.

This module only decides what to build and checks the result against what the study needs; reading corpora,
tokenizing, sampling the synthetic language and publishing entries are the other modules' jobs.

An entry is keyed by what determines its bytes: for a text corpus the fingerprint of the text actually read (so an
edited data file or another Python's stdlib gets a new entry) plus the tokenizer; for the synthetic corpus its
parameters and eval length, since its tokens are a pure function of them (FORMAT_VERSION changes if the generator
does). A hit therefore costs one pass over the text for the fingerprint, and nothing for synthetic data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from models.data.cache import entry_path, is_built, publish
from models.data.corpora import TextCorpus, from_datasets, python_stdlib
from models.data.errors import DataError
from models.data.store import TOKENIZER, TOKENS, TokenStore, token_dtype, write_manifest
from models.data.synthetic import STREAM_EVAL, STREAM_TRAIN, ZipfMarkov, rng_for
from models.data.tokenizer import Encoder, load_pretrained, train_bpe, write_tokens
from sweeps.spec import BPETokenizer, DataSpec, SyntheticCorpus


def prepare_tokens(
    data: DataSpec, *, min_train_tokens: int = 0, progress: Callable[[str], None] | None = None
) -> TokenStore:
    """The token store of `data`, built into `data.cache_dir` unless an identical build is there already.

    Raises DataError, before anything trains, when the data cannot serve a study that trains on up to
    `min_train_tokens` tokens and evaluates on `data.eval_tokens` held-out tokens."""
    say = progress or _silent
    build: Callable[[Path], None]
    if data.corpus == "synthetic":
        assert data.synthetic is not None  # DataSpec fills in the default synthetic corpus
        source = json.dumps({"synthetic": data.synthetic.model_dump(), "eval_tokens": data.eval_tokens}, sort_keys=True)
        path = entry_path(data.cache_dir, source, data.tokenizer_identity)
        build = partial(_build_synthetic, spec=data.synthetic, source=source, eval_tokens=data.eval_tokens, say=say)
    else:
        corpus = _text_corpus(data, say)
        if data.fingerprint is not None and corpus.fingerprint != data.fingerprint:
            raise DataError(
                f"{corpus.name} changed after the study started (its text was {data.fingerprint[:12]}, now "
                f"{corpus.fingerprint[:12]}): nothing was trained on it; rerun the study to train the new text "
                "under new trial ids"
            )
        path = entry_path(data.cache_dir, corpus.fingerprint, data.tokenizer_identity)
        build = partial(_build_text, corpus=corpus, data=data, say=say)
    if is_built(path):
        say(f"using cached tokens {path}")
    else:
        if data.synthetic is not None:
            size = (data.synthetic.tokens + data.eval_tokens) * token_dtype(data.synthetic.vocab_size).itemsize
            _check_room(path, size, "data.synthetic.tokens")
        start = time.monotonic()
        publish(path, build)
        say(f"cached tokens {path} in {time.monotonic() - start:.1f} s")
    store = TokenStore.open(path, data.eval_tokens)
    if len(store.train) < min_train_tokens:
        fix = "raise data.synthetic.tokens" if data.corpus == "synthetic" else "use a larger corpus"
        raise DataError(
            f"the grid's largest D, {min_train_tokens:,} tokens, exceeds the {len(store.train):,} training tokens of "
            f"{store.corpus} ({store.tokenizer}): lower grid.tokens (or grid.flops, grid.tokens_per_param) or {fix}"
        )
    return store


def with_fingerprint(data: DataSpec, *, progress: Callable[[str], None] | None = None) -> DataSpec:
    """`data` with the fingerprint of the text its corpus holds now (a synthetic corpus: `data` itself, its
    parameters are its content). The driver calls this before it makes any trial id."""
    if data.corpus == "synthetic":
        return data
    return data.model_copy(update={"fingerprint": _text_corpus(data, progress or _silent).fingerprint})


def _text_corpus(data: DataSpec, say: Callable[[str], None]) -> TextCorpus:
    if data.corpus == "python-stdlib":
        return python_stdlib(say)
    assert not isinstance(data.corpus, str)  # "synthetic" has no text
    return from_datasets(data.corpus, Path(data.cache_dir).expanduser() / "datasets", say)


def _check_room(path: Path, size: int, setting: str) -> None:
    """Refuse, before writing a byte, a cache entry of `size` bytes that the disk under `path` cannot hold."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if size > free:
        raise DataError(
            f"{setting} needs {size / 1e9:,.1f} GB of token cache in {path.parent}, which has {free / 1e9:,.1f} GB "
            f"free: lower {setting}, or set data.cache_dir to a disk with room"
        )


def _silent(_: str) -> None:
    pass


def _build_text(tmp: Path, corpus: TextCorpus, data: DataSpec, say: Callable[[str], None]) -> None:
    train_docs = corpus.train.documents
    if not len(train_docs):
        raise DataError(
            f"all {len(corpus.held_out.documents):,} documents of {corpus.name} fall in the held-out split, "
            f"none are left to train on: use a larger corpus"
        )
    encoder = _encoder(data, corpus, say)
    with (tmp / TOKENS).open("wb") as out:
        say(f"tokenizing {corpus.train.size / 1e6:.1f} MB of training text ({len(train_docs):,} documents)")
        train = write_tokens(out, train_docs, encoder, say, "training text", corpus.train.size)
        say(f"tokenizing {corpus.held_out.size / 1e6:.1f} MB of held-out text")
        held = write_tokens(out, corpus.held_out.documents, encoder, say, "held-out text", corpus.held_out.size)
    if encoder.tokenizer_json is not None:
        (tmp / TOKENIZER).write_text(encoder.tokenizer_json, encoding="utf-8")
    _manifest(
        tmp,
        train_tokens=train.tokens,
        eval_tokens=held.tokens,
        dtype=encoder.dtype,
        corpus=corpus.name,
        tokenizer=data.tokenizer_identity,
        fingerprint=corpus.fingerprint,
        vocab_size=max(encoder.vocab_size, train.max_id + 1, held.max_id + 1),
        eos_id=encoder.eos_id,
        entropy_rate=None,
        tokenizer_file=TOKENIZER if encoder.tokenizer_json is not None else None,
        **corpus.info,
    )


def _encoder(data: DataSpec, corpus: TextCorpus, say: Callable[[str], None]) -> Encoder:
    if isinstance(data.tokenizer, BPETokenizer):
        docs = corpus.train.documents
        say(f"training {data.tokenizer_identity} on {len(docs):,} documents ({corpus.train.size / 1e6:.1f} MB)")
        return train_bpe(docs, data.tokenizer.vocab_size, len(docs))
    assert data.tokenizer is not None  # DataSpec gives every text corpus a tokenizer
    say(f"loading tokenizer {data.tokenizer.pretrained}")
    return load_pretrained(data.tokenizer.pretrained)


def _build_synthetic(
    tmp: Path, spec: SyntheticCorpus, source: str, eval_tokens: int, say: Callable[[str], None]
) -> None:
    chain = ZipfMarkov.from_spec(spec)
    say(
        f"sampling {spec.tokens:,} + {eval_tokens:,} tokens of the synthetic Zipf–Markov language "
        f"(V={chain.vocab_size}, branching {chain.branching}, s={spec.zipf_exponent:g})"
    )
    dtype = token_dtype(chain.vocab_size)
    fingerprint = hashlib.sha256(source.encode())
    with (tmp / TOKENS).open("wb") as out:
        for stream, n in ((STREAM_TRAIN, spec.tokens), (STREAM_EVAL, eval_tokens)):
            # written chunk by chunk, so memory stays flat however many tokens the corpus has
            for chunk in chain.chunks(n, rng_for(spec.seed, stream)):
                data = chunk.astype(dtype).tobytes()
                out.write(data)
                fingerprint.update(data)
    _manifest(
        tmp,
        train_tokens=spec.tokens,
        eval_tokens=eval_tokens,
        dtype=dtype,
        corpus="synthetic",
        tokenizer="symbols",
        fingerprint=fingerprint.hexdigest(),
        vocab_size=chain.vocab_size,
        eos_id=None,
        entropy_rate=chain.entropy_rate(),
        tokenizer_file=None,
        documents=None,
        synthetic={**spec.model_dump(), "branching_effective": chain.branching},
    )


def _manifest(tmp: Path, *, train_tokens: int, eval_tokens: int, dtype: np.dtype, **fields: Any) -> None:
    """Write the manifest: `fields` plus the layout of the token file (train first, then held-out)."""
    write_manifest(
        tmp,
        {
            **fields,
            "dtype": dtype.str,
            "tokens": train_tokens + eval_tokens,
            "train_range": [0, train_tokens],
            "eval_range": [train_tokens, train_tokens + eval_tokens],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )

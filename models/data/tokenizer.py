"""Tokenizers for text corpora: train a byte-level BPE, or load a pretrained one offline, and encode documents.

Both kinds are reduced to an :class:`Encoder`, the little the pipeline needs: encode a batch of texts, the vocabulary
size, the document separator, and the tokenizer's JSON to store beside the tokens so the run can be decoded later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import BinaryIO

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from models.data.errors import DataError
from models.data.store import token_dtype

EOS = "<|endoftext|>"
ALLOW_DOWNLOADS = "SCALESWEEP_ALLOW_DOWNLOADS"
BATCH_CHARS = 4_000_000  # text handed to one encode_batch call: big enough for its thread pool, small in memory
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class Encoder:
    """A tokenizer as the pipeline uses it."""

    encode_batch: Callable[[list[str]], list[list[int]]]
    vocab_size: int
    eos_id: int | None
    tokenizer_json: str | None  # None for a tokenizer without a `tokenizers` backend

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.vocab_size)


def train_bpe(documents: Iterable[str], vocab_size: int, n_documents: int) -> Encoder:
    """A byte-level BPE trained on `documents`; deterministic for the same documents in the same order.

    On a small corpus the trainer may stop below `vocab_size`; the encoder reports the real size."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer, length=n_documents)
    return _from_tokenizer(tok, tok.token_to_id(EOS), tok.get_vocab_size())


def load_pretrained(name: str) -> Encoder:
    """A pretrained tokenizer by hub name or local directory, from local files only unless downloads are allowed."""
    from transformers import AutoTokenizer  # slow to import; only this path needs it

    allow = os.environ.get(ALLOW_DOWNLOADS) == "1"
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=not allow)
    except Exception as err:  # transformers raises OSError, ValueError, ImportError...; all mean "not loadable"
        how = "give a local directory that holds it, or download it once (e.g. `hf download NAME`)"
        where = "" if allow else " offline"
        if not allow:
            how += f", or set {ALLOW_DOWNLOADS}=1"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load pretrained tokenizer {name!r}{where} ({first}): {how}") from None
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    if eos is None:
        raise DataError(
            f"pretrained tokenizer {name!r} has no eos or sep token to separate documents: "
            f"use a tokenizer with an end-of-text token"
        )
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return Encoder(lambda texts: tok(texts, add_special_tokens=False)["input_ids"], len(tok), int(eos), None)
    # A private copy without the truncation or padding a tokenizer.json may carry: documents are encoded whole.
    own = Tokenizer.from_str(backend.to_str())
    own.no_truncation()
    own.no_padding()
    return _from_tokenizer(own, int(eos), len(tok))


def _from_tokenizer(tok: Tokenizer, eos_id: int | None, vocab_size: int) -> Encoder:
    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    return Encoder(encode_batch, vocab_size, eos_id, tok.to_str())


@dataclass(frozen=True)
class Written:
    tokens: int
    max_id: int  # -1 when nothing was written


def write_tokens(
    out: BinaryIO, documents: Iterable[str], encoder: Encoder, say: Callable[[str], None], what: str, size: int
) -> Written:
    """Encode `documents` in batches and append them to `out`, each followed by the separator. `size` is the
    text's total UTF-8 size, for progress messages only."""
    tokens = done = 0
    max_id = -1
    last = time.monotonic()
    tail = [] if encoder.eos_id is None else [encoder.eos_id]
    for batch in _batches(documents):
        ids = encoder.encode_batch(batch)
        count = sum(map(len, ids)) + len(tail) * len(ids)
        flat = np.fromiter(chain.from_iterable(chain(d, tail) for d in ids), dtype=np.int64, count=count)
        if flat.size:
            max_id = max(max_id, int(flat.max()))
        if max_id > np.iinfo(encoder.dtype).max:
            raise DataError(
                f"the tokenizer produced id {max_id:,}, far above its vocabulary of {encoder.vocab_size:,}: "
                f"it is inconsistent, use another tokenizer"
            )
        out.write(flat.astype(encoder.dtype).tobytes())
        tokens += count
        done += sum(len(d.encode()) for d in batch)
        if time.monotonic() - last > PROGRESS_EVERY_S:
            say(f"tokenized {done / 1e6:.1f} of {size / 1e6:.1f} MB of the {what} ({tokens:,} tokens so far)")
            last = time.monotonic()
    return Written(tokens, max_id)


def _batches(documents: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch

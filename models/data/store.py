"""The on-disk format of one token cache entry and :class:`TokenStore`, its opened, memory-mapped view.

An entry directory holds ``tokens.bin`` (the training stream followed by the held-out stream, raw little-endian
uint16 or uint32), ``manifest.json`` (ranges, vocabulary, provenance) and, for text corpora, ``tokenizer.json``.
Entries are immutable once published, so opening one is a JSON read and an mmap, whatever the corpus size.

What a trial reads from a store: its training sequences are seq_len windows of the whole training stream, visited in a
seeded order (``models.train.batch_order``); its eval sequences are ``eval_sequences(seq_len)``, windows spread evenly
across the whole held-out stream, so the eval loss averages over every held-out document rather than the first few.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.errors import DataError

FORMAT_VERSION = 2  # bump when the bytes of an entry for the same inputs would change
TOKENS = "tokens.bin"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class TokenStore:
    train: np.ndarray  # 1-D token ids of the training stream (np.memmap, uint16 or uint32), read-only
    held_out: np.ndarray  # 1-D token ids of the whole held-out stream, disjoint from train
    eval_tokens: int  # data.eval_tokens: how many held-out tokens the eval loss averages over
    vocab_size: int  # rows the model's embedding needs (>= max id + 1; includes special tokens)
    eos_id: int | None  # document separator id (None for synthetic)
    corpus: str  # corpus name (python-stdlib, synthetic, or the datasets path)
    fingerprint: str  # hex hash of exactly the text/tokens that were read
    tokenizer: str  # tokenizer identity, DataSpec.tokenizer_identity
    entropy_rate: float | None  # exact entropy rate of the synthetic corpus in nats/token, else None
    path: Path  # the cache entry directory
    train_range: tuple[int, int]  # [start, end) positions of train in the cached token file
    eval_range: tuple[int, int]  # [start, end) positions of the held-out stream in the cached token file

    @classmethod
    def open(cls, path: Path, eval_tokens: int) -> TokenStore:
        """Map the entry at `path`; the eval loss will average over `eval_tokens` of its held-out tokens."""
        manifest = read_manifest(path)
        held = manifest["eval_range"]
        if held[1] - held[0] < eval_tokens:
            raise DataError(
                f"the held-out split of {manifest['corpus']} ({manifest['tokenizer']}) has {held[1] - held[0]:,} "
                f"tokens, fewer than data.eval_tokens {eval_tokens:,}: lower data.eval_tokens or use a larger corpus"
            )
        tokens = np.memmap(path / TOKENS, dtype=np.dtype(manifest["dtype"]), mode="r", shape=(manifest["tokens"],))
        train_range = (manifest["train_range"][0], manifest["train_range"][1])
        eval_range = (held[0], held[1])
        return cls(
            train=tokens[train_range[0] : train_range[1]],
            held_out=tokens[eval_range[0] : eval_range[1]],
            eval_tokens=eval_tokens,
            vocab_size=manifest["vocab_size"],
            eos_id=manifest["eos_id"],
            corpus=manifest["corpus"],
            fingerprint=manifest["fingerprint"],
            tokenizer=manifest["tokenizer"],
            entropy_rate=manifest["entropy_rate"],
            path=path,
            train_range=train_range,
            eval_range=eval_range,
        )

    def eval_sequences(self, seq_len: int) -> np.ndarray:
        """The eval set for sequences of ``seq_len`` tokens: eval_tokens // seq_len windows (n × seq_len) whose
        starts are spread evenly over the whole held-out stream, so that every held-out document contributes."""
        n = self.eval_tokens // seq_len
        if n < 1:
            raise DataError(f"data.eval_tokens {self.eval_tokens} is shorter than one sequence of {seq_len} tokens")
        starts = np.linspace(0, len(self.held_out) - seq_len, n).astype(np.int64)
        return np.stack([self.held_out[s : s + seq_len] for s in starts])

    def training_sequences(self, seq_len: int) -> np.ndarray:
        """Every seq_len window of the training stream (a view, n × seq_len): what a trial's batches index into."""
        n = len(self.train) // seq_len
        return self.train[: n * seq_len].reshape(n, seq_len)


def token_dtype(vocab_size: int) -> np.dtype:
    """Two bytes per token while the ids fit, else four; always little-endian so entries move between machines."""
    return np.dtype("<u2" if vocab_size <= 65535 else "<u4")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"no token cache at {path}: build it with prepare_tokens") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"token cache {path} has format {manifest.get('format_version')}, not {FORMAT_VERSION}: delete it and "
            f"rebuild with prepare_tokens"
        )
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / MANIFEST).write_text(
        json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2) + "\n", encoding="utf-8"
    )

"""The on-disk format of one token cache entry and :class:`TokenStore`, its opened, memory-mapped view.

An entry directory holds ``tokens.bin`` (the training stream followed by the held-out stream, raw little-endian
uint16 or uint32), ``manifest.json`` (ranges, vocabulary, provenance) and, for text corpora, ``tokenizer.json``.
Entries are immutable once published, so opening one is a JSON read and an mmap, whatever the corpus size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.errors import DataError

FORMAT_VERSION = 1  # bump when the bytes of an entry for the same inputs would change
TOKENS = "tokens.bin"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class TokenStore:
    train: np.ndarray  # 1-D token ids of the training stream (np.memmap, uint16 or uint32), read-only
    eval: np.ndarray  # 1-D held-out eval tokens, exactly data.eval_tokens long, disjoint from train
    vocab_size: int  # rows the model's embedding needs (>= max id + 1; includes special tokens)
    eos_id: int | None  # document separator id (None for synthetic)
    corpus: str  # corpus name (python-stdlib, synthetic, or the datasets path)
    fingerprint: str  # hex hash of exactly the text/tokens that were read
    tokenizer: str  # tokenizer identity, DataSpec.tokenizer_identity
    entropy_rate: float | None  # exact entropy rate of the synthetic corpus in nats/token, else None
    path: Path  # the cache entry directory
    train_range: tuple[int, int]  # [start, end) positions of train in the cached token file
    eval_range: tuple[int, int]  # [start, end) positions of eval in the cached token file

    @classmethod
    def open(cls, path: Path, eval_tokens: int) -> TokenStore:
        """Map the entry at `path`; `eval` is the first `eval_tokens` tokens of its held-out stream."""
        manifest = read_manifest(path)
        held = manifest["eval_range"]
        if held[1] - held[0] < eval_tokens:
            raise DataError(
                f"the held-out split of {manifest['corpus']} ({manifest['tokenizer']}) has {held[1] - held[0]:,} "
                f"tokens, fewer than data.eval_tokens {eval_tokens:,}: lower data.eval_tokens or use a larger corpus"
            )
        tokens = np.memmap(path / TOKENS, dtype=np.dtype(manifest["dtype"]), mode="r", shape=(manifest["tokens"],))
        train_range = (manifest["train_range"][0], manifest["train_range"][1])
        eval_range = (held[0], held[0] + eval_tokens)
        return cls(
            train=tokens[train_range[0] : train_range[1]],
            eval=tokens[eval_range[0] : eval_range[1]],
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

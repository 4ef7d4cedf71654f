"""The data pipeline: corpora → tokens → a memory-mapped, cached :class:`TokenStore` that trials read from.

Public surface: :func:`prepare_tokens`, :func:`with_fingerprint`, :class:`TokenStore` and :class:`DataError`. The
pieces behind it: ``corpora`` (python-stdlib and ``datasets`` text, split by document), ``synthetic`` (the
Zipf–Markov language with an exact entropy rate), ``tokenizer`` (byte-level BPE or a pretrained tokenizer, offline),
``cache`` (keys and atomic publication), ``store`` (the on-disk format) and ``prepare`` (the orchestration).
Everything runs offline: nothing is downloaded from a hub at run time unless SCALESWEEP_ALLOW_DOWNLOADS=1 lets a
pretrained tokenizer be fetched.
"""

from models.data.errors import DataError
from models.data.prepare import prepare_tokens, with_fingerprint
from models.data.store import TokenStore

__all__ = ["DataError", "TokenStore", "prepare_tokens", "with_fingerprint"]

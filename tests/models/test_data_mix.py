"""The data a trial sees is the corpus's distribution at every D, and the eval set spans every held-out document.

For each ready-made study on a text corpus, at every D of its grid: the training windows of a trial (its
``batch_order``) are mapped back to the files they come from, and the share of every top-level package of the
standard library (``email/``, ``encodings/``, ..., or the modules at the root) in those windows is compared with
its share of the whole training stream. Tolerance: 4 binomial standard errors with the window as the unit,
4·√(p(1−p)/n) + 1/n for a share p and n windows (tokens of one window come from one or two documents, so windows,
not tokens, are the independent draws). Before documents were shuffled and windows drawn from the whole stream,
the first 196k tokens at vocabulary 512 were 55% two files, failing this by tens of standard errors.

The ready-made studies on the synthetic corpus need no such test: their stream is a stationary Markov chain, the
same distribution at every position (tests/models/test_data.py checks it against the exact entropy rate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.batches import batch_order
from models.data import prepare_tokens
from models.data.corpora import document_order, held_out, stdlib_files, stdlib_root
from sweeps.grid import expand
from sweeps.studies import builtin_spec_path, load_spec

TEXT_STUDIES = ["laptop-text"]


def _category(path: str) -> str:
    return path.split("/")[0] if "/" in path else "<root>"


def _train_files() -> list[str]:
    """The training documents' files in stream order, as `models.data.corpora.python_stdlib` lists them."""
    root = stdlib_root()
    kept = []
    for rel in stdlib_files(root):
        if held_out(rel):
            continue
        data = (root / rel).read_bytes()
        try:
            if data.decode("utf-8"):
                kept.append(rel)
        except UnicodeDecodeError:
            continue
    return [kept[i] for i in document_order(len(kept))]


@pytest.mark.slow
@pytest.mark.parametrize("name", TEXT_STUDIES)
def test_every_d_sees_the_corpus_mix_and_eval_spans_every_held_out_document(name: str, token_cache: Path) -> None:
    spec = load_spec(builtin_spec_path(name))
    assert spec.data.corpus == "python-stdlib"
    data = spec.data.model_copy(update={"cache_dir": str(token_cache)})
    store = prepare_tokens(data)
    stream = np.asarray(store.train)
    files = _train_files()
    document = np.concatenate([[0], np.cumsum(stream == store.eos_id)[:-1]])  # a token's document index
    assert document[-1] == len(files) - 1  # every document is followed by its separator
    categories = sorted({_category(f) for f in files})
    category_of_document = np.array([categories.index(_category(f)) for f in files])
    token_category = category_of_document[document]
    corpus_share = np.bincount(token_category, minlength=len(categories)) / len(stream)

    seq_len = spec.model.seq_len
    windows = store.training_sequences(seq_len)
    window_category = token_category[: len(windows) * seq_len].reshape(len(windows), seq_len)
    trials = {t.tokens: t for t in expand(spec) if t.seed == 0}
    for tokens, trial in sorted(trials.items()):
        rows = batch_order(trial, trial.steps, len(windows)).ravel()
        n = len(rows)
        share = np.bincount(window_category[rows].ravel(), minlength=len(categories)) / (n * seq_len)
        tolerance = 4 * np.sqrt(corpus_share * (1 - corpus_share) / n) + 1 / n
        worst = int(np.argmax(np.abs(share - corpus_share) / tolerance))
        assert (np.abs(share - corpus_share) <= tolerance).all(), (
            f"D={tokens:,}: {categories[worst]} is {share[worst]:.3f} of the windows, "
            f"{corpus_share[worst]:.3f} of the corpus (tolerance {tolerance[worst]:.3f})"
        )

    held = np.asarray(store.held_out)
    held_document = np.concatenate([[0], np.cumsum(held == store.eos_id)[:-1]])
    n_eval = store.eval_tokens // seq_len
    spacing = (len(held) - seq_len) / max(n_eval - 1, 1)
    starts = np.linspace(0, len(held) - seq_len, n_eval).astype(np.int64)
    np.testing.assert_array_equal(store.eval_sequences(seq_len), held[starts[:, None] + np.arange(seq_len)])
    lengths = np.bincount(held_document)
    long_enough = set(np.flatnonzero(lengths >= spacing + seq_len))
    covered = set(held_document[starts])
    assert long_enough <= covered, "a held-out document longer than the window spacing has no eval window"


def test_every_ready_made_text_study_is_checked_above() -> None:
    """A ready-made study on a text corpus must be in TEXT_STUDIES; the others read the stationary synthetic one."""
    for path in sorted(builtin_spec_path("laptop").parent.glob("*.yaml")):
        spec = load_spec(path)
        data = getattr(spec, "data", None) or getattr(getattr(spec, "lm", None), "data", None)
        if data is not None and data.corpus != "synthetic":
            assert path.stem in TEXT_STUDIES, f"{path.stem} reads {data.corpus}: add it to TEXT_STUDIES"

"""The synthetic corpus: a seeded first-order Zipf–Markov language whose entropy rate is known exactly.

A model trained on it can be compared with the irreducible loss of the language it learns, which no text corpus offers.
State i moves to one of ``b`` successors: itself (so the chain is aperiodic), ``(i + 1) mod V`` (so it is irreducible)
and ``b − 2`` further states drawn without replacement; the successors get probabilities ∝ rank^(−s) over a seeded
random order of the ranks 1..b. Because every row is a permutation of the same Zipf law, the entropy rate equals that
law's entropy; it is still computed as Σ_i π_i H(P_i) with π solved exactly, so the number does not rest on the
construction.

Sampling is exact and vectorized. A stationary trajectory is cut at its visits to one renewal state r: a delay from
π up to the first r, then i.i.d. excursions that start at r and end just before the next r (strong Markov property).
Excursions are sampled in many lanes at once, each lane keeping a fixed number of complete excursions (a fixed count,
not a fixed length, so short excursions are not favoured), and the lanes are concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.data.errors import DataError
from sweeps.spec import SyntheticCorpus

MAX_VOCAB = 8192  # π comes from a dense linear solve: O(V³) time and 8·V² bytes
LANES = 4096  # excursion lanes stepped side by side, to amortize numpy's per-call cost
CHUNK = 1 << 20  # tokens of excursions sampled per batch; fixed so that samples are prefix-stable

# Independent random streams derived from the corpus seed.
STREAM_CHAIN, STREAM_TRAIN, STREAM_EVAL = 0, 1, 2


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """The generator of one named stream of a corpus seed (negative seeds are fine)."""
    return np.random.default_rng([seed % 2**64, stream])


@dataclass(frozen=True, eq=False)
class ZipfMarkov:
    """The chain in sparse form: row i moves to ``successors[i, j]`` with probability ``probs[i, j]``."""

    successors: np.ndarray  # (V, b) int64, distinct per row
    probs: np.ndarray  # (V, b) float64, rows sum to 1
    stationary: np.ndarray  # (V,) float64, π with πP = π

    @classmethod
    def from_spec(cls, spec: SyntheticCorpus) -> ZipfMarkov:
        v, s = spec.vocab_size, spec.zipf_exponent
        if v > MAX_VOCAB:
            raise DataError(
                f"synthetic vocab_size {v:,} is above the {MAX_VOCAB:,} whose stationary distribution can be solved "
                f"exactly: lower data.synthetic.vocab_size"
            )
        b = min(spec.branching, v)
        rng = rng_for(spec.seed, STREAM_CHAIN)
        # The states other than i and i+1 are exactly (i + 2 + k) mod V for k in 0..V-3.
        others = np.stack([rng.choice(v - 2, size=b - 2, replace=False) for _ in range(v)]) if b > 2 else None
        rows = np.arange(v)
        cols = [rows, (rows + 1) % v]
        if others is not None:
            cols.append((rows[:, None] + 2 + others) % v)
        successors = np.column_stack(cols).astype(np.int64)
        ranks = rng.permuted(np.tile(np.arange(1, b + 1, dtype=np.float64), (v, 1)), axis=1)
        weights = ranks ** (-s)
        probs = weights / weights.sum(axis=1, keepdims=True)
        return cls(successors, probs, _stationary(successors, probs))

    @property
    def vocab_size(self) -> int:
        return self.successors.shape[0]

    @property
    def branching(self) -> int:
        return self.successors.shape[1]

    def transition_matrix(self) -> np.ndarray:
        """Dense P with P[i, j] = p(j | i)."""
        return _dense(self.successors, self.probs)

    def entropy_rate(self) -> float:
        """H = Σ_i π_i H(P_i) in nats per token."""
        row_entropy = -(self.probs * np.log(self.probs)).sum(axis=1)
        return float(self.stationary @ row_entropy)

    def chunks(self, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """The first n tokens of the stationary chain (x_0 ~ π), as int64 chunks of about a million tokens.

        Chunks hold whole excursions of a fixed target size, so the first n tokens do not depend on how many are
        drawn: a corpus of T tokens is a prefix of one of 2T tokens with the same seed."""
        walker = _Walker(self)
        part = walker.delay(rng)
        while True:
            yield part[:n]
            n -= len(part)
            if n <= 0:
                return
            part = walker.excursions(rng, CHUNK)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The first n tokens of the stationary chain in one array."""
        return np.concatenate([np.empty(0, dtype=np.int64), *self.chunks(n, rng)])


class _Walker:
    """Sampling tables of one chain: each row's cumulative probabilities, padded to a power-of-two width so that
    a fixed number of branchless bisection steps finds every lane's successor at once (inverse CDF)."""

    def __init__(self, chain: ZipfMarkov) -> None:
        v, b = chain.successors.shape
        self.width = 1 << (b - 1).bit_length()
        cdf = np.full((v, self.width), 2.0)  # padding above any u, so it is never chosen
        cdf[:, :b] = np.cumsum(chain.probs, axis=1)
        cdf[:, b - 1] = 1.0  # u < 1 then always lands inside the row despite rounding
        succ = np.zeros((v, self.width), dtype=np.int64)
        succ[:, :b] = chain.successors
        self.cdf, self.succ = cdf.ravel(), succ.ravel()
        self.stationary = chain.stationary
        self.renewal = int(np.argmax(chain.stationary))  # the most visited state has the shortest excursions

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        # pos ends as the number of cumulative probabilities ≤ u in row x: the index of the successor drawn.
        base = x * self.width
        pos = np.zeros_like(x)
        half = self.width // 2
        while half:
            pos += half * (self.cdf[base + pos + half - 1] <= u)
            half //= 2
        return self.succ[base + pos]

    def delay(self, rng: np.random.Generator) -> np.ndarray:
        """The states from x_0 ~ π up to (not including) the first visit to the renewal state."""
        x0 = np.searchsorted(np.cumsum(self.stationary), rng.random(), side="right")
        x = np.array([min(int(x0), len(self.stationary) - 1)])
        out: list[int] = []
        while x[0] != self.renewal:
            out.append(int(x[0]))
            x = self.step(x, rng.random(1))
        return np.array(out, dtype=np.int64)

    def excursions(self, rng: np.random.Generator, need: int) -> np.ndarray:
        """About `need` tokens (±5%): whole excursions from the renewal state, lane after lane.

        Every lane keeps exactly `per_lane` excursions and stops being stepped when it has them, so the work is the
        tokens kept; a lane's states are scattered to their final place (its offset plus the step)."""
        expected = need * float(self.stationary[self.renewal])  # excursions in `need` tokens: 1/π_r tokens each
        lanes = max(1, min(LANES, math.ceil(expected)))
        per_lane = max(1, math.ceil(1.05 * expected / lanes))
        active = np.arange(lanes)
        x = np.full(lanes, self.renewal, dtype=np.int64)
        returns = np.zeros(lanes, dtype=np.int64)
        length = np.zeros(lanes, dtype=np.int64)
        steps: list[tuple[np.ndarray, np.ndarray]] = []  # (lanes still running, their state) per step
        while active.size:
            steps.append((active, x))
            length[active] += 1
            x = self.step(x, rng.random(active.size))
            returns[active] += x == self.renewal
            running = returns[active] < per_lane
            active, x = active[running], x[running]
        offset = np.concatenate([[0], np.cumsum(length)[:-1]])
        out = np.empty(int(length.sum()), dtype=np.int64)
        for t, (lane, state) in enumerate(steps):
            out[offset[lane] + t] = state
        return out


def _dense(successors: np.ndarray, probs: np.ndarray) -> np.ndarray:
    v = successors.shape[0]
    p = np.zeros((v, v))
    p[np.arange(v)[:, None], successors] = probs
    return p


def _stationary(successors: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """π solving πP = π, Σπ = 1 exactly (float64 LU): one balance equation is replaced by the normalization."""
    v = successors.shape[0]
    a = _dense(successors, probs).T - np.eye(v)
    a[-1, :] = 1.0
    rhs = np.zeros(v)
    rhs[-1] = 1.0
    pi = np.clip(np.linalg.solve(a, rhs), 0.0, None)  # an irreducible chain has π > 0; clip rounding below 0
    return pi / pi.sum()

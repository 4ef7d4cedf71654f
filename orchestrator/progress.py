"""One progress line for a study, whatever runs its units: done / running / failed / diverged / throughput / ETA.

``Progress`` owns the line and the estimate; each executor feeds it the state it has now through ``update``: the Tune
grid through ``TuneProgress`` (a Tune callback that reads the trials' states), the bounded Ray tasks
(`orchestrator.tasks`) and the cooldown-branch driver (`orchestrator.branching`) directly.

**What the counts mean.** "done" counts the units with an outcome (ok, diverged or failed). "running" counts the units
whose work is in flight: a Tune trial in state RUNNING; the ids of a Ray task that was started and has not returned;
under cooldown branching, a cell whose own branch is training plus the cells still waiting for a fork state that a
running stretch of their stable run will save (their training is under way, shared). In a log the line used to be
printed only when a unit ended, the one moment its slot is empty (Tune reports a trial's end before it starts the
next), so two trials running showed as "1 running"; it is now printed on a clock, whatever just happened.

**How the ETA is computed.** The executor names each piece of work it will run (a trial, a stretch of stable run, a
branch, a batch of seeds) with a :class:`Piece`: its model size, its amount (tokens, or ids for non-LM units) and its
planned FLOPs. ``Progress`` times each piece itself, from the first update that shows it in flight to the first
that shows it ended, so worker start-up, data loading and evaluation count, as they do on the clock. From those:

- a start-up cost per piece (worker start, data loading; fitted by least squares once pieces of one size with
  different token counts have ended, else 0) plus seconds per token of each model size, from its finished pieces;
- the sizes' law: log seconds per token against log FLOPs per token, a line of slope k through the measured sizes,
  each weighted by the tokens it has measured. k is clipped to [0, 1] and is 0 while one size is measured (tiny
  models are overhead-bound, k = 0, and large ones compute-bound, k = 1; one size cannot tell which);
- a size's seconds per token is its own measured rate and the law's, mixed (in logs) by the share of the size's
  tokens already measured: a size with nothing finished takes the law's; a size whose only finished piece is a short
  first branch (mostly start-up and evaluation, so seconds per token many times its real rate) barely moves from the
  law while its long stretches are still to come; a size that has trained most of its tokens takes its own;
- a piece in flight has taken at least what it has run, so the pieces of its size no bigger than it take at least
  its seconds per token so far (a small piece bounds nothing bigger: its time is mostly start-up);
- the pieces in flight keep what their estimate leaves after the time they have run, and the pieces not started are
  laid out in plan order on as many slots as the most pieces seen in flight at once: the ETA is when the last ends.

Only before any piece has finished does the ETA fall back to the FLOPs share: elapsed time × FLOPs left / FLOPs done,
with the FLOPs done of pieces in flight read from the fraction they report (Tune trials report their step); a part
whose pieces report nothing shows "ETA …" until the first piece ends. Measured throughput replaces the FLOPs share
because tiny models are not compute-bound: on the laptop study the FLOPs share promised hours for minutes of work.

**What it cannot foresee.** The estimate assumes the machine keeps the speed it had while the pieces were timed. On
a machine shared with other jobs whose load changes by more than 2× within the time left, the ETA is off by about
that factor until the pieces timed at the new speed end (the README shows such a recording).

**Output.** On a terminal the line is redrawn in place (at most once a second, and when a count changes). In a log
(CI, a Ray job's ``scalesweep logs``) one line is printed at most every ``every_s`` seconds, and the last one at the
end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ray.tune import Callback, ProgressReporter

NO_SIZE_MEASURED_EXPONENT = 0.0
"""k before two sizes are measured (module docstring)."""


def format_duration(seconds: float) -> str:
    """'42s', '3m05s' or '2h07m': short enough for a progress line."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _format_rate(rate: float) -> str:
    """'830', '52.1k', '3.40M': three significant digits are all a progress line needs."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{suffix}"
    return f"{rate:.3g}"


@dataclass(frozen=True)
class Piece:
    """A piece of work the ETA weighs (module docstring)."""

    size: str
    """The model size it trains (throughput is measured per size); one label for units without sizes."""
    amount: float
    """What it trains, in the line's rate unit: tokens, or ids for units that are not LM training."""
    flops: float
    """Its planned FLOPs (6·N·D): the ETA's prior, and how an unmeasured size is scaled from a measured one."""

    @property
    def flops_per_amount(self) -> float:
        return self.flops / self.amount if self.amount else 1.0


class Progress:
    """``[study] done/total <noun> done · running · failed · diverged · <rate> <per>/s · elapsed · ETA``."""

    def __init__(
        self,
        study: str,
        total: int,
        *,
        noun: str,
        work: Mapping[str, Piece],
        per: str = "tokens",
        stream: TextIO | None = None,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study, self.total, self.noun, self.per = study, total, noun, per
        self.work = dict(work)
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.counts = {"done": 0, "running": 0, "failed": 0, "diverged": 0}
        self.began: dict[str, float] = {}  # work key → when it was first seen in flight
        self.took: dict[str, float] = {}  # work key → seconds, for pieces seen both in flight and ended
        self.ended: dict[str, bool] = {}  # work key → whether it did its work
        self.fraction: dict[str, float | None] = {}  # the pieces in flight now → the fraction they report done
        self.slots = 0
        self._last_draw = self.started

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; a terminal stream does not pickle and is not state
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def update(
        self,
        *,
        statuses: Mapping[str, str],
        running: int,
        in_flight: Mapping[str, float | None],
        ended: Mapping[str, bool],
    ) -> None:
        """The part's state now, then the line: the outcome of each unit with one (ok, diverged or failed), how many
        units are running, the work keys in flight (each with the fraction it reports done, or None), and every work
        key that has ended, with whether it did its work (a failed piece is not timed: it says nothing of speed)."""
        now = self.clock()
        outcomes = list(statuses.values())
        counts = {
            "done": len(outcomes),
            "running": running,
            "failed": outcomes.count("failed"),
            "diverged": outcomes.count("diverged"),
        }
        changed, self.counts = counts != self.counts, counts
        for key in in_flight:
            self.began.setdefault(key, now)
        for key in ended.keys() - self.ended.keys():
            if ended[key] and key in self.began:
                self.took[key] = now - self.began[key]
        self.ended.update(ended)
        self.fraction = {key: f for key, f in in_flight.items() if key not in self.ended}
        self.slots = max(self.slots, len(self.fraction))
        if self.live and (changed or now - self._last_draw >= 1.0):
            self._write("\r\033[K" + self.line(now))
        elif not self.live and now - self._last_draw >= self.every_s:
            self._write(self.line(now) + "\n")
        else:
            return
        self._last_draw = now

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        c = self.counts
        rate = self.rate(now)
        eta = self.eta(now)
        return (
            f"[{self.study}] {c['done']}/{self.total} {self.noun} done · {c['running']} running · "
            f"{c['failed']} failed · {c['diverged']} diverged · "
            f"{_format_rate(rate) if rate is not None else '…'} {self.per}/s · "
            f"{format_duration(now - self.started)} elapsed · ETA {format_duration(eta) if eta is not None else '…'}"
        )

    def rate(self, now: float) -> float | None:
        """The study's throughput so far: what ended and what the pieces in flight report done, per second since the
        first piece started."""
        if not self.began:
            return None
        amount = sum(self.work[k].amount for k, ok in self.ended.items() if ok and k in self.work)
        amount += sum(self.work[k].amount * (f or 0.0) for k, f in self.fraction.items() if k in self.work)
        seconds = now - min(self.began.values())
        return amount / seconds if amount and seconds > 0 else None

    def eta(self, now: float) -> float | None:
        """Seconds until the last piece ends (module docstring); None before anything can be said."""
        pending = [w for k, w in self.work.items() if k not in self.ended and k not in self.fraction]
        flying = [(self.work[k], now - self.began[k], f) for k, f in self.fraction.items() if k in self.work]
        measured = [(self.work[k], s) for k, s in self.took.items() if k in self.work]
        if not measured:
            done = sum(w.flops for k, w in self.work.items() if self.ended.get(k))
            done += sum(w.flops * (f or 0.0) for w, _, f in flying)
            left = sum(w.flops for w in pending) + sum(w.flops * (1 - (f or 0.0)) for w, _, f in flying)
            return (now - self.started) * left / done if done else None
        remaining: dict[str, float] = {}
        for work in [*pending, *(w for w, _, _ in flying)]:
            remaining[work.size] = remaining.get(work.size, 0.0) + work.amount
        duration = _durations(measured, [(w, ran) for w, ran, _ in flying], remaining)
        left_in_flight = [max(0.0, duration(w) - ran) for w, ran, _ in flying]
        return _makespan(left_in_flight, [duration(w) for w in pending], max(1, self.slots))

    def note(self, message: str) -> None:
        """A line of its own (a unit that failed, and why), above the live progress line (redrawn at the next
        update)."""
        if self.live:
            self.stream.write("\r\033[K")
        self._write(f"[{self.study}] {message}\n")

    def close(self) -> None:
        """End the line; in a log, print the final state (the last periodic line may be up to ``every_s`` old)."""
        self._write("\n" if self.live else self.line() + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _durations(
    measured: list[tuple[Piece, float]], flying: list[tuple[Piece, float]], remaining: Mapping[str, float]
) -> Callable[[Piece], float]:
    """How long a piece of work takes, from the `measured` (piece, seconds), the lower bounds the `flying`
    (piece, seconds so far) give, and the amount each size still has to train (`remaining`): a start-up cost per
    piece plus seconds per token of its size (module docstring)."""
    sizes = sorted({work.size for work, _ in measured})
    design = np.array([[1.0] + [work.amount * (work.size == s) for s in sizes] for work, _ in measured])
    took = np.array([seconds for _, seconds in measured])
    coefficients, _, rank, _ = np.linalg.lstsq(design, took, rcond=None)
    # the start-up cost is told apart from the per-token time only by pieces of one size with different amounts
    startup = float(np.clip(coefficients[0], 0.0, took.min())) if rank == design.shape[1] else 0.0
    log_x, log_y, tokens = {}, {}, {}
    for size in sizes:
        pieces = [(work, seconds) for work, seconds in measured if work.size == size]
        tokens[size] = sum(work.amount for work, _ in pieces)
        log_x[size] = math.log(pieces[0][0].flops_per_amount)
        log_y[size] = math.log(max(sum(seconds - startup for _, seconds in pieces), 1e-9) / max(tokens[size], 1e-9))
    # the sizes' law: log seconds per token against log FLOPs per token, each size weighted by the tokens it measured
    weight = np.array([tokens[s] for s in sizes])
    exponent = NO_SIZE_MEASURED_EXPONENT
    if len(set(log_x.values())) >= 2:
        fitted = np.polyfit([log_x[s] for s in sizes], [log_y[s] for s in sizes], 1, w=np.sqrt(weight))[0]
        exponent = float(np.clip(fitted, 0.0, 1.0))
    offset = float(np.average([log_y[s] - exponent * log_x[s] for s in sizes], weights=weight))
    # a piece in flight has taken at least what it ran: a lower bound for the pieces of its size no bigger than it
    # (a small piece is mostly start-up cost and bounds nothing bigger)
    bounds = [(work.size, work.amount, (ran - startup) / max(work.amount, 1e-9)) for work, ran in flying]

    def duration(work: Piece) -> float:
        by_law = offset + exponent * math.log(work.flops_per_amount)
        own = tokens.get(work.size, 0.0)
        # a size's own rate counts by the share of its tokens measured: a short first piece, mostly start-up and
        # evaluation, says little of the long ones still to come, which the other sizes' law says better
        share = own / (own + remaining.get(work.size, 0.0)) if own else 0.0
        log_rate = by_law + share * (log_y.get(work.size, by_law) - by_law)
        floor = max((rate for size, amount, rate in bounds if size == work.size and amount >= work.amount), default=0.0)
        return startup + work.amount * max(math.exp(log_rate), floor)

    return duration


def _makespan(running: list[float], pending: list[float], slots: int) -> float:
    """When the last piece ends: the pieces in flight end after their `running` seconds left, and each `pending` one
    starts, in order, on the first slot that frees up."""
    free = running + [0.0] * (slots - len(running))
    for seconds in pending:
        free.sort()
        free[0] += seconds
    return max(free, default=0.0)


class TuneProgress(Callback):
    """Feeds a ``Progress`` from Tune's trial states at every controller step, so the counts are right whatever the
    event order; a trial is its own piece of work, keyed by its trial id."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def _update(self, trials: list, ending: Any = None, ending_as: str = "TERMINATED") -> None:
        # Tune calls on_trial_complete/on_trial_error before it sets the trial's new status
        by_id = {_trial_id(t): t for t in trials}
        status = {i: ending_as if t is ending else t.status for i, t in by_id.items()}
        outcomes = {
            i: "failed" if s == "ERROR" else "diverged" if (by_id[i].last_result or {}).get("diverged") else "ok"
            for i, s in status.items()
            if s in ("TERMINATED", "ERROR")
        }
        running = {i: _fraction(by_id[i].last_result) for i, s in status.items() if s == "RUNNING"}
        ended = {i: outcome != "failed" for i, outcome in outcomes.items()}
        self.progress.update(statuses=outcomes, running=len(running), in_flight=running, ended=ended)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials, ending=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.note(f"{_trial_id(trial)} failed: {_last_error_line(trial)}")
        self._update(trials, ending=trial, ending_as="ERROR")


def _trial_id(trial: Any) -> str:
    return trial.config["run"]["trial"]["trial_id"]


def _fraction(result: dict[str, Any] | None) -> float | None:
    """The fraction of its steps a Tune trial reported done (``orchestrator.trainable`` reports step and
    steps_total at every eval), or None before its first report."""
    if not result or not result.get("steps_total"):
        return None
    return min(1.0, result.get("step", 0) / result["steps_total"])


def _last_error_line(trial: Any) -> str:
    """The last line of the error Tune recorded for `trial` (the exception, without its traceback)."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        lines = []
    if not lines:
        return "its error could not be recorded (is the results location full?); see the Ray logs"
    return lines[-1]


class SilentReporter(ProgressReporter):
    """Tune's periodic tables, switched off: ``Progress`` is the study's only output."""

    def should_report(self, trials: list, done: bool = False) -> bool:
        return False

    def report(self, trials: list, done: bool, *sys_info: dict) -> None:
        pass

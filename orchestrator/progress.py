"""One live progress line for a study, whatever runs its units: done / running / failed / diverged / ETA.

``Progress`` draws the line; both executors feed it: the Tune grid through ``TuneProgress`` (a Tune callback that
reads the trials' states) and the bounded Ray tasks directly. The ETA weighs units by their planned cost (6·N·D for a
language-model trial, the number of seeds for a recovery batch), so a study whose big cells run last is not promised
an early finish. On a terminal the line is redrawn in place; in a log (CI, a Ray job) a line is printed whenever a
unit ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback, ProgressReporter


def format_duration(seconds: float) -> str:
    """'42s', '3m05s' or '2h07m': short enough for a progress line."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """``[study] done/total <noun> done · running · failed · diverged · elapsed · ETA`` for one study part."""

    def __init__(self, study: str, total: int, *, noun: str, cost: float, stream: TextIO | None = None) -> None:
        self.study, self.total, self.noun, self.cost = study, total, noun, cost
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.counts = {"done": 0, "running": 0, "failed": 0, "diverged": 0}
        self.cost_done = 0.0
        self._last_draw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; a terminal stream does not pickle and is not state
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def update(self, *, done: int, running: int, failed: int, diverged: int, cost_done: float) -> None:
        """The part's state now: units done (ok, diverged or failed), running, failed, diverged, and the cost of
        the done ones."""
        self.counts = {"done": done, "running": running, "failed": failed, "diverged": diverged}
        self.cost_done = cost_done

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        remaining = self.cost - self.cost_done
        eta = f"ETA {format_duration(elapsed / self.cost_done * remaining)}" if self.cost_done else "ETA …"
        c = self.counts
        return (
            f"[{self.study}] {c['done']}/{self.total} {self.noun} done · {c['running']} running · "
            f"{c['failed']} failed · {c['diverged']} diverged · {format_duration(elapsed)} elapsed · {eta}"
        )

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self._last_draw > 1.0):
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._last_draw = now
        elif force and not self.live:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        """A line of its own (a unit that failed, and why), above the live progress line (redraw it after)."""
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{self.study}] {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


class TuneProgress(Callback):
    """Feeds a ``Progress`` from Tune's trial states at every controller step, so the counts are right whatever the
    event order; a trial's cost is looked up by its trial id."""

    def __init__(self, progress: Progress, cost_by_id: dict[str, float]) -> None:
        self.progress = progress
        self.cost_by_id = cost_by_id

    def _update(self, trials: list, ending: Any = None, ending_as: str = "TERMINATED") -> None:
        # Tune calls on_trial_complete/on_trial_error before it sets the trial's new status
        status = {t.trial_id: ending_as if t is ending else t.status for t in trials}
        finished = [t for t in trials if status[t.trial_id] == "TERMINATED"]
        failed = [t for t in trials if status[t.trial_id] == "ERROR"]
        self.progress.update(
            done=len(finished) + len(failed),
            running=sum(s == "RUNNING" for s in status.values()),
            failed=len(failed),
            diverged=sum(bool((t.last_result or {}).get("diverged")) for t in finished),
            cost_done=sum(self.cost_by_id.get(t.config["run"]["trial"]["trial_id"], 0.0) for t in finished + failed),
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update(trials)
        self.progress.draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials, ending=trial)
        self.progress.draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials, ending=trial, ending_as="ERROR")
        self.progress.note(f"{trial.config['run']['trial']['trial_id']} failed: {_last_error_line(trial)}")
        self.progress.draw(force=True)


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

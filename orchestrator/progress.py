"""One live progress line for a study, instead of Tune's tables: done / running / failed / diverged / ETA.

The ETA weighs trials by their planned compute (6·N·D), so a study whose big cells run last is not promised an early
finish. On a terminal the line is redrawn in place; in a log (CI, a Ray job) a line is printed whenever a trial ends.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback, ProgressReporter


def format_duration(seconds: float) -> str:
    """'42s', '3m05s' or '2h07m': short enough for a progress line."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressLine(Callback):
    """Counts are read from Tune's trial states at every controller step, so they are right whatever the event order."""

    def __init__(self, study: str, flops_by_id: dict[str, float], stream: TextIO | None = None) -> None:
        self.study = study
        self.flops_by_id = flops_by_id
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.counts = {"done": 0, "running": 0, "failed": 0, "diverged": 0}
        self.flops_done = 0.0
        self._last_draw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state; a terminal stream does not pickle and is not state
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        remaining = sum(self.flops_by_id.values()) - self.flops_done
        eta = f"ETA {format_duration(elapsed / self.flops_done * remaining)}" if self.flops_done else "ETA …"
        c = self.counts
        return (
            f"[{self.study}] {c['done']}/{len(self.flops_by_id)} done · {c['running']} running · "
            f"{c['failed']} failed · {c['diverged']} diverged · {format_duration(elapsed)} elapsed · {eta}"
        )

    def _update(self, trials: list, ending: Any = None, ending_as: str = "TERMINATED") -> None:
        # Tune calls on_trial_complete/on_trial_error before it sets the trial's new status
        status = {t.trial_id: ending_as if t is ending else t.status for t in trials}
        finished = [t for t in trials if status[t.trial_id] == "TERMINATED"]
        self.counts = {
            "done": len(finished),
            "running": sum(s == "RUNNING" for s in status.values()),
            "failed": sum(s == "ERROR" for s in status.values()),
            "diverged": sum(bool((t.last_result or {}).get("diverged")) for t in finished),
        }
        self.flops_done = sum(self.flops_by_id.get(t.config["trial"]["trial_id"], 0.0) for t in finished)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self._last_draw > 1.0):
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._last_draw = now
        elif force and not self.live:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update(trials)
        self.draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials, ending=trial)
        self.draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials, ending=trial, ending_as="ERROR")
        self.draw(force=True)


class SilentReporter(ProgressReporter):
    """Tune's periodic tables, switched off: `ProgressLine` is the study's only output."""

    def should_report(self, trials: list, done: bool = False) -> bool:
        return False

    def report(self, trials: list, done: bool, *sys_info: dict) -> None:
        pass


class TaskProgress:
    """``[study] done/total <unit> done · running · failed · elapsed · ETA`` for studies of plain Ray tasks
    (recovery, the function part of a spikes study); the ETA is by units finished."""

    def __init__(self, study: str, total: int, stream: TextIO, *, unit: str) -> None:
        self.study, self.total, self.stream, self.unit = study, total, stream, unit
        self.live = stream.isatty()
        self.started = time.monotonic()

    def draw(self, done: int, failed: int, running: int) -> None:
        elapsed = time.monotonic() - self.started
        eta = format_duration(elapsed / done * (self.total - done)) if done else "…"
        line = (
            f"[{self.study}] {done}/{self.total} {self.unit} done · {running} running · {failed} failed · "
            f"{format_duration(elapsed)} elapsed · ETA {eta}"
        )
        self.stream.write("\r\033[K" + line if self.live else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

"""The progress line tells the truth: its counts, its throughput, and an ETA within 2× of the time a study really
took once a tenth of its trials are done. Checked by replaying real studies' recorded feeds (and one synthetic GPU-like
study) into ``Progress`` on an injected clock: no Ray, no sleeping."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.progress import Piece, Progress, _makespan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "progress"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(work: dict[str, Piece], clock: Clock, stream: io.StringIO | None = None, **options: Any) -> Progress:
    return Progress("s", len(work), noun="trials", work=work, stream=stream or io.StringIO(), clock=clock, **options)


# ----------------------------------------------------------------------------------------------- known answers


def test_makespan_lays_pending_work_on_the_first_free_slot() -> None:
    # slots free at 3 s and 1 s; 2 s of work goes on the second (ends at 3), the next 2 s on either (ends at 5)
    assert _makespan([3.0, 1.0], [2.0, 2.0], 2) == 5.0
    # one slot idle from the start: the big piece last runs alone, after the small ones
    assert _makespan([], [1.0, 1.0, 6.0], 2) == 7.0
    assert _makespan([], [], 2) == 0.0


def test_eta_is_the_measured_seconds_per_token_of_each_size() -> None:
    clock = Clock()
    work = {
        "a1": Piece("1x16", 100, 1e3),
        "a2": Piece("1x16", 300, 3e3),
        "b1": Piece("1x64", 100, 8e3),
        "b2": Piece("1x64", 200, 16e3),
    }
    progress = _progress(work, clock)
    progress.update(statuses={}, running=2, in_flight={"a1": None, "b1": None}, ended={})
    clock.now = 10.0  # a1 took 10 s for 100 tokens: 0.1 s a token at 1x16
    progress.update(statuses={"a1": "ok"}, running=2, in_flight={"a2": None, "b1": None}, ended={"a1": True})
    clock.now = 50.0  # b1 took 50 s for 100 tokens: 0.5 s a token at 1x64
    progress.update(
        statuses={"a1": "ok", "b1": "ok"}, running=2, in_flight={"a2": None, "b2": None}, ended={"a1": True, "b1": True}
    )
    # a2: 30 s from t=10, 10 s left; b2: 100 s from t=50, all left; the last ends in 100 s
    assert progress.eta(50.0) == pytest.approx(100.0)
    assert progress.rate(50.0) == pytest.approx(200 / 50)  # tokens of the ended pieces per second since the first start
    assert "4 tokens/s" in progress.line(50.0) and "ETA 1m40s" in progress.line(50.0)


def test_an_unmeasured_size_is_scaled_by_flops_per_token_to_the_fitted_power() -> None:
    clock = Clock()
    # three sizes, FLOPs per token 1, 4 and 16; the first two measured at 1 and 4 s a token (compute-bound: k = 1)
    work = {"s": Piece("s", 10, 10), "m": Piece("m", 10, 40), "l": Piece("l", 10, 160)}
    progress = _progress(work, clock, every_s=1e9)
    progress.update(statuses={}, running=1, in_flight={"s": None}, ended={})
    clock.now = 10.0
    progress.update(statuses={"s": "ok"}, running=1, in_flight={"m": None}, ended={"s": True})
    # one size measured: k = 0, the measured 1 s a token for m and l alike, 10 s each, one after the other
    assert progress.eta(10.0) == pytest.approx(10 + 10)
    clock.now = 30.0  # m in flight for 20 s: it takes at least that (it may end now); l still at s's 1 s a token
    progress.update(statuses={"s": "ok"}, running=1, in_flight={"m": None}, ended={"s": True})
    assert progress.eta(30.0) == pytest.approx(0 + 10)
    clock.now = 50.0
    progress.update(statuses={"s": "ok", "m": "ok"}, running=1, in_flight={"l": None}, ended={"s": True, "m": True})
    assert progress.eta(50.0) == pytest.approx(160.0)  # the fitted k = 1: 16 s a token


def test_a_size_known_only_from_a_short_piece_leans_on_the_other_sizes_by_its_measured_share() -> None:
    clock = Clock()
    # a and b have the same FLOPs per token (so the law's k is 0); b has trained 10 of its 1000 tokens
    work = {"a1": Piece("a", 100, 100.0), "b1": Piece("b", 10, 10.0), "b2": Piece("b", 990, 990.0)}
    progress = _progress(work, clock)
    progress.update(statuses={}, running=2, in_flight={"a1": None, "b1": None}, ended={})
    clock.now = 40.0  # b1: 4 s a token (a short piece, mostly start-up)
    progress.update(statuses={"b1": "ok"}, running=1, in_flight={"a1": None}, ended={"b1": True})
    clock.now = 100.0  # a1: 1 s a token
    progress.update(statuses={"a1": "ok", "b1": "ok"}, running=0, in_flight={}, ended={"a1": True, "b1": True})
    # the law: the sizes' log rates weighted by their tokens, log 4 × 10/110; b's own log 4 counts by 10/1000:
    # log rate = 0.01 · log 4 + 0.99 · log 4 · 10/110 = 0.1 · log 4 (no start-up: no size has two amounts)
    assert progress.eta(100.0) == pytest.approx(990 * 4**0.1)


def test_a_piece_in_flight_bounds_the_pieces_of_its_size_no_bigger_than_it() -> None:
    clock = Clock()
    work = {
        "s": Piece("x", 100, 100.0),
        "small": Piece("y", 10, 10.0),
        "big": Piece("y", 1000, 1000.0),
        "small2": Piece("y", 10, 10.0),
    }
    progress = _progress(work, clock, every_s=1e9)
    progress.update(statuses={}, running=1, in_flight={"s": None}, ended={})
    clock.now = 100.0  # x: 1 s a token; y has nothing finished, the law (one size, k = 0) says 1 s a token too
    progress.update(statuses={"s": "ok"}, running=1, in_flight={"small": None}, ended={"s": True})
    clock.now = 150.0  # small has run 50 s for 10 tokens: mostly start-up, it bounds nothing bigger than itself
    progress.update(statuses={"s": "ok"}, running=1, in_flight={"small": None}, ended={"s": True})
    assert progress.eta(150.0) == pytest.approx(0 + 1000 + 50)  # small may end now; big at 1 s, small2 at 5 s a token
    clock.now = 200.0
    ended = {"s": True, "small": True}
    progress.update(statuses=dict.fromkeys(ended, "ok"), running=1, in_flight={"big": None}, ended=ended)
    clock.now = 3200.0  # big has run 3000 s, 3 s a token so far: it may end now, and small2 takes at least 3 s a token
    progress.update(statuses=dict.fromkeys(ended, "ok"), running=1, in_flight={"big": None}, ended=ended)
    assert progress.eta(3200.0) == pytest.approx(0 + 10 * 3.0)


def test_before_anything_ends_the_eta_is_the_flops_share_of_what_pieces_report_done() -> None:
    clock = Clock()
    work = {"a": Piece("x", 10, 50.0), "b": Piece("x", 10, 50.0)}
    progress = _progress(work, clock)
    progress.update(statuses={}, running=1, in_flight={"a": None}, ended={})
    assert progress.eta(0.0) is None and "ETA …" in progress.line(0.0) and "… tokens/s" in progress.line(0.0)
    clock.now = 10.0  # a reports half its steps: 25 of 100 FLOPs in 10 s, 75 left
    progress.update(statuses={}, running=1, in_flight={"a": 0.5}, ended={})
    assert progress.eta(10.0) == pytest.approx(30.0)


def test_a_failed_piece_is_not_timed() -> None:
    clock = Clock()
    work = {"a": Piece("x", 10, 1.0), "b": Piece("x", 10, 1.0)}
    progress = _progress(work, clock)
    progress.update(statuses={}, running=1, in_flight={"a": None}, ended={})
    clock.now = 1.0  # a failed after 1 s: that says nothing of how fast x trains
    progress.update(statuses={"a": "failed"}, running=0, in_flight={}, ended={"a": False})
    assert progress.eta(1.0) is None
    assert "1/2 trials done · 0 running · 1 failed" in progress.line(1.0)


# ------------------------------------------------------------------------------------------ output to a log


class Log(io.StringIO):
    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_line_is_printed_at_most_every_n_seconds_and_at_the_end() -> None:
    clock, log = Clock(), Log()
    work = {f"t{i}": Piece("x", 10, 1.0) for i in range(100)}
    progress = _progress(work, clock, stream=log, every_s=30.0)
    for second in range(100):  # an update every second, a unit ending in each
        clock.now = float(second)
        ended = {f"t{i}": True for i in range(second)}
        progress.update(statuses=dict.fromkeys(ended, "ok"), running=1, in_flight={f"t{second}": None}, ended=ended)
    progress.close()
    lines = log.getvalue().splitlines()
    assert [line.split(" elapsed")[0].rsplit(" ", 1)[-1] for line in lines] == ["30s", "1m00s", "1m30s", "1m39s"]
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("[s] 30/100 trials done · 1 running · 0 failed · 0 diverged · ")


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    clock, terminal = Clock(), Terminal()
    progress = _progress({"a": Piece("x", 10, 1.0)}, clock, stream=terminal)
    progress.update(statuses={}, running=1, in_flight={"a": None}, ended={})
    clock.now = 2.0
    progress.update(statuses={"a": "ok"}, running=0, in_flight={}, ended={"a": True})
    progress.close()
    assert terminal.getvalue().count("\r\033[K") == 2 and terminal.getvalue().endswith("\n")


# ------------------------------------------------------------------------------ replays of whole studies


def replay(recording: dict[str, Any]) -> list[tuple[int, float | None, float, float]]:
    """Feed a recorded study into ``Progress`` on its own timestamps; at each event where a unit got its outcome:
    (units done, the ETA, the true time left, the former FLOPs-share ETA)."""
    work = {key: Piece(size, amount, flops) for key, (size, amount, flops) in recording["work"].items()}
    events = recording["events"]
    end = events[-1]["t"]
    clock = Clock()
    progress = _progress(work, clock, stream=Log(), every_s=1e9)
    flight: dict[str, float | None] = {}
    ended: dict[str, bool] = {}
    outcomes: dict[str, str] = {}
    seen = []
    for event in events:
        clock.now = event["t"]
        flight = {k: None for k in [*flight, *event["started"]] if k not in event["ended"]}
        flight.update({k: f for k, f in event.get("fraction", {}).items() if k in flight})
        ended |= event["ended"]
        outcomes |= event["outcomes"]
        progress.update(statuses=outcomes, running=event["running"], in_flight=flight, ended=ended)
        if event["outcomes"]:
            done_flops = sum(work[k].flops for k in ended)
            total_flops = sum(w.flops for w in work.values())
            former = clock.now * (total_flops - done_flops) / done_flops if done_flops else float("inf")
            seen.append((len(outcomes), progress.eta(clock.now), end - clock.now, former))
    return seen


def _within_twice_after_a_tenth(seen: list[tuple[int, float | None, float, float]], total: int) -> list[str]:
    off = []
    for done, eta, truth, _ in seen:
        # within 2×, or within 2 s where less is left (the line updates every 0.5-1 s and shows whole seconds)
        close = eta is not None and (truth / 2 <= eta <= 2 * truth or abs(eta - truth) <= 2.0)
        if done >= total / 10 and not close:
            off.append(f"{done}/{total} done: ETA {eta} s, {truth:.1f} s were left")
    return off


RECORDINGS = {
    # `scalesweep run` on this project's 2-core machine, its Progress feed recorded: the study, how it ran, how long
    "laptop-busy.json": "laptop, branching; 2 cores shared with other studies' tests (load average 10-19); 6 min 23 s",
    "laptop-quiet.json": "laptop, branching; a quiet machine; 1 min 28 s",
    "laptop-tune.json": "laptop with branching: false, every cell a Tune trial; a quiet machine; 2 min 17 s",
    "isoflop-quiet.json": "isoflop, branching (pieces of 1.5 s to 38 s); a quiet machine; 1 min 42 s",
    "isoflop-busy.json": "isoflop, branching; two busy processes at Ray's worker niceness all along; 3 min 44 s",
}


def _cells(recording: dict[str, Any]) -> int:
    return sum(1 for key in recording["work"] if not key.startswith("s-"))  # the cells (branches), not stretches


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_eta_of_a_recorded_study_is_within_twice_the_truth_after_a_tenth(name: str) -> None:
    recording = json.loads((FIXTURES / name).read_text())
    seen = replay(recording)
    assert len({done for done, *_ in seen}) >= 10
    assert _within_twice_after_a_tenth(seen, _cells(recording)) == []


def test_the_flops_share_the_issue_measured_was_more_than_twice_off_on_the_same_feed() -> None:
    recording = json.loads((FIXTURES / "laptop-busy.json").read_text())
    total = _cells(recording)
    assert any(done >= total / 10 and former > 2 * truth for done, _, truth, former in replay(recording))


def test_eta_holds_on_a_machine_that_speeds_up_until_the_pieces_timed_at_the_new_speed_end() -> None:
    """What the estimate cannot foresee (module docstring). This laptop run shared 2 cores with other jobs (load average
    about 19) that ended in its last minute: the largest size trained 128 steps in 7.9-8.1 s in its cooldowns, against
    23.7 s on average over its stable run (38.5 s for the first 128). Until the first of those cooldowns ended (24 of
    30 trials) the ETA held 2×; after it the ETA is 2.4-2.7× too long for the last 20 s (README)."""
    recording = json.loads((FIXTURES / "laptop-speedup.json").read_text())
    seen = replay(recording)
    before = [entry for entry in seen if entry[0] <= 24]
    assert _within_twice_after_a_tenth(before, _cells(recording)) == []
    assert len(before) == 24


def _gpu_like_study() -> dict[str, Any]:
    """A synthetic study on 2 slots: 4 sizes × 5 data sizes, tokens/s falling 4× from the smallest size to the
    largest (FLOPs per token rising 4×, compute-bound), the big cells last, and a busy machine at first: the first
    pieces run at half speed, as when another job shares the node. Events are laid out by list scheduling."""
    sizes = {
        "s1": (1.0, 1e5),
        "s2": (1.6, 1e5 / 1.6),
        "s3": (2.5, 1e5 / 2.5),
        "s4": (4.0, 2.5e4),
    }  # (FLOPs/token, tok/s)
    work, timeline = {}, []
    slots = [0.0, 0.0]
    startup = 20.0  # worker start and data loading of every piece: the same whatever its size
    for size, (density, speed) in sizes.items():
        for d in range(1, 6):
            key, tokens = f"{size}-d{d}", 1e6 * d
            start = min(slots)
            slot = slots.index(start)
            busy = 2.0 if start < 150 else 1.0
            took = startup + busy * tokens / speed
            slots[slot] = start + took
            work[key] = [size, tokens, 6e6 * density * tokens]
            timeline += [(start, "start", key), (start + took, "end", key)]
    events: list[dict[str, Any]] = []
    flight: set[str] = set()
    for t, what, key in sorted(timeline, key=lambda e: (e[0], e[1] == "start")):
        if what == "start":
            flight.add(key)
            events.append({"t": t, "running": len(flight), "started": [key], "ended": {}, "outcomes": {}})
        else:
            flight.discard(key)
            events.append(
                {"t": t, "running": len(flight), "started": [], "ended": {key: True}, "outcomes": {key: "ok"}}
            )
    return {"work": work, "events": events}


def test_eta_of_a_compute_bound_study_with_a_busy_start_is_within_twice_the_truth_after_a_tenth() -> None:
    seen = replay(_gpu_like_study())
    assert _within_twice_after_a_tenth(seen, 20) == []

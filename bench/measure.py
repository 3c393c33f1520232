"""Measuring one client run: the child process (wall time, CPU, peak memory) and the simulator's request
log (requests, 429s, the server's fixed windows, extrapolation of a run cut short)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

WRITES = frozenset({"POST", "PATCH", "PUT", "MERGE", "DELETE"})


class Entry(Protocol):
    """What the harness reads of a ``bulkops.sim.requestlog.LogEntry``."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ChildResult:
    returncode: int
    started: float  # time.time() at launch
    wall: float  # seconds from launch to exit (or to the kill, when capped)
    cpu: float  # user + system seconds of the child
    peak_mb: float  # peak resident set size of the child
    capped: bool  # killed at the time cap


SPAWN = Path(__file__).resolve().with_name("spawn.py")


def run_child(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    cap: float | None,
    on_tick: Callable[[float], None] | None = None,
    poll: float = 0.01,
) -> ChildResult:
    """Run ``cmd`` through ``bench/spawn.py`` to its end (or stop it at ``cap`` seconds) and read the
    client's own wall time, CPU time and peak memory from the launcher's report."""
    report = log.with_suffix(".usage.json")
    report.unlink(missing_ok=True)
    launcher = [sys.executable, str(SPAWN), str(report), "--", *cmd]
    with log.open("wb") as out:
        started = time.time()
        proc = subprocess.Popen(launcher, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        killed_at: float | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                ended = time.time()
                break
            elapsed = time.time() - started
            if on_tick is not None:
                on_tick(elapsed)
            if cap is not None and killed_at is None and elapsed >= cap:
                killed_at = time.time()
                proc.send_signal(signal.SIGTERM)
            time.sleep(poll)
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        own = json.loads(report.read_text())
    except (OSError, ValueError):  # the launcher itself failed: its own numbers are the best there are
        own = {
            "returncode": proc.returncode,
            "wall": ended - started,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
        }
    child_started = ended - float(own["wall"])
    wall = (killed_at - child_started) if killed_at is not None else float(own["wall"])
    return ChildResult(
        int(own["returncode"]),
        child_started,
        wall,
        float(own["cpu"]),
        float(own["maxrss_kb"]) / 1024,
        killed_at is not None,
    )


def windows(entries: Sequence[Entry], start: float, width: float) -> list[tuple[float, int, int]]:
    """The server's fixed windows from ``start`` on, rebuilt from the log: a window opens at the first
    request at or after the previous one's end. Returns (window start, admitted, throttled)."""
    out: list[tuple[float, int, int]] = []
    end = -math.inf
    for e in sorted(entries, key=lambda e: e.time):
        if e.time < start:
            continue
        if e.time >= end:
            out.append((e.time, 0, 0))
            end = e.time + width
        ws, ok, no = out[-1]
        out[-1] = (ws, ok + (e.status != 429), no + (e.status == 429))
    return out


@dataclass(frozen=True, slots=True)
class Extrapolation:
    wall: float
    requests: int
    throttled: int
    done_writes: int
    needed_writes: int


def extrapolate(
    entries: Sequence[Entry],
    *,
    started: float,
    stopped: float,
    since: float,
    needed_writes: int,
    width: float,
    budget: int | None = None,
) -> Extrapolation:
    """A run cut short, projected to its end at the pace it had in the complete server windows after
    ``since``: remaining writes ÷ writes per second, and requests and 429s in proportion. With no
    complete window the pace of what there is is used; with ``budget`` (admitted requests per window
    after ``since``) never faster than the limit allows, one admitted request per write."""
    done = [e for e in entries if e.method in WRITES and e.status != 429]
    wins = [w for w in windows(entries, since, width) if w[0] + width <= stopped]
    if wins:
        lo, hi = wins[0][0], wins[-1][0] + width
    else:
        lo, hi = since, stopped
    part = [e for e in entries if lo <= e.time < hi]
    part_writes = sum(1 for e in part if e.method in WRITES and e.status != 429)
    left = max(0, needed_writes - len(done))
    if part_writes == 0 or left == 0:
        return Extrapolation(stopped - started, len(entries), _throttled(entries), len(done), needed_writes)
    per_write = (hi - lo) / part_writes
    if budget:
        per_write = max(per_write, width / budget)
    return Extrapolation(
        wall=stopped - started + left * per_write,
        requests=len(entries) + round(left * len(part) / part_writes),
        throttled=_throttled(entries) + round(left * _throttled(part) / part_writes),
        done_writes=len(done),
        needed_writes=needed_writes,
    )


def _throttled(entries: Sequence[Entry]) -> int:
    return sum(1 for e in entries if e.status == 429)


def recovery(entries: Sequence[Entry], *, drop: float, width: float, points: int) -> dict[str, object]:
    """Admitted requests per server window after the limit dropped to ``points``: the target is ≥ 90 % of
    it from the second window on. The last window is left out of the verdict (the work may run out in
    it) unless it reached 90 % anyway; with no window left to judge, the verdict is None."""
    wins = windows(entries, drop, width)
    admitted = [ok for _, ok, _ in wins]
    judged = admitted[1:-1]
    if len(admitted) > 1 and admitted[-1] >= 0.9 * points:
        judged.append(admitted[-1])
    verdict = None if not judged else all(ok >= 0.9 * points for ok in judged)
    worst = min(judged) / points if judged else None
    return {"admitted_per_window": admitted, "met": verdict, "worst_share": worst}

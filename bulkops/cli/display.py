"""The run's progress while a plan applies: a live display on a terminal, JSON events otherwise.

On a terminal (rich): done/total with a bar, the rate the limiter has learned (or, before the first
``429``, the rate seen so far), requests in flight, ``429``\\s, during a pause ``waiting for the rate
limit: 7 s``, and an ETA from that rate; the display redraws four times a second whatever the engine is
doing, so a pause never looks like a hang. Off a terminal: one ``bulkops.apply.progress`` JSON line on
stderr every few seconds, and one at the start and the end.

:meth:`Progress.set_status` sets one more line under the numbers (a rollout's stage and gate state).
Messages written while the display runs (Ctrl-C's "stopping …") appear above it; when it stops, its last
state stays on screen and whatever follows starts on a line of its own.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import anyio

from bulkops.api.limiter import AdaptiveLimiter
from bulkops.cli import output
from bulkops.model import ChangeKind, PlanItem, Progress, RolloutProgress

if TYPE_CHECKING:
    from rich.console import Group

__all__ = ["RunProgress", "Snapshot", "estimate_requests", "progress_display", "render_lines", "rollout_line"]

REFRESH = 0.25  # seconds between redraws on a terminal
JSON_EVERY = 5.0  # seconds between progress events off a terminal
WAIT_SHOWN = 0.5  # pauses shorter than this are not announced


def estimate_requests(items: Iterable[PlanItem], batch_size: int) -> int:
    """Requests the engine will send for ``items``: a POST per create, a write and a read-back per
    batch of up to ``batch_size`` changes or deletes sharing resource and after-values."""
    creates = 0
    groups: dict[tuple[str, str, str], int] = {}
    for it in items:
        if it.kind is ChangeKind.CREATE:
            creates += 1
        elif it.kind in (ChangeKind.CHANGE, ChangeKind.DELETE):
            key = (it.kind.value, it.resource, repr(sorted((it.after or {}).items())))
            groups[key] = groups.get(key, 0) + 1
    return creates + sum(2 * math.ceil(n / max(1, batch_size)) for n in groups.values())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the display shows at one instant."""

    done: int
    total: int
    requests: int
    throttled: int
    in_flight: int
    rate: float | None  # requests per second
    learned: bool  # the rate is the limit the limiter learned (else the rate seen so far)
    budget: int | None  # learned requests per window …
    window: float | None  # … and the window in seconds
    waiting: float  # seconds left of a rate-limit pause
    eta: float | None  # seconds
    elapsed: float
    status: str  # the extra line (a rollout's stage and gate), "" when none


class RunProgress:
    """Collects the engine's progress callbacks and the limiter's state into snapshots."""

    def __init__(self, limiter: AdaptiveLimiter, *, total: int, expected_requests: int, done: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = limiter
        self.clock = clock
        self.started = clock()
        self.expected = expected_requests
        self.latest = Progress(done, total, 0, 0, 0.0)
        self.status = ""

    def __call__(self, p: Progress) -> None:
        self.latest = p

    def set_status(self, text: str | None) -> None:
        """One more line under the numbers, e.g. ``stage 2/4 · gate: waiting for 95 % online``."""
        self.status = text or ""

    def snapshot(self) -> Snapshot:
        now = self.clock()
        p, stats = self.latest, self.limiter.statistics()
        elapsed = now - self.started
        learned = stats.rate is not None
        # before the first 429 the rate seen so far is all there is; after it, until the limit is learned,
        # that burst rate would promise an ETA the limit will not allow: show none
        seen = p.requests / elapsed if elapsed >= 1.0 and p.requests and not stats.throttled else None
        rate = stats.rate if learned else seen
        waiting = max(0.0, stats.paused_until - now)
        eta: float | None = None
        if p.done >= p.total:
            eta = 0.0
        elif rate:
            eta = max(0, self.expected - p.requests) / rate + waiting
        return Snapshot(p.done, p.total, p.requests, stats.throttled, stats.in_flight, rate, learned,
                        stats.estimated_budget, stats.estimated_window, waiting, eta, elapsed, self.status)


def rollout_line(r: RolloutProgress) -> str:
    """The status line of a staged rollout: ``stage 2/4 · gate: 40 passed, 2 failed, 15 pending · …``."""
    line = f"stage {r.stage}/{r.stages} · {r.phase} · {r.targets:,} targets"
    if r.phase == "gating" or r.gate_passed or r.gate_failed or r.gate_pending:
        line += f" · gate: {r.gate_passed} passed, {r.gate_failed} failed, {r.gate_pending} pending"
    if r.attempted:
        line += f" · failures {r.failures} of {r.attempted} (tolerated {r.allowed})"
    return line


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def render_lines(s: Snapshot) -> list[str]:
    """The display as plain lines (the terminal view adds a bar to the first)."""
    share = f" ({100 * s.done // s.total}%)" if s.total else ""
    lines = [f"applied {s.done:,}/{s.total:,}{share}   elapsed {_clock_text(s.elapsed)}"
             f"   ETA {_clock_text(s.eta)}"]
    if s.rate is None and s.throttled:
        rate = "rate — (learning the limit)"
    elif s.rate is None:
        rate = "rate —"
    elif s.learned and s.budget and s.window:
        rate = f"rate {s.rate:.1f} req/s (learned limit: {s.budget} per {s.window:.1f} s)"
    elif s.learned:
        rate = f"rate {s.rate:.1f} req/s (paced: the limit is a rate, not a window)"
    else:
        rate = f"rate {s.rate:.1f} req/s (no limit met yet)"
    lines.append(f"{rate}   in flight {s.in_flight}   429s {s.throttled}   requests {s.requests:,}")
    if s.waiting >= WAIT_SHOWN:
        lines.append(f"waiting for the rate limit: {math.ceil(s.waiting)} s")
    if s.status:
        lines.append(s.status)
    return lines


def _renderable(s: Snapshot) -> Group:
    from rich.console import Group  # noqa: PLC0415 - rich loads only when a terminal shows the display
    from rich.progress_bar import ProgressBar  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    lines = render_lines(s)
    first, rest = lines[0].split("   ", 1)
    head = Table.grid(padding=(0, 2))
    head.add_row(Text(first), ProgressBar(total=max(1, s.total), completed=s.done, width=30), Text(rest))
    return Group(head, *(Text(line, style="bold yellow" if line.startswith("waiting") else "")
                         for line in lines[1:]))


class _Terminal:
    def __init__(self, state: RunProgress, stream: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - rich loads only when a terminal shows the display
        from rich.live import Live  # noqa: PLC0415

        self.state = state
        self.console = Console(file=stream, highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=False,
                         redirect_stderr=False)

    def notify(self, message: str) -> None:
        self.console.print(f"bulkops: {message}", markup=False, highlight=False)

    def first(self) -> None:
        self.last()

    def last(self) -> None:
        self.live.update(_renderable(self.state.snapshot()), refresh=True)

    async def loop(self) -> None:
        while True:
            await anyio.sleep(REFRESH)
            self.last()


class _Events:
    def __init__(self, state: RunProgress, every: float) -> None:
        self.state, self.every = state, every

    def emit(self) -> None:
        s = self.state.snapshot()
        output.event("bulkops.apply.progress", done=s.done, total=s.total, requests=s.requests,
                     throttled=s.throttled, in_flight=s.in_flight,
                     rate=None if s.rate is None else round(s.rate, 2), rate_learned=s.learned,
                     waiting_s=round(s.waiting, 1), eta_s=None if s.eta is None else round(s.eta, 1),
                     elapsed_s=round(s.elapsed, 1), status=s.status or None)

    def notify(self, message: str) -> None:
        output.note("bulkops.apply.notice", message)

    def first(self) -> None:
        self.emit()

    def last(self) -> None:
        self.emit()

    async def loop(self) -> None:
        while True:
            await anyio.sleep(self.every)
            self.emit()


@asynccontextmanager
async def progress_display(
    limiter: AdaptiveLimiter, *, total: int, expected_requests: int, done: int = 0,
    stream: TextIO | None = None, every: float = JSON_EVERY,
) -> AsyncIterator[tuple[RunProgress, Callable[[str], None]]]:
    """Show the run's progress while the body runs; yields the progress callback (with ``set_status``)
    and the function that prints a message above the display. An error of the body comes out as itself,
    not wrapped in the display's task group."""
    state = RunProgress(limiter, total=total, expected_requests=expected_requests, done=done)
    out = stream if stream is not None else sys.stderr
    view: _Terminal | _Events = _Terminal(state, out) if out.isatty() else _Events(state, every)
    failure: BaseException | None = None
    with ExitStack() as stack:
        if isinstance(view, _Terminal):
            stack.enter_context(view.live)
        view.first()
        async with anyio.create_task_group() as tg:
            tg.start_soon(view.loop)
            try:
                yield state, view.notify
            except BaseException as exc:  # re-raised below, outside the task group (not wrapped)
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        view.last()
    if failure is not None:
        raise failure

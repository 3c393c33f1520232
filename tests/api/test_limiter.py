"""The adaptive limiter on virtual time: pauses, AIMD, and a learned fixed-window budget."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import pytest

from bulkops.api.limiter import AdaptiveLimiter, LimiterStats

LATENCY = 0.007


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class VirtualClock:
    """Time that moves only when every task is blocked: sleeping costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        event = anyio.Event()
        heapq.heappush(self._timers, (self.now + max(0.0, delay), next(self._seq), event))
        await event.wait()

    async def jump(self, delay: float) -> None:
        """A sleep for single-task tests: time jumps at once."""
        self.now += max(0.0, delay)
        await anyio.lowlevel.checkpoint()

    async def drive(self, done: anyio.Event) -> None:
        while not done.is_set():
            await settle()
            if done.is_set():
                return
            when, _, event = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            event.set()


async def settle() -> None:
    """Return once every other task waits on something (anyio's version polls every 0.1 s)."""
    this = asyncio.current_task()
    quiet = 0
    while quiet < 3:  # callbacks scheduled with call_soon run within a loop turn or two
        await asyncio.sleep(0)
        waiting = (getattr(t, "_fut_waiter", None) for t in asyncio.all_tasks() if t is not this)
        quiet = quiet + 1 if all(w is not None and not w.done() for w in waiting) else 0


@dataclass
class FixedWindowServer:
    """balena's limiter: N per W seconds, the window starts at the first request seen after a reset."""

    clock: VirtualClock
    budget: int
    window: float
    window_end: float = -1.0
    count: int = 0
    log: list[tuple[float, bool]] = field(default_factory=list)

    def handle(self) -> int | None:
        """None when admitted, else the Retry-After the server sends."""
        now = self.clock.now
        if now >= self.window_end:
            self.window_end = now + self.window
            self.count = 0
        self.count += 1
        admitted = self.count <= self.budget
        self.log.append((now, admitted))
        if admitted:
            return None
        return math.floor((self.window_end - now) + 0.5)  # JavaScript Math.round of ms / 1000


class Server(Protocol):
    log: list[tuple[float, bool]]

    def handle(self) -> int | None: ...


@dataclass
class Run:
    elapsed: float
    requests: int
    throttled: int
    server: Any
    stats: LimiterStats


async def run_requests(
    total: int, budget: int, window: float, *, workers: int = 16,
    change: Callable[[Any], None] | None = None, change_at: float = math.inf,
    used: tuple[float, int] | None = None,
    make_server: Callable[[VirtualClock], Server] | None = None,
) -> Run:
    """``total`` requests by ``workers`` workers through one limiter to a fixed window of ``budget``
    per ``window`` seconds (or the server ``make_server`` makes), on virtual time."""
    clock = VirtualClock()
    server: Any
    if make_server is not None:
        server = make_server(clock)
    else:
        server = FixedWindowServer(clock, budget, window)
    if used is not None:  # a server window already running: (its end, requests it counted)
        server.window_end, server.count = used
    limiter = AdaptiveLimiter(max_concurrency=workers, clock=clock.time, sleep=clock.sleep)
    remaining = itertools.count()
    done = anyio.Event()
    finished = 0
    last = 0.0

    async def worker() -> None:
        nonlocal finished, last
        while next(remaining) < total:
            while True:
                async with limiter.slot() as ticket:
                    await clock.sleep(LATENCY / 2)
                    if change is not None and clock.now >= change_at:
                        change(server)
                    retry_after = server.handle()
                    await clock.sleep(LATENCY / 2)
                    if retry_after is None:
                        limiter.on_success(ticket)
                        break
                    limiter.on_throttled(ticket, retry_after)
            finished += 1
            last = clock.now
        if finished == total:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        for _ in range(workers):
            tg.start_soon(worker)
    throttled = sum(1 for _, ok in server.log if not ok)
    return Run(last, len(server.log), throttled, server, limiter.statistics())


def ideal_time(total: int, budget: int, window: float) -> float:
    """What a client that knew N and W would need: a full budget at the start of each window."""
    return (math.ceil(total / budget) - 1) * window


@pytest.mark.anyio
async def test_fixed_window_uses_the_budget_with_few_429s() -> None:
    """Against 100 requests per 10 s, 3,000 requests use >= 90 % of the admitted rate with <= 2 % 429s."""
    run = await run_requests(3000, 100, 10.0)
    efficiency = ideal_time(3000, 100, 10.0) / run.elapsed
    assert efficiency >= 0.9
    assert run.throttled / run.requests <= 0.02
    assert run.stats.estimated_budget == 100
    assert run.stats.estimated_window is not None
    assert 9.9 <= run.stats.estimated_window <= 10.2
    assert run.stats.admitted == 3000
    assert run.stats.wakeups <= 2 * run.requests  # in line, not polling: about two wake-ups per request


@pytest.mark.anyio
async def test_budget_halved_mid_run_is_learned_within_two_windows() -> None:
    """When N drops from 100 to 50 at t=100 s, two windows later the run uses >= 90 % of the new rate."""
    drop = 100.0

    def halve(server: FixedWindowServer) -> None:
        server.budget = 50

    run = await run_requests(3000, 100, 10.0, change=halve, change_at=drop)
    after = [(t, ok) for t, ok in run.server.log if t >= drop + 2 * 10.0]
    span = after[-1][0] - after[0][0]
    admitted = sum(1 for _, ok in after if ok)
    assert admitted / span >= 0.9 * 50 / 10.0
    assert sum(1 for _, ok in after if not ok) / len(after) <= 0.02
    assert run.throttled / run.requests <= 0.02
    assert run.stats.estimated_budget == 50


@pytest.mark.anyio
async def test_window_already_running_at_start() -> None:
    """A run that starts inside a server window another client half spent still learns N and W."""
    run = await run_requests(3000, 100, 10.0, used=(6.3, 70))
    assert ideal_time(3000, 100, 10.0) / run.elapsed >= 0.9
    assert run.throttled / run.requests <= 0.02
    assert run.stats.estimated_budget == 100


@pytest.mark.anyio
async def test_small_budget_short_window() -> None:
    """A tight limit (20 per second) is learned too: >= 90 % efficiency, few 429s."""
    run = await run_requests(1000, 20, 1.0)
    assert ideal_time(1000, 20, 1.0) / run.elapsed >= 0.9
    assert run.throttled / run.requests <= 0.03
    assert run.stats.estimated_budget == 20


@pytest.mark.anyio
async def test_throttle_pauses_every_worker() -> None:
    """After one 429 with Retry-After 3, no worker gets a slot before 3 s have passed."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(clock=clock.time, sleep=clock.sleep)
    done = anyio.Event()
    started: list[float] = []

    async def other() -> None:
        async with limiter.slot():
            started.append(clock.now)

    async def scenario() -> None:
        async with limiter.slot() as ticket:
            limiter.on_throttled(ticket, 3)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(other)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        tg.start_soon(scenario)
    assert len(started) == 3
    assert min(started) >= 3.0
    assert limiter.statistics().throttled == 1


@pytest.mark.anyio
async def test_retry_after_zero_pauses_briefly() -> None:
    """Retry-After 0 means 'within half a second': a pause of 0.1-0.5 s, not an immediate retry."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(clock=clock.time, sleep=clock.sleep)
    async with limiter.slot() as ticket:
        limiter.on_throttled(ticket, 0)
    pause = limiter.statistics().paused_until - clock.now
    assert 0.1 <= pause <= 0.5


@pytest.mark.anyio
async def test_concurrency_aimd() -> None:
    """A 429 halves concurrency (not below 1); a streak of successes adds one (not above the maximum)."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(max_concurrency=6, initial_concurrency=4, clock=clock.time, sleep=clock.jump)
    for _ in range(4):
        async with limiter.slot() as ticket:
            limiter.on_success(ticket)
    assert limiter.statistics().concurrency == 5
    for _ in range(4):
        async with limiter.slot() as ticket:
            clock.now += 0.01
            limiter.on_throttled(ticket, 1)
        assert limiter.statistics().paused_until > clock.now
    assert limiter.statistics().concurrency == 1
    for _ in range(30):
        async with limiter.slot() as ticket:
            limiter.on_success(ticket)
    assert limiter.statistics().concurrency == 6


@pytest.mark.anyio
async def test_no_rate_limit_before_the_first_throttle() -> None:
    """Until a 429 is seen, the limiter never waits and reports no rate."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(clock=clock.time, sleep=clock.sleep)
    for _ in range(500):
        async with limiter.slot() as ticket:
            limiter.on_success(ticket)
    stats = limiter.statistics()
    assert clock.now == 0.0
    assert stats.rate is None
    assert stats.estimated_budget is None
    assert stats.admitted == 500


@pytest.mark.anyio
async def test_stale_429s_count_once() -> None:
    """429s for requests sent before the pause began belong to the same episode: one cut, one pause."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(max_concurrency=8, initial_concurrency=8, clock=clock.time, sleep=clock.sleep)
    done = anyio.Event()

    async def request() -> None:
        async with limiter.slot() as ticket:
            await clock.sleep(0.5)
            limiter.on_throttled(ticket, 2)

    async def scenario() -> None:
        async with limiter.slot() as ticket:  # the window's first request goes alone
            await clock.sleep(0.01)
            limiter.on_success(ticket)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(request)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        tg.start_soon(scenario)
    stats = limiter.statistics()
    assert stats.throttled == 3
    assert stats.concurrency == 4
    assert 0.51 + 2 - 0.5 <= stats.paused_until <= 0.51 + 2 + 0.5


def test_max_concurrency_must_be_positive() -> None:
    """A limiter with no concurrency at all is refused with a clear message."""
    with pytest.raises(ValueError, match=r"^max_concurrency must be at least 1, got 0$"):
        AdaptiveLimiter(max_concurrency=0)

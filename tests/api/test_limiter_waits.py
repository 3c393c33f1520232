"""How the limiter makes requests wait, on virtual time: on an event, not by polling; feedback by ticket;
a pause longer than a request may wait refuses it at once."""

from __future__ import annotations

import anyio
import pytest

from bulkops.api.limiter import AdaptiveLimiter, Ticket, WaitTooLong
from tests.api.test_limiter import VirtualClock

pytestmark = pytest.mark.anyio


class CountedSleep:
    """The limiter's sleep on a virtual clock, counting every timed wake-up it asks for."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.calls = 0

    async def __call__(self, delay: float) -> None:
        self.calls += 1
        await self.clock.sleep(delay)


async def test_waiters_sleep_on_an_event_while_the_first_request_is_out() -> None:
    """While a window's first request is out for 1 s, the 15 other requests never poll: 15 wake-ups in all."""
    clock = VirtualClock()
    sleep = CountedSleep(clock)
    limiter = AdaptiveLimiter(max_concurrency=16, initial_concurrency=16, clock=clock.time, sleep=sleep)
    done = anyio.Event()
    started: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            started.append(clock.now)
            await clock.sleep(1.0)  # the request itself takes a second

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(request)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        tg.start_soon(scenario)
    assert sleep.calls == 0
    assert limiter.statistics().wakeups == 15
    assert started == [0.0] + [1.0] * 15


async def test_one_at_a_time_past_the_first_windows_count_wakes_on_answers() -> None:
    """Past the first window's count requests go one at a time, and a waiter wakes only when an answer
    comes back or it is its turn: one timed sleep for the pause, a handful of wake-ups in all."""
    clock = VirtualClock()
    sleep = CountedSleep(clock)
    limiter = AdaptiveLimiter(max_concurrency=4, initial_concurrency=4, clock=clock.time, sleep=sleep)
    async with limiter.slot() as first:  # the first window: one request admitted, then a 429
        await clock.jump(0.01)
        limiter.on_success(first)
    async with limiter.slot() as second:
        await clock.jump(0.01)
        limiter.on_throttled(second, 1)
    assert sleep.calls == 0
    done = anyio.Event()
    sent: list[float] = []

    async def request() -> None:
        async with limiter.slot() as ticket:
            sent.append(clock.now)
            await clock.sleep(0.5)
            limiter.on_success(ticket)

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(request)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        tg.start_soon(scenario)
    # the 429 halved concurrency to 2: the head of the line sleeps out the pause, the other waits its turn
    assert sleep.calls == 1
    assert [round(t - sent[0], 3) for t in sent] == [0.0, 0.5, 1.0, 1.5]
    assert limiter.statistics().wakeups <= 6


async def test_feedback_after_the_slot_uses_the_tickets_send_time() -> None:
    """429s reported after the slot, for requests sent before the pause, are one episode: one halving."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(max_concurrency=8, initial_concurrency=8, clock=clock.time, sleep=clock.jump)
    async with limiter.slot() as scout:
        limiter.on_success(scout)
    tickets: list[Ticket] = []
    for _ in range(3):
        async with limiter.slot() as ticket:
            tickets.append(ticket)
    clock.now = 0.5
    for ticket in tickets:  # the answers come back later, outside the slot
        limiter.on_throttled(ticket, 2)
    stats = limiter.statistics()
    assert stats.throttled == 3
    assert stats.concurrency == 4
    assert tickets[0].sent_at == 0.0


async def test_a_pause_longer_than_a_request_may_wait_refuses_it_at_once() -> None:
    """A block of 3600 s refuses the waiting requests and new ones at once, without admitting any."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(max_concurrency=16, initial_concurrency=16, clock=clock.time, sleep=clock.sleep)
    done = anyio.Event()
    refused: list[tuple[float, float, float | None]] = []
    admitted = 0

    inside = anyio.Event()

    async def scout() -> None:
        async with limiter.slot() as ticket:
            inside.set()
            await clock.sleep(0.2)
            limiter.block(ticket, 3600)

    async def request() -> None:
        nonlocal admitted
        try:
            async with limiter.slot(max_wait=300):
                admitted += 1
        except WaitTooLong as exc:
            refused.append((clock.now, exc.wait, exc.retry_after))

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scout)
            await inside.wait()
            for _ in range(7):
                tg.start_soon(request)
        await request()  # one more, after the block
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        tg.start_soon(scenario)
    assert admitted == 0
    assert refused == [(0.2, 3600.0, 3600.0)] * 8
    stats = limiter.statistics()
    assert stats.throttled == 1 and stats.paused_until == pytest.approx(3600.2)


async def test_a_pause_within_the_bound_is_waited_out() -> None:
    """A request that may wait 300 s waits out a 429's 3 s pause and is then admitted."""
    clock = VirtualClock()
    limiter = AdaptiveLimiter(clock=clock.time, sleep=clock.jump)
    async with limiter.slot() as ticket:
        limiter.on_throttled(ticket, 3)
    async with limiter.slot(max_wait=300):
        assert clock.now == 3.0
    with pytest.raises(WaitTooLong):
        async with limiter.slot() as ticket:
            limiter.on_throttled(ticket, 3)
        async with limiter.slot(max_wait=2.5):
            pass

"""One limiter in front of every request: pauses, concurrency and a learned per-window budget.

balena limits each client to N requests per W seconds in a *fixed* window that starts at the first
request the server sees; it never slows answers down, it only answers ``429`` with
``Retry-After = round(ms until the window resets / 1000)`` — so ``0`` means "within half a second".
Neither N nor W is published. The limiter learns both from the ``429``s and then spends the budget
inside each window without crossing its boundary:

* **Pause.** A ``429`` pauses every worker until the estimated reset (``Retry-After: 0``: briefly).
* **Budget.** The successes a window admitted before its first ``429`` are the window's budget B.
  The first window may have begun inside a server window already running: its count is only a hint,
  past which requests go one at a time; B and W are learnt from the next window, after a reset.
* **Window.** A window starts at our first send after a pause; that first request goes alone. Each
  ``429`` brackets the reset to ``now + Retry-After ± 0.5 s``; a window's first request that succeeds
  after a spent window proves the reset lay before it, one that is refused proves it lay after. The
  bracket ``[hold_lo, hold_hi]`` on the time from a window's first send to its reset narrows by
  bisection until it is a few tens of ms wide.
* **Window mode.** Once B is known, each window sends at most B requests, spread over the first quarter
  of the window (so few are in flight if the limit drops), then holds until the learned reset. Every
  few clean windows it probes a slightly larger budget (the step doubles while probes pass); a ``429``
  sets B to what the window admitted, so a lowered limit is learned in one window.
* **Concurrency** adapts by AIMD between 1 and ``max_concurrency``: halved once per throttle episode,
  raised by one after as many successes in a row as the current concurrency.
* **Pacing.** A limit that answers ``Retry-After: 0`` episode after episode is no window but a rate (a
  token bucket): requests are then spaced at the rate measured between those 429s
  (:mod:`bulkops.api.pacing`), until a ``Retry-After`` of seconds shows a window after all.
* **Waiting.** Waiting requests stand in line (:mod:`bulkops.api.waiters`), and nothing polls.
* **Bounds.** ``slot(max_wait=…)`` refuses at once (``WaitTooLong``) a request that would have to wait
  longer than it may; ``block()`` is a ``Retry-After`` too long to wait: every worker pauses until it
  ends, and every request that may not wait that long is refused at once instead of being sent.

``slot()`` yields a ``Ticket``; ``on_success``, ``on_throttled`` and ``block`` take it and do not wait.
The clock and the sleep are injectable, so tests run on virtual time (so does the client's waiting).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio

from bulkops.api.answers import retry_after_seconds  # re-exported: where callers have found it
from bulkops.api.pacing import Episodes, Pacer
from bulkops.api.tickets import LimiterStats, Ticket, WaitTooLong
from bulkops.api.waiters import Waiters
from bulkops.log import get_logger

__all__ = ["AdaptiveLimiter", "LimiterStats", "Ticket", "WaitTooLong", "retry_after_seconds"]

log = get_logger("bulkops.limiter")

ZERO_PAUSE_MIN: Final = 0.1  # Retry-After 0: the reset is under 0.5 s away; wait at least this …
ZERO_PAUSE_DEFAULT: Final = 0.3  # … this long when nothing better is known …
ROUNDING: Final = 0.5  # Retry-After is the wait rounded to whole seconds
CONVERGED: Final = 0.05  # a reset bracket this narrow is used as is (its safe end)
SPREAD: Final = 0.25  # a window's budget is spent evenly over this fraction of it
PROBE_EVERY: Final = 4  # clean windows between two probes of a larger budget, at least …
PROBE_COST: Final = 50  # … and at least this many requests (a failed probe costs a 429 or two)
PROBE_STEP: Final = 0.02  # a first probe asks for 2 % more (at least one request); doubles while they pass


class AdaptiveLimiter:
    """Shared by every worker of a run:
    ``async with limiter.slot() as ticket: send; on_success(ticket) / on_throttled(ticket, retry_after)``."""

    def __init__(
        self,
        *,
        max_concurrency: int = 16,
        initial_concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._clock = clock
        self._sleep = sleep
        self._max = max_concurrency
        self._concurrency = max(1, min(initial_concurrency, max_concurrency))
        self._capacity: anyio.CapacityLimiter | None = None
        self._streak = 0
        self._in_flight = 0
        self._throttled = 0
        self._admitted = 0
        self._paused_until = 0.0
        self._pause_retry_after: float | None = None  # the Retry-After behind the latest pause
        self._waiters = Waiters()
        self._episode_start = float("-inf")  # when the latest throttle episode began
        self._latency = 0.0  # moving average of the time spent in a slot
        # the current window (started by our first send after a pause) and the one before it
        self._ws: float | None = None
        self._ws_prev: float | None = None
        self._spent = 0
        self._window_admitted = 0
        self._window_throttled = False
        self._window_aligned = False  # known to have started the server's window
        self._windows = 0
        self._tentative: int | None = None  # what the first (unaligned) window admitted
        self._allowance = 0
        self._prev_exhausted = False
        self._closed_ws: float | None = None  # window closed by the latest episode
        self._generation = 0  # bumped at every window start
        self._scout_pending = False  # a window's first request is alone until it is answered
        # learned: budget per window, and a bracket on the time from a window's first send to its reset
        self._budget: int | None = None
        self._budget_exact = False
        self._clean_windows = 0
        self._probe_step = PROBE_STEP
        self._hold_lo = 0.0
        self._hold_hi = float("inf")
        self._episodes = Episodes()  # a continuous limit (a token bucket) is paced instead
        self._pacer: Pacer | None = None

    # --- waiting -----------------------------------------------------------------------------------

    def now(self) -> float:
        """The limiter's clock (``time.monotonic`` unless another was injected)."""
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the limiter's clock."""
        await self._sleep(seconds)

    @asynccontextmanager
    async def slot(self, *, max_wait: float = math.inf) -> AsyncIterator[Ticket]:
        """Wait for concurrency, a pause to end and room in the window; then the caller may send.
        A request that would have to wait past ``max_wait`` seconds for a time is refused with
        ``WaitTooLong`` instead (a wait for an answer in flight is bounded by that request's timeout)."""
        if self._capacity is None:
            self._capacity = anyio.CapacityLimiter(self._concurrency)
        capacity, borrower = self._capacity, object()  # one task may hold several slots
        limit = self._clock() + max_wait
        await capacity.acquire_on_behalf_of(borrower)
        try:
            waiter = self._waiters.join()
            try:
                while True:
                    now = self._clock()
                    if self._paused_until > max(now, limit):
                        raise WaitTooLong(self._paused_until - now, self._pause_retry_after)
                    if not self._waiters.is_head(waiter):
                        await self._waiters.wait_turn(waiter)
                        continue
                    wait = self._admit(now)
                    if wait == 0.0:
                        break
                    if wait is None:  # until a request in flight is answered
                        await self._waiters.wait_answer()
                    elif now + wait > limit:
                        raise WaitTooLong(wait, None)
                    else:
                        await self._sleep(wait)
                        self._waiters.wakeups += 1
            finally:
                self._waiters.leave(waiter)
            scout = self._spent == 1
            generation = self._generation
            self._in_flight += 1
            try:
                yield Ticket(now)
            finally:
                self._in_flight -= 1
                if scout and generation == self._generation:
                    self._scout_pending = False
                took = self._clock() - now
                self._latency = took if self._latency == 0 else self._latency + 0.2 * (took - self._latency)
                self._waiters.released()
        finally:
            capacity.release_on_behalf_of(borrower)

    def _admit(self, now: float) -> float | None:
        """0 and count the send when one may go now; else how long to wait before asking again, or
        None to wait until a request in flight is answered."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._scout_pending:
            return None
        if self._pacer is not None:
            wait = self._pacer.wait(now)
            if wait > 0:
                return wait
            self._pacer.sent(now)
        elif self._ws is None:
            self._start_window(now)
        elif self._budget is None and self._tentative is not None and self._spent >= self._tentative:
            if self._in_flight > 0:  # past the first window's count: one at a time, few 429s at the edge
                return None
        elif self._budget is not None:
            end = self._ws + self._hold()
            if now >= end:
                self._start_window(now)
            elif self._spent >= self._allowance:
                return end - now
            else:  # spread the budget over the first part of the window: few in flight at its edge
                due = self._ws + self._spent * self._hold() * SPREAD / self._allowance
                if now < due:
                    return due - now
        self._spent += 1
        return 0.0

    def _start_window(self, now: float) -> None:
        if self._ws is not None and self._budget is not None and not self._window_throttled:
            self._close_clean_window()
        self._ws_prev = self._ws if self._ws is not None else self._closed_ws
        self._ws = now
        self._generation += 1
        self._scout_pending = True
        # the first window may have begun inside a server window already running (an earlier process,
        # another client); every later one starts after a reset was seen or waited for
        self._window_aligned = self._windows > 0
        self._windows += 1
        self._spent = 0
        self._window_admitted = 0
        self._window_throttled = False
        budget = self._budget
        if budget is None:
            self._allowance = 0
        elif self._clean_windows >= max(PROBE_EVERY, math.ceil(PROBE_COST / budget)):
            self._allowance = budget + max(1, round(budget * self._probe_step))
        else:
            self._allowance = budget

    def _close_clean_window(self) -> None:
        """A window ended without a 429: if it spent its allowance the budget may be larger."""
        assert self._budget is not None
        exhausted = self._spent >= self._allowance
        self._prev_exhausted = exhausted and self._budget_exact
        if not exhausted:
            return
        if self._allowance > self._budget:
            # the probe passed: keep the larger budget and probe again next window, twice as far
            self._budget = self._allowance
            self._budget_exact = False
            self._probe_step *= 2
        else:
            self._clean_windows += 1

    def _hold(self) -> float:
        """Seconds from a window's first send to the moment the next window may start."""
        lo, hi = self._hold_lo, self._hold_hi
        if hi == float("inf"):
            return lo + 2 * ROUNDING
        if hi - lo <= CONVERGED:
            return hi
        return (lo + hi) / 2

    # --- feedback ----------------------------------------------------------------------------------

    def on_success(self, ticket: Ticket) -> None:
        """The request was admitted (any answer but 429)."""
        sent = ticket.sent_at
        self._admitted += 1
        self._episodes.admitted()
        self._streak += 1
        if self._streak >= self._concurrency and self._concurrency < self._max:
            self._set_concurrency(self._concurrency + 1)
        if sent < self._episode_start:
            # an answer from the window the latest episode closed: that window admitted one more
            if self._budget is not None and self._closed_ws is not None and sent >= self._closed_ws:
                self._budget += 1
            return
        if self._ws is None or sent < self._ws:
            return
        if self._window_admitted == 0 and self._prev_exhausted and self._ws_prev is not None:
            # the previous window was spent, yet this one's first send got in: its reset was earlier
            self._hold_hi = max(min(self._hold_hi, self._ws - self._ws_prev), self._hold_lo)
        self._window_admitted += 1

    def on_throttled(self, ticket: Ticket, retry_after: float) -> None:
        """The request got 429 with ``Retry-After`` seconds; every worker pauses."""
        now = self._clock()
        sent = ticket.sent_at
        ra = max(0.0, retry_after)
        self._throttled += 1
        if sent < self._episode_start:
            return  # sent before this episode began: same window, already handled
        self._episode_start = now
        self._pause_retry_after = ra
        self._streak = 0
        self._set_concurrency(max(1, self._concurrency // 2))
        rate = self._episodes.began(now, ra, spent=self._ws is None or self._window_admitted > 0)
        if self._pacer is not None and ra < 1:
            self._pacer.throttled(self._episodes.since_last(now))
            self._pause_until(now + ZERO_PAUSE_MIN)
            log.debug("bulkops.limiter.paced", rate=round(self._pacer.rate, 2))
            return
        self._pacer = None  # a Retry-After of seconds: a window after all
        if rate is not None:
            self._forget_windows()
            self._pacer = Pacer(rate, now)
            self._pause_until(now + ZERO_PAUSE_MIN)
            log.info("bulkops.limiter.pacing", rate=round(self._pacer.rate, 2))
            return
        reset = now + ra
        window: float | None = None
        if self._ws is not None and self._window_admitted > 0 and not self._window_aligned:
            self._tentative = self._window_admitted  # the first window's count is only a hint
        elif self._ws is not None and self._window_admitted > 0:
            window = self._ws  # a window we started has spent its budget
            first = self._budget is None
            self._budget = self._window_admitted
            self._budget_exact = True
            self._clean_windows = PROBE_EVERY if first else 0  # the first sample may be short: probe
            self._probe_step = PROBE_STEP
        elif self._ws is not None and self._ws_prev is not None and self._prev_exhausted:
            window = self._ws_prev  # resumed before the spent previous window's reset
            self._hold_lo = max(self._hold_lo, self._ws - self._ws_prev)
        lo = max(now + ZERO_PAUSE_MIN, reset - ROUNDING)
        hi = max(lo, reset + ROUNDING)
        if window is not None:
            self._learn_reset(reset, window)
        if window is not None and self._budget is not None:
            resume = min(max(window + self._hold(), lo), hi)
        else:
            resume = reset if ra > 0 else now + ZERO_PAUSE_DEFAULT
        self._pause_until(resume)
        self._closed_ws = window
        self._ws = None
        self._window_throttled = True
        self._prev_exhausted = True
        log.debug(
            "bulkops.limiter.throttled", retry_after=ra, pause=round(self._paused_until - now, 3),
            concurrency=self._concurrency, budget=self._budget, window=self._window_estimate(),
        )

    def block(self, ticket: Ticket, retry_after: float) -> None:
        """The request got 429 with a ``Retry-After`` too long to wait: every worker pauses until it
        ends, and ``slot()`` refuses at once each request that may not wait that long. Nothing is learnt
        from it (a block is not the window's reset); the next window starts afresh."""
        now = self._clock()
        ra = max(0.0, retry_after)
        self._throttled += 1
        self._episode_start = now
        self._streak = 0
        if now + ra > self._paused_until:
            self._paused_until = now + ra
            self._pause_retry_after = ra
            self._waiters.pause_changed()
        self._ws = self._ws_prev = self._closed_ws = None
        self._window_throttled = True
        self._prev_exhausted = False
        self._pacer = None
        self._episodes.reset()
        log.info("bulkops.limiter.blocked", retry_after=ra, sent_at=round(ticket.sent_at, 3))

    def _pause_until(self, resume: float) -> None:
        if resume > self._paused_until:
            self._paused_until = resume
            self._waiters.pause_changed()

    def _forget_windows(self) -> None:
        """The limit is no window: start over, should it turn out to be one after all."""
        self._ws = self._ws_prev = self._closed_ws = None
        self._budget, self._budget_exact, self._tentative = None, False, None
        self._hold_lo, self._hold_hi = 0.0, float("inf")
        self._windows = self._clean_windows = 0
        self._scout_pending = self._prev_exhausted = False

    def _learn_reset(self, reset: float, window: float) -> None:
        """The server's reset lies within ``reset ± 0.5 s``: narrow the bracket on the hold time."""
        if window >= reset:
            return
        lo = reset - ROUNDING - self._latency - window
        hi = reset + ROUNDING - window
        new_lo, new_hi = max(self._hold_lo, lo), min(self._hold_hi, hi)
        if new_lo > new_hi:  # the window itself changed: start over from this observation
            new_lo, new_hi = max(0.0, lo), hi
        self._hold_lo, self._hold_hi = max(0.0, new_lo), new_hi

    def _set_concurrency(self, value: int) -> None:
        self._concurrency = value
        if self._capacity is not None:
            self._capacity.total_tokens = value

    def _window_estimate(self) -> float | None:
        if self._budget is None or self._hold_hi == float("inf"):
            return None
        return round(self._hold(), 3)

    def statistics(self) -> LimiterStats:
        window = self._window_estimate()
        rate = None if self._budget is None or not window else self._budget / window
        if self._pacer is not None:
            rate = self._pacer.rate
        return LimiterStats(
            rate=rate,
            concurrency=self._concurrency,
            in_flight=self._in_flight,
            throttled=self._throttled,
            admitted=self._admitted,
            paused_until=self._paused_until,
            estimated_budget=self._budget,
            estimated_window=window,
            wakeups=self._waiters.wakeups,
        )

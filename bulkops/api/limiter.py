"""One limiter in front of every request: pauses, concurrency and a learned per-window budget.

balena limits each client to N requests per W seconds in a *fixed* window that starts at the first
request the server sees; it never slows answers down, it only answers ``429`` with
``Retry-After = round(ms until the window resets / 1000)`` — so ``0`` means "within half a second".
Neither N nor W is published. The limiter learns both from the ``429``s and then spends the budget
inside each window without crossing its boundary:

* **Pause.** A ``429`` pauses every worker (not just the one that got it) until the estimated reset.
  ``Retry-After: 0`` pauses a short, bounded time instead of retrying at once.
* **Budget.** The successes a window admitted before its first ``429`` are the window's budget B.
  The very first window may have begun inside a server window already running (an earlier process,
  another client): its count is only a hint, past which requests go one at a time; B and W are learnt
  from the next window, which starts right after a reset.
* **Window.** A window starts at our first send after a pause; that first request goes alone. Each
  ``429`` brackets the reset to ``now + Retry-After ± 0.5 s``; a window's first request that succeeds
  after a spent window proves the reset lay before it, one that is refused proves it lay after. The
  bracket ``[hold_lo, hold_hi]`` on the time from a window's first send to its reset narrows by
  bisection until it is a few tens of ms wide.
* **Window mode.** Once B is known, each window sends at most B requests, spread over the first half
  of the window (so few are in flight if the limit drops), then holds until the learned reset. Every
  few clean windows it probes a slightly larger budget (the step doubles while probes pass); a ``429``
  sets B to what the window admitted, so a lowered limit is learned in one window.
* **Concurrency** adapts by AIMD between 1 and ``max_concurrency``: halved once per throttle episode,
  raised by one after as many successes in a row as the current concurrency.

``on_success()`` and ``on_throttled()`` are plain functions called inside ``slot()``; only ``slot()``
waits. The clock and the sleep function are injectable, so tests run on virtual time.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import anyio

from bulkops.log import get_logger

__all__ = ["AdaptiveLimiter", "LimiterStats", "retry_after_seconds"]

log = get_logger("bulkops.limiter")

ZERO_PAUSE_MIN: Final = 0.1  # Retry-After 0: the reset is under 0.5 s away; wait at least this …
ZERO_PAUSE_DEFAULT: Final = 0.3  # … this long when nothing better is known …
ROUNDING: Final = 0.5  # Retry-After is the wait rounded to whole seconds
CONVERGED: Final = 0.05  # a reset bracket this narrow is used as is (its safe end)
SPREAD: Final = 0.5  # a window's budget is spent evenly over this fraction of it
PROBE_EVERY: Final = 4  # clean windows between two probes of a larger budget, at least …
PROBE_COST: Final = 50  # … and at least this many requests (a failed probe costs a 429 or two)
PROBE_STEP: Final = 0.02  # a first probe asks for 2 % more (at least one request); doubles while they pass

_sent_at: contextvars.ContextVar[float] = contextvars.ContextVar("bulkops_limiter_sent_at")


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of the limiter. ``rate`` is None until the first throttle (no rate limit yet)."""

    rate: float | None
    concurrency: int
    in_flight: int
    throttled: int
    admitted: int
    paused_until: float
    estimated_budget: int | None
    estimated_window: float | None


class AdaptiveLimiter:
    """Shared by every worker of a run: ``async with limiter.slot(): send; on_success()/on_throttled()``."""

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

    # --- waiting -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for concurrency, a pause to end and room in the window; then the caller may send."""
        if self._capacity is None:
            self._capacity = anyio.CapacityLimiter(self._concurrency)
        capacity, borrower = self._capacity, object()  # one task may hold several slots
        await capacity.acquire_on_behalf_of(borrower)
        try:
            while True:
                now = self._clock()
                wait = self._admit(now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            scout = self._spent == 1
            generation = self._generation
            self._in_flight += 1
            token = _sent_at.set(now)
            try:
                yield
            finally:
                _sent_at.reset(token)
                self._in_flight -= 1
                if scout and generation == self._generation:
                    self._scout_pending = False
                took = self._clock() - now
                self._latency = took if self._latency == 0 else self._latency + 0.2 * (took - self._latency)
        finally:
            capacity.release_on_behalf_of(borrower)

    def _admit(self, now: float) -> float:
        """0 and count the send when one may go now, else how long to wait before asking again."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._scout_pending:
            return max(0.001, self._latency / 2)
        if self._ws is None:
            self._start_window(now)
        elif self._budget is None and self._tentative is not None and self._spent >= self._tentative:
            if self._in_flight > 0:  # past the first window's count: one at a time, few 429s at the edge
                return max(0.001, self._latency / 2)
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

    def on_success(self) -> None:
        """The request was admitted (any answer but 429)."""
        now = self._clock()
        sent = _sent_at.get(now)
        self._admitted += 1
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

    def on_throttled(self, retry_after: float) -> None:
        """The request got 429 with ``Retry-After`` seconds; every worker pauses."""
        now = self._clock()
        sent = _sent_at.get(now)
        ra = max(0.0, retry_after)
        self._throttled += 1
        if sent < self._episode_start:
            return  # sent before this episode began: same window, already handled
        self._episode_start = now
        self._streak = 0
        self._set_concurrency(max(1, self._concurrency // 2))
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
        self._paused_until = max(self._paused_until, resume)
        self._closed_ws = window
        self._ws = None
        self._window_throttled = True
        self._prev_exhausted = True
        log.debug(
            "bulkops.limiter.throttled", retry_after=ra, pause=round(self._paused_until - now, 3),
            concurrency=self._concurrency, budget=self._budget, window=self._window_estimate(),
        )

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
        return LimiterStats(
            rate=rate,
            concurrency=self._concurrency,
            in_flight=self._in_flight,
            throttled=self._throttled,
            admitted=self._admitted,
            paused_until=self._paused_until,
            estimated_budget=self._budget,
            estimated_window=window,
        )


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float:
    """``Retry-After`` as seconds: a number (``0`` allowed) or an HTTP date; missing or unreadable → 1."""
    if value is None:
        return 1.0
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return 1.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return 1.0
    return max(0.0, seconds)

"""A continuous limit: requests paced at a learnt rate instead of a window's budget.

balena's own limit is a fixed window, and the limiter models one. A proxy or gateway in front of the
API may limit by rate instead (a token bucket, a sliding window). Such a limit answers ``429`` with
``Retry-After: 0`` again and again, because the next token is only milliseconds away. A window budget
learnt from it would be the handful of requests that passed between two 429s, and every burst would
end in another 429.

:class:`Episodes` watches the throttle episodes. When ``ZERO_EPISODES`` of them in a row said
``Retry-After: 0``, each after requests got through, the limit is continuous. Its rate is what got
through between the first and the last of them, divided by the time between them. The
measure is exact for a token bucket, which is empty at both ends. A fixed window gives ``0`` only for
a 429 in the last half second before its reset: to a window's first request sent just too early,
which is not counted, or to a window spent at its very end. Two of those in a row mean the client
cannot spend a window's budget any faster than evenly, so pacing costs nothing there.

:class:`Pacer` then spaces sends ``1/rate`` apart. After a 429 it paces ``RATE_MARGIN`` below the
rate measured since the last one, so the bucket refills a little. While it holds requests back, it
raises the rate by ``RATE_RISE`` per second, so it finds a raised limit and crosses the true rate
again only after a few seconds. Then the refill is spent and one 429 or two start the next round.
"""

from __future__ import annotations

from typing import Final

ZERO_EPISODES: Final = 2  # throttle episodes with Retry-After 0 in a row that make a limit continuous
RATE_MARGIN: Final = 0.03  # after a 429, pace this much under the rate measured since the one before
RATE_RISE: Final = 0.03  # while requests are held back, the rate rises by this fraction per second
CATCH_UP: Final = 0.05  # seconds of sends a pacer woken late may catch up on (a burst of rate × this)
MIN_SPAN: Final = 0.05  # seconds between two episodes below which no rate is measured


class Episodes:
    """The latest throttle episodes in a row with ``Retry-After: 0``: when each began, and how many
    answers had got through by then. (An answer in flight when an episode begins is counted after it;
    as many are in flight at its start as at its end, so the rate between two is right.)"""

    def __init__(self) -> None:
        self._zeros: list[tuple[float, int]] = []  # (start, admitted before it) of the zero run
        self._admitted = 0

    def admitted(self) -> None:
        """A request got through."""
        self._admitted += 1

    def began(self, now: float, retry_after: float, *, spent: bool = True) -> float | None:
        """A throttle episode began; the rate of a continuous limit when this one completes the
        pattern, else None. ``spent``: requests got through since the pause before (a window's first
        request refused is no sign of a rate: it went just before a window's reset)."""
        if retry_after >= 1:
            self._zeros.clear()
        elif spent and (not self._zeros or self._admitted > self._zeros[-1][1]):
            self._zeros.append((now, self._admitted))
            del self._zeros[:-ZERO_EPISODES]
        return self.rate(now)

    def rate(self, now: float) -> float | None:
        """Admitted per second over the zero run, once it is ``ZERO_EPISODES`` long."""
        return self._since(now, ZERO_EPISODES)

    def since_last(self, now: float) -> float | None:
        """Admitted per second between the two latest episodes (for a pacer already running)."""
        return self._since(now, 2)

    def _since(self, now: float, episodes: int) -> float | None:
        if len(self._zeros) < episodes:
            return None
        start, before = self._zeros[-episodes]
        span = now - start
        return None if span < MIN_SPAN else (self._admitted - before) / span

    def reset(self) -> None:
        self._zeros.clear()


class Pacer:
    """Sends spaced ``1/rate`` apart; ``rate`` in requests per second."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = max(rate * (1 - RATE_MARGIN), 0.1)
        self._next = now
        self._held = False

    def wait(self, now: float) -> float:
        """Seconds until the next send may go (0: now)."""
        wait = self._next - now
        if wait > 0:
            self._held = True
            return wait
        return 0.0

    def sent(self, now: float) -> None:
        """A send went at ``now``: book the next. One that was held back raises the rate a little
        (``RATE_RISE`` per second of sends held back)."""
        if self._held:
            self.rate *= 1 + RATE_RISE / self.rate
            self._held = False
        # a send that woke late keeps its place (up to CATCH_UP behind), so late wake-ups cost no rate
        self._next = max(now - CATCH_UP, self._next) + 1 / self.rate

    def throttled(self, measured: float | None) -> None:
        """A 429: pace under what got through since the one before (at most halving the rate)."""
        target = measured if measured is not None else self.rate
        self.rate = max(self.rate / 2, min(self.rate, target) * (1 - RATE_MARGIN), 0.1)

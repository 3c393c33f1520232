"""What the limiter hands out and tells: a ticket per admitted request, a refusal to wait, a snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted request: when it was let through. Feedback about its answer takes it."""

    sent_at: float


class WaitTooLong(Exception):
    """Raised by ``slot(max_wait=…)`` instead of waiting: the request could go only ``wait`` seconds from
    now; ``retry_after`` is the ``Retry-After`` behind the pause in force (None if it is not a pause)."""

    def __init__(self, wait: float, retry_after: float | None) -> None:
        super().__init__(f"the limiter would hold this request {wait:.3f} s")
        self.wait = wait
        self.retry_after = retry_after


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
    wakeups: int = 0  # times a waiting request woke up to check again

"""A continuous limit (a token bucket) on virtual time: the limiter paces at its rate, few 429s."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from bulkops.api import limiter, pacing
from bulkops.api.pacing import Episodes, Pacer
from tests.api.test_limiter import FixedWindowServer, VirtualClock, run_requests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class TokenBucketServer:
    """``rate`` tokens a second into a bucket of ``burst``, full at the start; over it ``429`` with
    ``Retry-After`` = the wait for one token, rounded (so 0 for any rate above 2 a second)."""

    clock: VirtualClock
    rate: float
    burst: int
    tokens: float = -1.0
    updated: float = 0.0
    log: list[tuple[float, bool]] = field(default_factory=list)

    def handle(self) -> int | None:
        now = self.clock.now
        if self.tokens < 0:
            self.tokens = float(self.burst)
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        admitted = self.tokens >= 1.0
        self.log.append((now, admitted))
        if admitted:
            self.tokens -= 1.0
            return None
        return math.floor((1.0 - self.tokens) / self.rate + 0.5)


def bucket(rate: float, burst: int):  # type: ignore[no-untyped-def]
    return lambda clock: TokenBucketServer(clock, rate, burst)


def floor(total: int, rate: float, burst: int) -> float:
    return max(0, total - burst) / rate


@pytest.mark.anyio
async def test_token_bucket_is_paced_at_its_rate_with_few_429s() -> None:
    """Against 100 a second and a burst of 100, 5,000 requests reach >= 97 % of the floor, <= 1 % 429s."""
    run = await run_requests(5000, 0, 0.0, make_server=bucket(100.0, 100))
    assert run.stats.admitted == 5000
    assert run.throttled / run.requests <= 0.01, (run.throttled, run.requests)
    assert floor(5000, 100.0, 100) / run.elapsed >= 0.97, run.elapsed
    assert run.stats.rate is not None
    assert 90 <= run.stats.rate <= 115  # the rate paced at the end: under and over 100 by turns
    assert run.stats.estimated_budget is None  # no window was taken for it


@pytest.mark.anyio
async def test_without_pacing_a_bucket_costs_many_429s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run with the window model alone (pacing never engaged) spends well over 1 % on 429s:
    the test above measures the pacing, not the bucket's leniency."""
    monkeypatch.setattr(pacing, "ZERO_EPISODES", 10**9)
    run = await run_requests(5000, 0, 0.0, make_server=bucket(100.0, 100))
    assert run.throttled / run.requests > 0.02


@pytest.mark.anyio
async def test_a_raised_rate_is_found() -> None:
    """The bucket's rate doubles at 20 s: the rate paced at the end is well above the old one."""

    def double(server: TokenBucketServer) -> None:
        server.rate = 200.0

    run = await run_requests(8000, 0, 0.0, make_server=bucket(100.0, 100), change=double, change_at=20.0)
    assert run.stats.rate is not None and run.stats.rate > 130
    assert run.throttled / run.requests <= 0.01


@pytest.mark.anyio
async def test_a_window_after_a_bucket_is_learnt_again() -> None:
    """A bucket until 20 s, then a fixed window of 100 per 10 s: the first Retry-After of seconds ends
    the pacing, and the window's budget is learnt."""

    def to_window(server: TokenBucketServer) -> None:
        if not isinstance(server.handle.__self__, FixedWindowServer):  # type: ignore[attr-defined]
            window = FixedWindowServer(server.clock, 100, 10.0, log=server.log)
            server.handle = window.handle  # type: ignore[method-assign]

    run = await run_requests(4000, 0, 0.0, make_server=bucket(100.0, 100), change=to_window, change_at=20.0)
    assert run.stats.estimated_budget == 100
    after = [ok for t, ok in run.server.log if t >= 40.0]
    assert after.count(False) / len(after) <= 0.02


@pytest.mark.anyio
async def test_a_fixed_window_is_never_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """balena's fixed window, spent from the start of each window, never looks continuous: no pacer is
    ever made, not even for a while."""
    made: list[float] = []

    class Watched(Pacer):
        def __init__(self, rate: float, now: float) -> None:
            made.append(now)
            super().__init__(rate, now)

    monkeypatch.setattr(limiter, "Pacer", Watched)
    run = await run_requests(3000, 100, 10.0)
    assert made == []
    assert run.stats.estimated_budget == 100
    assert run.stats.rate is not None and run.stats.estimated_window is not None
    assert run.stats.rate == pytest.approx(100 / run.stats.estimated_window)


def test_refused_window_first_requests_are_no_sign_of_a_rate() -> None:
    """A window's first request refused (sent just before the reset) says Retry-After 0 too, but only
    episodes after requests got through make the pattern."""
    episodes = Episodes()
    for _ in range(30):
        episodes.admitted()
    assert episodes.began(1.0, 0) is None  # a window spent at its end: one so far
    for t in (1.3, 1.6, 1.9):
        assert episodes.began(t, 0, spent=False) is None  # refused first requests
    assert episodes.began(2.2, 0) is None  # nothing got through since 1.0: the same round
    for _ in range(30):
        episodes.admitted()
    assert episodes.began(2.5, 0) == pytest.approx(30 / 1.5)


def test_a_retry_after_of_seconds_breaks_the_run() -> None:
    """A Retry-After of seconds is a window's: the run of zeros starts over."""
    episodes = Episodes()
    episodes.admitted()
    episodes.began(0.0, 0)
    episodes.admitted()
    assert episodes.began(2.0, 3) is None
    episodes.admitted()
    assert episodes.began(3.0, 0) is None
    episodes.admitted()
    assert episodes.began(4.0, 0) == pytest.approx(1.0)


def test_pacer_spaces_sends_and_rises_only_when_holding() -> None:
    pacer = Pacer(100.0, now=0.0)
    assert pacer.rate == pytest.approx(97.0)
    assert pacer.wait(0.0) == 0.0
    pacer.sent(0.0)
    assert pacer.wait(0.0) == pytest.approx(1 / 97.0)
    pacer.sent(1 / 97.0)
    assert pacer.rate == pytest.approx(97.0 * (1 + pacer_rise() / 97.0))
    idle = pacer.rate
    at_once = 0
    while pacer.wait(5.0) == 0.0:  # after idling: at most CATCH_UP's worth at once, not the idle time's
        pacer.sent(5.0)
        at_once += 1
    assert pacer.rate == idle  # nothing waited: no rise
    assert at_once == math.ceil(pacing.CATCH_UP * idle)
    late = 5.0 + pacer.wait(5.0) + 0.01  # woke 10 ms late …
    pacer.sent(late)
    assert pacer.wait(late) == pytest.approx(1 / pacer.rate - 0.01)  # … and keeps its place
    before = pacer.rate
    pacer.throttled(50.0)
    assert pacer.rate == pytest.approx(before / 2)  # at most halved
    pacer.throttled(48.0)
    assert pacer.rate == pytest.approx(48.0 * (1 - pacing.RATE_MARGIN))  # under what got through


def pacer_rise() -> float:
    return pacing.RATE_RISE

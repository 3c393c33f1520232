"""The simulator's rate limiter: fixed-window math, blocks, buckets, policy changes, the middleware."""

from __future__ import annotations

import aiohttp
import pytest

from bulkops.sim.ratelimit import (
    ACCEPTED_FORMS,
    FixedWindow,
    NoLimit,
    RateLimiter,
    TokenBucket,
    parse_spec,
    retry_after_seconds,
)
from bulkops.sim.requestlog import RequestLog

from .conftest import FakeClock, TinyApi, serve


def test_retry_after_rounds_half_up_and_can_be_zero() -> None:
    """Retry-After is round(ms / 1000) with halves rounded up, so 499 ms gives 0."""
    assert [retry_after_seconds(ms) for ms in (0, 1, 499, 500, 1499, 1500, 9999.9)] == [0, 0, 0, 1, 1, 2, 10]


def test_fixed_window_starts_at_first_request_and_counts_to_its_end() -> None:
    """The window starts at a key's first request; over budget the answer says how long until it resets."""
    clock = FakeClock(100.0)
    limiter = RateLimiter("fixed:3/10s", clock=clock)
    clock.advance(2.0)  # the window starts here, not when the limiter was made
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, True]
    clock.advance(9.4)  # 0.6 s left
    refused = limiter.check("a")
    assert (refused.allowed, refused.retry_after) == (False, 1)
    clock.advance(0.2)  # 0.4 s left: rounds to 0
    assert limiter.check("a").retry_after == 0
    clock.advance(0.4)  # window over: a fresh one
    assert limiter.check("a").allowed


def test_fixed_window_can_round_retry_after_up() -> None:
    """With retry_after=ceil the Retry-After is rounded up, so 0.4 s left gives 1, never 0 mid-window."""
    clock = FakeClock()
    limiter = RateLimiter("fixed:1/10s,retry_after=ceil", clock=clock)
    assert limiter.check("a").allowed
    clock.advance(9.6)  # 0.4 s left
    assert (limiter.check("a").allowed, limiter.check("a").retry_after) == (False, 1)
    clock.advance(0.4)
    assert limiter.check("a").allowed
    assert limiter.statistics().spec == "fixed:1/10s,retry_after=ceil"
    with pytest.raises(ValueError) as err:
        parse_spec("fixed:1/10s,retry_after=floor")
    assert str(err.value) == (
        "rate limit spec 'fixed:1/10s,retry_after=floor': cannot read 'fixed:1/10s,retry_after=floor'; "
        + ACCEPTED_FORMS
    )


def test_window_is_keyed_per_client_and_token() -> None:
    """Each client key has its own window."""
    limiter = RateLimiter("fixed:1/10s", clock=FakeClock())
    assert limiter.check("127.0.0.1/aaa").allowed
    assert not limiter.check("127.0.0.1/aaa").allowed
    assert limiter.check("127.0.0.1/bbb").allowed
    assert limiter.check("127.0.0.2/aaa").allowed


def test_block_period_follows_a_spent_budget() -> None:
    """With block=60s the first request over budget blocks the key; Retry-After counts to the block's end."""
    clock = FakeClock()
    limiter = RateLimiter("fixed:2/10s,block=60s", clock=clock)
    limiter.check("k")
    limiter.check("k")
    assert limiter.check("k").retry_after == 60
    clock.advance(30.0)  # the 10 s window is long over, the block is not
    assert limiter.check("k").retry_after == 30
    clock.advance(30.0)
    assert limiter.check("k").allowed


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """A bucket starts full (burst), then refills at its rate."""
    clock = FakeClock()
    limiter = RateLimiter("bucket:2/s,burst=3", clock=clock)
    assert [limiter.check("k").allowed for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one token back
    assert [limiter.check("k").allowed for _ in range(2)] == [True, False]
    assert limiter.check("k").ms_before_next == pytest.approx(500.0)


def test_set_policy_mid_run_starts_fresh_windows() -> None:
    """Replacing the policy applies at once, with fresh windows for everyone."""
    clock = FakeClock()
    limiter = RateLimiter("fixed:1/10s", clock=clock)
    limiter.check("k")
    assert not limiter.check("k").allowed
    limiter.set_policy(FixedWindow(2, 10.0))
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]
    limiter.set_policy("none")
    assert limiter.policy == NoLimit()
    assert all(limiter.check("k").allowed for _ in range(100))


def test_schedule_halves_the_budget_later() -> None:
    """schedule(at, policy) switches at that time; a SPEC schedule does the same from when it is applied."""
    clock = FakeClock()
    limiter = RateLimiter("fixed:4/10s", clock=clock)
    limiter.schedule(30.0, "fixed:2/10s")
    assert sum(limiter.check("k").allowed for _ in range(6)) == 4
    clock.advance(30.0)
    assert limiter.policy == FixedWindow(2, 10.0)
    assert sum(limiter.check("k").allowed for _ in range(6)) == 2

    limiter.set_policy("fixed:4/10s@0,bucket:1/s,burst=1@5s")
    assert limiter.statistics().spec == "fixed:4/10s"
    clock.advance(5.0)
    assert limiter.statistics().spec == "bucket:1/s,burst=1"
    assert limiter.statistics().schedule == "fixed:4/10s@0s,bucket:1/s,burst=1@5s"


def test_parse_spec_forms() -> None:
    """Every documented SPEC form parses to its policy."""
    assert parse_spec("none") == ((0.0, NoLimit()),)
    assert parse_spec("fixed:1000/10s") == ((0.0, FixedWindow(1000, 10.0)),)
    assert parse_spec("fixed:100/10s,block=60s") == ((0.0, FixedWindow(100, 10.0, 60.0)),)
    assert parse_spec("bucket:50/s,burst=100") == ((0.0, TokenBucket(50.0, 100)),)
    assert parse_spec("fixed:5/500ms") == ((0.0, FixedWindow(5, 0.5)),)
    assert parse_spec("fixed:1000/10s@0,fixed:500/10s@30") == (
        (0.0, FixedWindow(1000, 10.0)), (30.0, FixedWindow(500, 10.0)))


@pytest.mark.parametrize(("spec", "problem"), [
    ("fast", "cannot read 'fast'"),
    ("fixed:abc", "cannot read 'fixed:abc'"),
    ("bucket:50/s", "a bucket needs burst=<N>, N >= 1"),
    ("fixed:100/10s,block=x", "bad duration 'x'"),
    ("fixed:0/10s", "the rate must be positive"),
    ("fixed:10/10s@0,fixed:5/10s", "every step of a schedule needs '@<start>'"),
])
def test_parse_errors_name_the_spec_and_the_accepted_forms(spec: str, problem: str) -> None:
    """A bad SPEC is a ValueError naming the SPEC, the problem and every accepted form."""
    with pytest.raises(ValueError, match="rate limit spec") as info:
        parse_spec(spec)
    assert str(info.value) == f"rate limit spec {spec!r}: {problem}; {ACCEPTED_FORMS}"


@pytest.mark.anyio
async def test_middleware_answers_429_like_balena_and_spares_admin() -> None:
    """Over the limit: 429, body "Too Many Requests", Retry-After; /_sim/ is never limited."""
    limiter = RateLimiter("fixed:2/10s", clock=FakeClock())
    log = RequestLog()
    app = TinyApi().app([log.make_middleware(), limiter.make_middleware()])
    limiter.add_routes(app)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(3):
            async with http.get(f"{url}/v7/thing", headers={"Authorization": "Bearer one"}) as r:
                statuses.append(r.status)
                last = (await r.read(), r.headers.get("Retry-After"), r.content_type)
        assert statuses == [200, 200, 429]
        assert last == (b'"Too Many Requests"', "10", "application/json")
        async with http.get(f"{url}/v7/thing", headers={"Authorization": "Bearer two"}) as r:
            assert r.status == 200  # another token: another window
        for _ in range(5):
            async with http.get(f"{url}/_sim/ratelimit") as r:
                stats = (r.status, await r.json())
        assert stats[0] == 200
        assert stats[1] == {"spec": "fixed:2/10s", "schedule": "fixed:2/10s", "allowed": 3,
                                  "throttled": 1, "keys": 2}
    assert [e.outcome for e in log.entries()] == ["ok", "ok", "throttled", "ok"]


@pytest.mark.anyio
async def test_admin_put_changes_the_policy() -> None:
    """PUT /_sim/ratelimit {"spec": ...} applies a new policy; a bad SPEC is a 400 naming the problem."""
    limiter = RateLimiter("none", clock=FakeClock())
    app = TinyApi().app([limiter.make_middleware()])
    limiter.add_routes(app)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        async with http.put(f"{url}/_sim/ratelimit", json={"spec": "fixed:1/10s"}) as r:
            assert (r.status, (await r.json())["spec"]) == (200, "fixed:1/10s")
        async with http.put(f"{url}/_sim/ratelimit", json={"spec": "fast"}) as r:
            assert r.status == 400
            error = (await r.json())["error"]
            assert error == f"rate limit spec 'fast': cannot read 'fast'; {ACCEPTED_FORMS}"
        async with http.put(f"{url}/_sim/ratelimit", data=b"nope") as r:
            assert r.status == 400
        statuses = []
        for _ in range(2):
            async with http.get(f"{url}/v7/thing?apikey=k") as r:
                statuses.append(r.status)
        assert statuses == [200, 429]

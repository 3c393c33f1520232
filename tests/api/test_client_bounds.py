"""The client's bounds on waiting and the split of transport failures, against tiny servers on 127.0.0.1:
one time bound for all waiting of one request, a 500 on a read sent once more at most, "never sent"
told from "may have been applied", and a Retry-After too long to wait stopping every worker at once."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from aiohttp import web

from bulkops.api.client import Client
from bulkops.api.limiter import AdaptiveLimiter
from bulkops.errors import (
    ConnectError,
    NoAnswerError,
    RetryAfterTooLongError,
    ServerError,
    TransportError,
)
from bulkops.odata import eq
from tests.api.test_client_http import (
    TOKEN,
    Server,
    assert_no_token,
    client,
    reply,
    reset,
    rows,
    serve,
    slow,
    truncated,
)
from tests.api.test_limiter import VirtualClock

pytestmark = pytest.mark.anyio
TAG = {"device": 1, "tag_key": "k", "value": "v"}


def virtual(url: str, clock: VirtualClock, **kw: object) -> Client:
    """A client whose limiter, and with it every wait of the client, runs on virtual time."""
    limiter = AdaptiveLimiter(clock=clock.time, sleep=clock.jump)
    return client(url, limiter=limiter, **kw)


def closed_port() -> str:
    """The URL of a port on 127.0.0.1 that nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- one time bound for all waiting ----------------------------------------------------------------


async def test_429_waits_are_bounded_by_max_retry_time() -> None:
    """Retry-After 10 on every answer and max_retry_time 35: four requests, then the run stops, not 50."""
    clock = VirtualClock()
    too_many = reply(429, b'"Too Many Requests"', {"Retry-After": "10"})
    async with serve(too_many) as srv, virtual(srv.url, clock, max_retry_time=35) as c:
        with pytest.raises(RetryAfterTooLongError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: gave up waiting after 30 s (4 answers of 429 to it): the rate limit "
        "holds every request 10 s more, past the bound of 35 s on one request's waiting (max_retry_time); "
        "stopped here: the run can be resumed later"
    )
    assert len(srv.seen) == 4 and info.value.attempts == 4
    assert clock.now == 30.0
    assert_no_token(info.value)


async def test_429_pauses_and_backoff_share_one_bound() -> None:
    """A 10 s pause uses up max_retry_time 10: the 503 that follows is not retried (not six attempts)."""
    clock = VirtualClock()
    too_many = reply(429, b"", {"Retry-After": "10"})
    async with serve(too_many, reply(503)) as srv, virtual(srv.url, clock, max_attempts=6,
                                                           max_retry_time=10) as c:
        with pytest.raises(ServerError) as info:
            await c.get("device")
    assert str(info.value) == f"GET {srv.url}/v7/device: HTTP 503: server error (gave up after 2 attempts)"
    assert len(srv.seen) == 2


async def test_a_pause_longer_than_the_time_left_is_not_waited() -> None:
    """After 8 s of waiting, a Retry-After of 5 would pass max_retry_time 10: stopped, no third request."""
    clock = VirtualClock()
    wait8 = reply(429, b"", {"Retry-After": "8"})
    wait5 = reply(429, b"", {"Retry-After": "5"})
    async with serve(wait8, wait5, rows(1)) as srv, virtual(srv.url, clock, max_retry_time=10) as c:
        with pytest.raises(RetryAfterTooLongError) as info:
            await c.get("device")
    assert str(info.value).endswith(
        "gave up waiting after 8 s (2 answers of 429 to it): the rate limit holds every request 5 s more, "
        "past the bound of 10 s on one request's waiting (max_retry_time); stopped here: the run can be "
        "resumed later"
    )
    assert len(srv.seen) == 2


async def test_with_the_defaults_a_retry_after_over_two_minutes_stops_at_once() -> None:
    """Retry-After 200 is within max_retry_after (300 s) but past max_retry_time (120 s): stopped at once."""
    clock = VirtualClock()
    too_many = reply(429, b"", {"Retry-After": "200"})
    async with serve(too_many, rows(1)) as srv, Client(srv.url, TOKEN, limiter=AdaptiveLimiter(
            clock=clock.time, sleep=clock.jump)) as c:
        with pytest.raises(RetryAfterTooLongError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: gave up waiting after 0 s (1 answer of 429 to it): the rate limit holds "
        "every request 200 s more, past the bound of 120 s on one request's waiting (max_retry_time); "
        "stopped here: the run can be resumed later"
    )
    assert len(srv.seen) == 1 and clock.now == 0.0


# --- a 500 on a read -------------------------------------------------------------------------------


async def test_get_answered_500_is_sent_once_more_at_most() -> None:
    """A GET answered 500 (balena's answer to a query it cannot run) is sent twice, not max_attempts times."""
    clock = VirtualClock()
    async with serve(reply(500)) as srv, virtual(srv.url, clock, max_attempts=6) as c:
        with pytest.raises(ServerError) as info:
            await c.get("device", filter=eq("id", 1))
        with pytest.raises(ServerError):
            await c.count("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device?$filter=id%20eq%201: HTTP 500: server error (gave up after 2 attempts)"
    )
    assert [s.method for s in srv.seen] == ["GET"] * 4


async def test_write_answered_500_and_read_answered_503_keep_max_attempts() -> None:
    """A PATCH answered 500 and a GET answered 503 are still retried up to max_attempts."""
    clock = VirtualClock()
    async with serve(reply(500)) as srv, virtual(srv.url, clock, max_attempts=4) as c:
        with pytest.raises(ServerError):
            await c.patch("device", {"note": "x"}, key=1)
    assert len(srv.seen) == 4
    async with serve(reply(503)) as srv, virtual(srv.url, clock, max_attempts=4) as c:
        with pytest.raises(ServerError):
            await c.get("device")
    assert len(srv.seen) == 4


# --- never sent, or maybe applied --------------------------------------------------------------------


async def test_refused_connection_is_a_connect_error_and_post_is_sent_again() -> None:
    """Nobody listening: ConnectError (a TransportError); a POST that never left is retried like a GET."""
    url = closed_port()
    async with client(url, max_attempts=3) as c:
        with pytest.raises(ConnectError) as info:
            await c.post("device_tag", TAG)
        stats = c.statistics()
    assert isinstance(info.value, TransportError)
    assert str(info.value) == (
        f"POST {url}/v7/device_tag: could not connect to {url.removeprefix('http://')} (refused or "
        "unreachable) (gave up after 3 attempts)"
    )
    assert info.value.attempts == 3 and stats.requests == 3 and stats.transport_errors == 3


async def test_connect_timeout_is_a_connect_error() -> None:
    """A connection that never opens (a listener whose backlog is full) ends as ConnectError after half
    the request timeout, and a POST is sent again: nothing reached the server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        backlog = [socket.socket() for _ in range(3)]
        for sock in backlog:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        try:
            async with client(f"http://127.0.0.1:{port}", timeout=0.4, max_attempts=2) as c:
                with pytest.raises(ConnectError) as info:
                    await c.post("device_tag", TAG)
        finally:
            for sock in backlog:
                sock.close()
    assert str(info.value) == (
        f"POST http://127.0.0.1:{port}/v7/device_tag: could not connect within 0.2 s (gave up after 2 "
        "attempts)"
    )


@pytest.mark.parametrize(("answer", "reason"), [
    (reset, "the server closed the connection without answering"),
    (truncated, "the answer was cut off before its end"),
])
async def test_no_answer_after_sending_is_no_answer_error(answer: object, reason: str) -> None:
    """A reset or a cut-off answer is NoAnswerError (a TransportError); a PATCH is sent again."""
    async with serve(answer) as srv, client(srv.url, max_attempts=2) as c:  # type: ignore[arg-type]
        with pytest.raises(NoAnswerError) as info:
            await c.patch("device", {"note": "x"}, key=1)
    assert isinstance(info.value, TransportError)
    assert str(info.value) == f"PATCH {srv.url}/v7/device(1): {reason} (gave up after 2 attempts)"
    assert len(srv.seen) == 2


@pytest.mark.parametrize(("answer", "reason"), [
    (reset, "the server closed the connection without answering"),
    (slow, "no answer within the 0.3 s timeout"),
])
async def test_post_that_may_have_been_applied_is_not_sent_again(answer: object, reason: str) -> None:
    """A POST that reached the server and got no answer is sent once: NoAnswerError, the caller reads."""
    async with serve(answer) as srv, client(srv.url, max_attempts=4, timeout=0.3) as c:  # type: ignore[arg-type]
        with pytest.raises(NoAnswerError) as info:
            await c.post("device_tag", TAG)
    assert str(info.value) == (
        f"POST {srv.url}/v7/device_tag: {reason} (gave up after 1 attempt; a POST is not sent again once it "
        "may have been applied)"
    )
    assert [s.method for s in srv.seen] == ["POST"]
    assert_no_token(info.value)


async def test_post_503_then_connection_refused_is_not_a_connect_error() -> None:
    """A POST answered 503, then refused: the server saw it, so the error is the 503's, not ConnectError."""
    seen: list[str] = []
    runner: web.AppRunner | None = None
    gone = anyio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        gone.set()
        return web.Response(status=503, headers={"Connection": "close"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"

    async def stop_after_first() -> None:
        await gone.wait()
        await site.stop()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_after_first)
            async with client(url, max_attempts=3) as c:
                with pytest.raises(ServerError) as info:
                    await c.post("device_tag", TAG)
    finally:
        await runner.cleanup()
    assert seen == ["POST"]
    assert str(info.value) == (
        f"POST {url}/v7/device_tag: HTTP 503: server error (gave up after 3 attempts; the last could not "
        f"connect: could not connect to {host}:{port} (refused or unreachable))"
    )


# --- a Retry-After too long to wait --------------------------------------------------------------------


@asynccontextmanager
async def blocking() -> AsyncIterator[Server]:
    """A server whose first answer is 429 with Retry-After 3600, and every later one a row."""
    too_many = reply(429, b'"Too Many Requests"', {"Retry-After": "3600"})
    async with serve(too_many, rows(1)) as srv:
        yield srv


async def test_retry_after_too_long_stops_every_worker_at_once() -> None:
    """Eight requests at once, the first answered Retry-After 3600: that one is the only request sent."""
    errors: list[str] = []
    async with blocking() as srv, client(srv.url) as c:

        async def request(i: int) -> None:
            try:
                await c.get("device", key=i)
            except RetryAfterTooLongError as exc:
                errors.append(str(exc))

        async with anyio.create_task_group() as tg:
            for i in range(1, 9):
                tg.start_soon(request, i)
    assert len(srv.seen) == 1
    first = srv.seen[0].path_qs
    assert errors[0] == (
        f"GET {srv.url}{first}: the server asked to wait 3600 s before the next request (HTTP 429, "
        "Retry-After), more than the configured bound of 300 s; stopped here: the run can be resumed later"
    )
    others = sorted(errors[1:])
    assert others == sorted(
        f"GET {srv.url}/v7/device({i}): not sent: the server asked every request to wait 3600 s (HTTP 429, "
        "Retry-After), more than the configured bound of 300 s; dispatch stopped: the run can be resumed "
        "later"
        for i in range(1, 9) if f"/v7/device({i})" != first
    )
    assert all(TOKEN not in e for e in errors)


async def test_a_pause_past_max_retry_time_stops_every_worker_at_once() -> None:
    """Four requests at once, the first answered Retry-After 10 with max_retry_time 5: one request sent."""
    errors: list[str] = []
    too_many = reply(429, b"", {"Retry-After": "10"})
    async with serve(too_many, rows(1)) as srv, client(srv.url, max_retry_time=5) as c:

        async def request(i: int) -> None:
            try:
                await c.get("device", key=i)
            except RetryAfterTooLongError as exc:
                errors.append(str(exc).split(": ", 1)[1])

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for i in range(1, 5):
                    tg.start_soon(request, i)
    assert len(srv.seen) == 1
    assert sorted(errors) == [
        "gave up waiting after 0 s (1 answer of 429 to it): the rate limit holds every request 10 s more, "
        "past the bound of 5 s on one request's waiting (max_retry_time); stopped here: the run can be "
        "resumed later",
        *["gave up waiting after 0 s: the rate limit holds every request 10 s more, past the bound of 5 s on "
          "one request's waiting (max_retry_time); stopped here: the run can be resumed later"] * 3,
    ]

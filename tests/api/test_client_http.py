"""The client against tiny hostile servers on 127.0.0.1: retries, 429s, and answers balena would not send."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

import pytest
import structlog.testing
from aiohttp import web

from bulkops.api.client import Client
from bulkops.api.limiter import retry_after_seconds
from bulkops.errors import (
    AuthError,
    BadResponseError,
    ClientRequestError,
    ConflictError,
    NotFoundError,
    RemoteError,
    RetryAfterTooLongError,
    ServerError,
    TransportError,
)
from bulkops.odata import eq

TOKEN = "SECRET-TOKEN-d41d8cd98f00b204"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path_qs: str
    query: dict[str, str]
    authorization: str | None
    at: float


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)


@asynccontextmanager
async def serve(*answers: Handler) -> AsyncIterator[Server]:
    """A server on 127.0.0.1:0 giving the answers in turn (the last one repeats)."""
    server = Server("")
    script = list(answers)

    async def handle(request: web.Request) -> web.StreamResponse:
        server.seen.append(Seen(request.method, request.path_qs, dict(request.query),
                                request.headers.get("Authorization"), time.monotonic()))
        answer = script.pop(0) if len(script) > 1 else script[0]
        return await answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    return answer


def rows(*ids: int) -> Handler:
    return reply(200, b'{"d":[' + b",".join(b'{"id":%d}' % i for i in ids) + b"]}",
                 {"Content-Type": "application/json"})


async def truncated(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b'{"d":[{"id":1},')
    assert request.transport is not None
    request.transport.close()
    return resp


async def reset(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response(status=200)


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(1)
    return web.Response(status=200, body=b'{"d":[]}')


def client(url: str, **kw: object) -> Client:
    kw.setdefault("max_attempts", 3)
    return Client(url, TOKEN, **kw)  # type: ignore[arg-type]


def assert_no_token(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "url", ""), getattr(exc, "body", "")):
        assert TOKEN not in text
    if exc.__cause__ is not None:
        assert TOKEN not in str(exc.__cause__) and TOKEN not in repr(exc.__cause__)


# --- successes and their shapes ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_get_sends_bearer_token_and_returns_rows() -> None:
    """GET sends Authorization: Bearer <token> and returns the rows of {"d": [...]}."""
    async with serve(rows(1, 2)) as srv, client(srv.url) as c:
        got = await c.get("device", select=("id",))
    assert got == [{"id": 1}, {"id": 2}]
    assert srv.seen[0].authorization == f"Bearer {TOKEN}"
    assert srv.seen[0].path_qs == "/v7/device?$select=id"


@pytest.mark.anyio
async def test_patch_and_delete_accept_empty_and_ok_bodies() -> None:
    """PATCH/DELETE answers are 200 with an empty body (v7) or "OK" (v6)."""
    async with serve(reply(200), reply(200, b"OK"), reply(200, b'"OK"')) as srv, client(srv.url) as c:
        await c.patch("device", {"note": "x"}, key=5)
        await c.delete("device", key=5)
        await c.delete("device", filter=eq("id", 6))
    assert [s.method for s in srv.seen] == ["PATCH", "DELETE", "DELETE"]


@pytest.mark.anyio
async def test_post_returns_the_bare_entity() -> None:
    """POST answers 201 with the created entity, no d wrapper."""
    async with serve(reply(201, b'{"id":7,"name":"A"}')) as srv, client(srv.url) as c:
        created = await c.post("device_tag", {"device": 1, "tag_key": "a", "value": "b"})
    assert created == {"id": 7, "name": "A"}


@pytest.mark.anyio
async def test_count_reads_d_as_an_integer() -> None:
    """/$count answers {"d": n}."""
    async with serve(reply(200, b'{"d":20}')) as srv, client(srv.url) as c:
        assert await c.count("device", filter=eq("is_online", True)) == 20
    assert srv.seen[0].path_qs == "/v7/device/$count?$filter=is_online%20eq%20true"


# --- retries ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_503_then_200_is_retried() -> None:
    """A 503 is retried with backoff; the second answer counts."""
    async with serve(reply(503), rows(1)) as srv, client(srv.url) as c:
        assert await c.get("device") == [{"id": 1}]
        stats = c.statistics()
    assert len(srv.seen) == 2
    assert stats.requests == 2 and stats.retries == 1 and stats.by_status == {503: 1, 200: 1}


@pytest.mark.anyio
async def test_post_is_retried_after_503() -> None:
    """POST is retried after a 5xx too (a lost create is resolved by the caller through a 409)."""
    async with serve(reply(503), reply(201, b'{"id":9}')) as srv, client(srv.url) as c:
        assert await c.post("device_tag", {"device": 1, "tag_key": "k", "value": "v"}) == {"id": 9}
    assert [s.method for s in srv.seen] == ["POST", "POST"]


@pytest.mark.anyio
async def test_5xx_gives_up_after_max_attempts() -> None:
    """Persistent 503s raise ServerError after max_attempts, with the attempts counted."""
    async with serve(reply(503, b'"boom"')) as srv, client(srv.url, max_attempts=3) as c:
        with pytest.raises(ServerError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: HTTP 503: server error (gave up after 3 attempts): boom"
    )
    assert info.value.attempts == 3
    assert len(srv.seen) == 3
    assert_no_token(info.value)


@pytest.mark.anyio
async def test_max_retry_time_bounds_retries() -> None:
    """With no retry time at all, a 503 is not retried."""
    async with serve(reply(503)) as srv, client(srv.url, max_attempts=6, max_retry_time=0) as c:
        with pytest.raises(ServerError):
            await c.get("device")
    assert len(srv.seen) == 1


@pytest.mark.anyio
async def test_reset_connection_is_a_transport_error() -> None:
    """A connection closed without an answer is retried, then raises TransportError."""
    async with serve(reset) as srv, client(srv.url, max_attempts=2) as c:
        with pytest.raises(TransportError) as info:
            await c.patch("device", {"note": "x"}, key=1)
    assert str(info.value) == (
        f"PATCH {srv.url}/v7/device(1): the server closed the connection without answering "
        "(gave up after 2 attempts)"
    )
    assert info.value.status is None
    assert info.value.attempts == 2
    assert c.statistics().transport_errors == 2
    assert_no_token(info.value)


@pytest.mark.anyio
async def test_reset_then_success() -> None:
    """A reset followed by a good answer succeeds."""
    async with serve(reset, rows(3)) as srv, client(srv.url) as c:
        assert await c.get("device", key=3) == [{"id": 3}]


@pytest.mark.anyio
async def test_timeout_is_a_transport_error() -> None:
    """No answer within the timeout raises TransportError naming the timeout."""
    async with serve(slow) as srv, client(srv.url, timeout=0.2, max_attempts=2) as c:
        with pytest.raises(TransportError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: no answer within the 0.2 s timeout (gave up after 2 attempts)"
    )


@pytest.mark.anyio
async def test_truncated_body_is_a_transport_error() -> None:
    """A body cut off before its Content-Length is a TransportError, not a parse of half a document."""
    async with serve(truncated) as srv, client(srv.url, max_attempts=2) as c:
        with pytest.raises(TransportError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: the answer was cut off before its end (gave up after 2 attempts)"
    )


@pytest.mark.anyio
async def test_refused_connection_is_a_transport_error() -> None:
    """Nobody listening: TransportError after the attempts."""
    async with serve(reply(200)) as srv:
        url = srv.url
    async with client(url, max_attempts=2) as c:
        with pytest.raises(TransportError) as info:
            await c.get("device")
    host_port = url.removeprefix("http://")
    assert str(info.value) == (
        f"GET {url}/v7/device: could not connect to {host_port} (refused or unreachable) "
        "(gave up after 2 attempts)"
    )


# --- 429 ------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("header", "low", "high"), [("0", 0.09, 0.6), ("1", 0.9, 1.6)])
async def test_429_waits_for_retry_after(header: str, low: float, high: float) -> None:
    """A 429 waits Retry-After (0 means a short pause, not an immediate retry) and sends again."""
    too_many = reply(429, b'"Too Many Requests"', {"Retry-After": header})
    async with serve(too_many, rows(1)) as srv, client(srv.url) as c:
        assert await c.get("device") == [{"id": 1}]
        stats = c.statistics()
    waited = srv.seen[1].at - srv.seen[0].at
    assert low <= waited <= high
    assert stats.throttled == 1 and stats.requests == 2
    assert c.limiter.statistics().throttled == 1


@pytest.mark.anyio
async def test_429_with_http_date() -> None:
    """Retry-After as an HTTP date is honoured."""
    async def too_many(request: web.Request) -> web.StreamResponse:
        date = formatdate(time.time() + 2, usegmt=True)
        return web.Response(status=429, headers={"Retry-After": date})

    async with serve(too_many, rows(1)) as srv, client(srv.url) as c:
        assert await c.get("device") == [{"id": 1}]
    assert 0.9 <= srv.seen[1].at - srv.seen[0].at <= 2.6


def test_retry_after_forms() -> None:
    """Retry-After parses seconds, 0, HTTP dates, and falls back to 1 s."""
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 1.0
    assert retry_after_seconds("soon") == 1.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("nan") == 1.0
    now = time.time()
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=datetime.fromtimestamp(now, UTC)) == (
        pytest.approx(30, abs=1)
    )


@pytest.mark.anyio
async def test_retry_after_too_long_stops() -> None:
    """Retry-After: 3600 over a bound of 300 s raises RetryAfterTooLongError at once, saying to resume."""
    too_many = reply(429, b'"Too Many Requests"', {"Retry-After": "3600"})
    async with serve(too_many) as srv, client(srv.url) as c:
        with pytest.raises(RetryAfterTooLongError) as info:
            await c.get("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: the server asked to wait 3600 s before the next request (HTTP 429, "
        "Retry-After), more than the configured bound of 300 s; stopped here: the run can be resumed later"
    )
    assert info.value.retry_after == 3600
    assert len(srv.seen) == 1
    assert_no_token(info.value)


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (401, b"", AuthError, "the API refused the token; check that BALENA_API_KEY or BALENA_TOKEN holds "
                              "a valid API key with rights on this resource"),
        (403, b"", AuthError, "the API refused the token; check that BALENA_API_KEY or BALENA_TOKEN holds "
                              "a valid API key with rights on this resource"),
        (404, b'"Application doesn\'t exist or you have no access to it."', NotFoundError,
         "Application doesn't exist or you have no access to it."),
        (409, b'"\\"uuid\\" must be unique."', ConflictError, '"uuid" must be unique.'),
        (400, b'"No fields to update"', ClientRequestError, "the request was refused: No fields to update"),
        (400, b"", ClientRequestError, "the request was refused (no reason given)"),
        (413, b"<html><body>too large</body></html>", ClientRequestError,
         "the request was refused: (an HTML page)"),
    ],
)
async def test_refusals_raise_at_once(
    status: int, body: bytes, kind: type[RemoteError], message: str
) -> None:
    """4xx answers raise the matching error on the first answer, keeping the server's text."""
    async with serve(reply(status, body)) as srv, client(srv.url) as c:
        with pytest.raises(kind) as info:
            await c.patch("device", {"note": "x"}, key=1)
    assert type(info.value) is kind
    assert info.value.attempts == 1
    assert str(info.value) == f"PATCH {srv.url}/v7/device(1): HTTP {status}: {message}"
    assert info.value.status == status
    assert len(srv.seen) == 1
    assert_no_token(info.value)


@pytest.mark.anyio
async def test_conflict_keeps_body() -> None:
    """A 409 keeps the server's text in .body for the caller to resolve."""
    conflict = reply(409, b'"\\"device\\" and \\"tag_key\\" must be unique."')
    async with serve(conflict) as srv, client(srv.url) as c:
        with pytest.raises(ConflictError) as info:
            await c.post("device_tag", {"device": 1, "tag_key": "k", "value": ""})
    assert info.value.body == '"device" and "tag_key" must be unique.'


# --- answers balena would not send ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "got"),
    [
        (b"<html><body>Bad gateway</body></html>", 'expected valid JSON, got (an HTML page)'),
        (b'{"d":[{"id":1}', "expected valid JSON, got '{\"d\":[{\"id\":1}'"),
        (b'{"value":[]}', "expected {\"d\": [objects]}, got '{\"value\":[]}'"),
        (b'{"d":{"id":1}}', "expected {\"d\": [objects]}, got '{\"d\":{\"id\":1}}'"),
        (b'{"d":[1,2]}', "expected {\"d\": [objects]}, got '{\"d\":[1,2]}'"),
        (b"", "expected a JSON body, got an empty body"),
    ],
)
async def test_bad_answers_raise_bad_response(body: bytes, got: str) -> None:
    """HTML, invalid JSON, a missing d, wrong types: BadResponseError with method, url and status."""
    async with serve(reply(200, body)) as srv, client(srv.url) as c:
        with pytest.raises(BadResponseError) as info:
            await c.get("device")
    assert str(info.value) == f"GET {srv.url}/v7/device: HTTP 200: unexpected answer: {got}"
    assert len(srv.seen) == 1


@pytest.mark.anyio
async def test_count_of_wrong_type() -> None:
    """A /$count answer that is not a non-negative integer is refused."""
    async with serve(reply(200, b'{"d":"20"}')) as srv, client(srv.url) as c:
        with pytest.raises(BadResponseError) as info:
            await c.count("device")
    assert str(info.value) == (
        f"GET {srv.url}/v7/device/$count: HTTP 200: unexpected answer: expected {{\"d\": <count>}}, "
        "got '{\"d\":\"20\"}'"
    )


@pytest.mark.anyio
async def test_patch_with_unexpected_body() -> None:
    """A PATCH answered with a document is not a silent success."""
    async with serve(reply(200, b'{"d":[]}')) as srv, client(srv.url) as c:
        with pytest.raises(BadResponseError) as info:
            await c.patch("device", {"note": "x"}, key=1)
    assert info.value.detail == "unexpected answer: expected an empty body or \"OK\", got '{\"d\":[]}'"


@pytest.mark.anyio
async def test_huge_body_is_refused() -> None:
    """A body over the cap is not read into memory: BadResponseError (streamed or declared)."""
    big = b'{"d":[' + b",".join([b'{"id":1}'] * 50_000) + b"]}"

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        for i in range(0, len(big), 65536):
            await resp.write(big[i:i + 65536])
        await resp.write_eof()
        return resp

    for answer in (reply(200, big), chunked):
        async with serve(answer) as srv, client(srv.url, max_body=100_000) as c:
            with pytest.raises(BadResponseError) as info:
                await c.get("device")
        assert str(info.value) == (
            f"GET {srv.url}/v7/device: HTTP 200: unexpected answer: a body over 100000 bytes, not read"
        )


@pytest.mark.anyio
async def test_redirect_to_another_host_is_not_followed() -> None:
    """A redirect is refused: the other host never receives the token (nor any request)."""
    async with serve(rows(1)) as other:
        redirect = reply(302, b"", {"Location": f"{other.url}/v7/device"})
        async with serve(redirect) as srv, client(srv.url) as c:
            with pytest.raises(BadResponseError) as info:
                await c.get("device")
        assert other.seen == []
    assert str(info.value) == (
        f"GET {srv.url}/v7/device: HTTP 302: unexpected answer: a redirect, not followed (the token is only "
        "ever sent to the configured API URL; check --api-url)"
    )


# --- the token stays secret --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_never_in_logs_or_reprs() -> None:
    """Neither the request/retry/throttle events nor the client's repr carry the token."""
    too_many = reply(429, b"", {"Retry-After": "0"})
    logs: list[dict[str, object]] = []
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        await _logged_run(too_many, logs)
    finally:
        structlog.configure(**saved)
    events = {e["event"] for e in logs}
    assert {"bulkops.client.request", "bulkops.client.retry", "bulkops.client.throttled"} <= events
    assert all(TOKEN not in repr(e) for e in logs)


async def _logged_run(too_many: Handler, out: list[dict[str, object]]) -> None:
    with structlog.testing.capture_logs() as logs:
        async with serve(reply(503), too_many, rows(1)) as srv, client(srv.url) as c:
            await c.get("device")
            assert TOKEN not in repr(c)
            assert repr(c) == f"Client(api_url='{srv.url}/v7/', token='***')"
    out.extend(logs)


@pytest.mark.anyio
async def test_unverifiable_tls_certificate_is_refused(tmp_path: Path) -> None:
    """TLS is verified: a self-signed certificate fails at once, and the server never sees a request."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(status=200, body=b'{"d":[]}')

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with client(f"https://127.0.0.1:{port}") as c:
            with pytest.raises(TransportError) as info:
                await c.get("device")
    finally:
        await runner.cleanup()
    assert str(info.value) == (
        f"GET https://127.0.0.1:{port}/v7/device: the TLS certificate could not be verified "
        "(gave up after 1 attempt)"
    )
    assert seen == []

"""The network layer: every request bulkops sends to the balena API goes through ``Client``.

This is the only engine module that imports aiohttp. It builds and percent-encodes URLs, sends the
token as ``Authorization: Bearer …`` (never in a URL, a log line, a repr or an error), passes every
request through the shared ``AdaptiveLimiter``, retries what may be retried, checks that each answer
has the shape balena gives it, and maps every aiohttp and OS error once to the most specific
``bulkops.errors`` class (``raise … from exc``).

Retries: ``429`` → the limiter pauses every worker for ``Retry-After`` and the request goes again (a
wait above ``max_retry_after`` blocks the limiter and raises ``RetryAfterTooLongError``, and every
other request held by it is refused unsent); ``5xx`` and transport errors → full-jitter exponential
backoff (base 0.25 s, cap 10 s) bounded by ``max_attempts`` (a GET answered 500: twice). All the
waiting of one call — pauses, backoff, time held by the limiter — is bounded by ``max_retry_time``.
A failure to connect is ``ConnectError`` (never sent), no answer after sending ``NoAnswerError``
(maybe applied): a POST is not sent again after the latter. Counters count what bulkops sends:
aiohttp itself sends an idempotent request (GET, PUT, DELETE) once more when a kept-alive connection
turns out to be closed, and the server then sees one request more than ``statistics()`` shows.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeGuard

import aiohttp
import orjson
import yarl

from bulkops.api.answers import (
    _Answer,
    _attempts,
    _gave_up,
    _NoAnswer,
    _Reached,
    _refusal,
    connect_timeout,
    held,
    no_answer,
    retry_after_seconds,
)
from bulkops.api.limiter import AdaptiveLimiter, WaitTooLong
from bulkops.api.urls import KeySpec, _filter_option, answer_text, display_url, quote, render_key
from bulkops.config import check_api_url
from bulkops.errors import (
    BadResponseError,
    InputError,
    RateLimitedError,
    RetryAfterTooLongError,
)
from bulkops.log import get_logger
from bulkops.odata.ast import BinOp, Node, Op, and_, lit, path

__all__ = ["Client", "ClientStats"]

log = get_logger("bulkops.client")

MAX_BODY: Final = 64 * 1024 * 1024  # bytes of one answer read at most
BACKOFF_BASE: Final = 0.25
BACKOFF_CAP: Final = 10.0
MAX_THROTTLED: Final = 50  # 429s one request may meet before it gives up (besides max_retry_time)
READ_500_ATTEMPTS: Final = 2  # a GET answered 500 goes once more at most: balena's 500 is mostly a bad query
CONNECTIONS: Final = 32  # keep-alive pool size
USER_AGENT: Final = "bulkops/0.1"


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What this client sent: every request (retries included), 429s, re-sends, transport failures."""

    requests: int
    throttled: int
    retries: int
    transport_errors: int
    by_status: dict[int, int]

class Client:
    """An async context manager holding one keep-alive connection pool to one balena API."""

    def __init__(
        self, api_url: str, token: str, *, limiter: AdaptiveLimiter | None = None, timeout: float = 30.0,
        max_attempts: int = 6, max_retry_time: float = 120.0, max_retry_after: float = 300.0,
        allow_insecure_http: bool = False, api_version: str = "v7", max_body: int = MAX_BODY,
    ) -> None:
        self._origin, prefix = check_api_url(api_url, allow_insecure_http=allow_insecure_http)
        if not token:
            raise InputError("no API token given: set BALENA_API_KEY or BALENA_TOKEN")
        if timeout <= 0 or max_attempts < 1 or max_retry_time < 0 or max_retry_after < 0:
            raise InputError(f"client bounds must be positive: timeout={timeout}, "
                             f"max_attempts={max_attempts}, max_retry_time={max_retry_time}, "
                             f"max_retry_after={max_retry_after}")
        self._root = f"{prefix}/{api_version}/"
        self._token = token
        self._limiter = limiter if limiter is not None else AdaptiveLimiter()
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_retry_time = max_retry_time
        self._max_retry_after = max_retry_after
        self._max_body = max_body
        self._session: aiohttp.ClientSession | None = None
        self._requests = self._throttled = self._retries = self._transport_errors = 0
        self._by_status: Counter[int] = Counter()

    def __repr__(self) -> str:
        return f"Client(api_url={self._origin + self._root!r}, token='***')"

    @property
    def limiter(self) -> AdaptiveLimiter:
        return self._limiter

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=self._timeout, connect=connect_timeout(self._timeout),
                                        sock_read=self._timeout)
        connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- URLs ------------------------------------------------------------------------------------

    def _target(
        self, resource: str, *, key: KeySpec | None = None, suffix: str = "",
        options: Sequence[tuple[str, str | None]] = (),
    ) -> str:
        """The encoded request target: ``/v7/device(5)?$filter=…``."""
        target = self._root + quote(resource) + ("" if key is None else render_key(key)) + suffix
        query = "&".join(f"{name}={quote(value)}" for name, value in options if value is not None)
        return f"{target}?{query}" if query else target

    def url_length(self, resource: str, filter: Node | None) -> int:
        """Bytes of the encoded request target (the server refuses request lines over about 16 KB)."""
        return len(self._target(resource, options=_filter_option(filter)))

    # --- the API -----------------------------------------------------------------------------------

    async def get(
        self, resource: str, *, key: KeySpec | None = None, filter: Node | None = None,
        select: Sequence[str] = (), expand: str | None = None, orderby: str | None = None,
        top: int | None = None, skip: int | None = None,
    ) -> list[dict[str, Any]]:
        """The rows of ``resource`` matching the options (a single key also gives a list)."""
        options = [*_filter_option(filter), ("$select", ",".join(select) if select else None),
                   ("$expand", expand), ("$orderby", orderby), ("$top", None if top is None else str(top)),
                   ("$skip", None if skip is None else str(skip))]
        target = self._target(resource, key=key, options=options)
        answer = await self._call("GET", target)
        doc = self._json(answer)
        rows = doc.get("d") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self._bad(answer, 'expected {"d": [objects]}')
        if (not select or "id" in select) and not all(_is_id(r.get("id")) for r in rows):
            raise self._bad(answer, 'expected an integer "id" in every row')
        return rows

    async def count(self, resource: str, *, filter: Node | None = None) -> int:
        """``/$count`` of the rows matching ``filter``."""
        target = self._target(resource, suffix="/$count", options=_filter_option(filter))
        answer = await self._call("GET", target)
        doc = self._json(answer)
        n = doc.get("d") if isinstance(doc, dict) else None
        if not _is_id(n) or n < 0:
            raise self._bad(answer, 'expected {"d": <count>}')
        return n

    async def pages(
        self, resource: str, *, filter: Node | None, select: Sequence[str], page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every matching row, ``page_size`` at a time, in id order (keyset paging on ``id gt <last>``)."""
        if page_size < 1:
            raise InputError(f"page_size must be at least 1, got {page_size}")
        fields = list(select)
        if fields and "id" not in fields:
            fields.append("id")
        last: int | None = None
        while True:
            after = None if last is None else BinOp(Op.GT, path("id"), lit(last))
            page_filter = None if filter is None and after is None else and_(filter, after)
            rows = await self.get(
                resource, filter=page_filter, select=fields, orderby="id asc", top=page_size
            )
            if not rows:
                return
            yield rows
            if len(rows) < page_size:
                return
            next_id = rows[-1].get("id")
            if not _is_id(next_id) or (last is not None and next_id <= last):
                target = self._target(resource, options=_filter_option(page_filter))
                last_row = _Answer("GET", target, 200, orjson.dumps(rows[-1]), 1)
                raise self._bad(last_row, "expected rows in increasing integer id order")
            last = next_id

    async def post(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create one row; the created entity as the server returns it (``201``)."""
        target = self._target(resource)
        answer = await self._call("POST", target, body=orjson.dumps(dict(body)))
        doc = self._json(answer)
        if not isinstance(doc, dict) or not _is_id(doc.get("id")):
            raise self._bad(answer, 'expected the created object with an integer "id"')
        return doc

    async def patch(
        self, resource: str, body: Mapping[str, Any], *, filter: Node | None = None,
        key: KeySpec | None = None,
    ) -> None:
        """Update the rows a key or a filter selects. Neither given is refused (it would touch every row)."""
        target = self._write_target("PATCH", resource, filter, key)
        self._empty(await self._call("PATCH", target, body=orjson.dumps(dict(body))))

    async def delete(self, resource: str, *, filter: Node | None = None, key: KeySpec | None = None) -> None:
        """Delete the rows a key or a filter selects. Neither given is refused."""
        target = self._write_target("DELETE", resource, filter, key)
        self._empty(await self._call("DELETE", target))

    def _write_target(self, method: str, resource: str, filter: Node | None, key: KeySpec | None) -> str:
        if filter is None and key is None:
            raise InputError(f"refusing to {method} {resource} without a key or a filter: balena would apply "
                             "it to every row the token can see")
        return self._target(resource, key=key, options=_filter_option(filter))

    def statistics(self) -> ClientStats:
        return ClientStats(
            requests=self._requests, throttled=self._throttled, retries=self._retries,
            transport_errors=self._transport_errors, by_status=dict(self._by_status),
        )

    # --- answers -----------------------------------------------------------------------------------

    def _bad(self, answer: _Answer, what: str) -> Exception:
        text = answer_text(answer.data)
        got = "an empty body" if not text else text if text.startswith("(") else repr(text)
        return _attempts(BadResponseError(
            f"unexpected answer: {what}, got {got}", method=answer.method,
            url=display_url(self._origin + answer.target), status=answer.status,
        ), answer.attempts)

    def _json(self, answer: _Answer) -> Any:
        if not answer.data:
            raise self._bad(answer, "expected a JSON body")
        try:
            return orjson.loads(answer.data)
        except orjson.JSONDecodeError as exc:
            raise self._bad(answer, "expected valid JSON") from exc

    def _empty(self, answer: _Answer) -> None:
        """PATCH and DELETE answer ``200`` with an empty body (``"OK"`` through ``/v6``)."""
        if answer.data.strip() not in (b"", b"OK", b'"OK"'):
            raise self._bad(answer, 'expected an empty body or "OK"')

    # --- sending -----------------------------------------------------------------------------------

    async def _call(self, method: str, target: str, *, body: bytes | None = None) -> _Answer:
        """Send with retries; the status and body of a 2xx answer, else the mapped error. All waiting of
        one call (429 pauses, backoff, time held by the limiter) counts against ``max_retry_time``."""
        url = self._origin + target
        shown = display_url(url)
        clock = self._limiter
        started = clock.now()
        attempts = failures = throttles = 0
        reached: _Reached | None = None
        while True:
            waited = clock.now() - started
            max_wait = max(0.0, min(self._max_retry_after, self._max_retry_time - waited))
            try:
                status, retry_after, data, failure = await self._attempt(method, url, body, max_wait)
            except WaitTooLong as exc:
                error = held(f"{method} {shown}", exc, waited=clock.now() - started, throttles=throttles,
                             max_retry_after=self._max_retry_after, max_retry_time=self._max_retry_time)
                raise _attempts(error, attempts) from None
            except BadResponseError as exc:
                raise _attempts(exc, attempts + 1) from exc.__cause__
            attempts += 1
            if retry_after is not None:
                self._throttled += 1
                throttles += 1
                log.info("bulkops.client.throttled", retry_after=retry_after, path=shown)
                if retry_after > self._max_retry_after:
                    raise _attempts(RetryAfterTooLongError(
                        f"{method} {shown}: the server asked to wait {retry_after:.0f} s before the next "
                        f"request (HTTP 429, Retry-After), more than the configured bound of "
                        f"{self._max_retry_after:.0f} s; stopped here: the run can be resumed later",
                        retry_after=retry_after,
                    ), attempts)
                if throttles >= MAX_THROTTLED:
                    raise _attempts(RateLimitedError(
                        f"still rate limited after {throttles} answers of 429; try again later",
                        retry_after=retry_after, method=method, url=shown, status=429,
                    ), attempts)
                self._retries += 1
                continue  # the limiter holds every worker until the pause is over
            if failure is None and status < 500:
                if 200 <= status < 300:
                    return _Answer(method, target, status, data, attempts)
                raise _attempts(_refusal(method, shown, status, data), attempts)
            if failure is None or failure.sent:
                reached = _Reached(status, data, failure)
            failures += 1
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1)))  # noqa: S311
            spent = clock.now() - started
            note = ""
            if method == "POST" and failure is not None and failure.sent:
                note = "; a POST is not sent again once it may have been applied"
            if note or failures >= self._max_attempts or spent + delay > self._max_retry_time or (
                failure is not None and not failure.retry
            ) or (method == "GET" and status == 500 and failures >= READ_500_ATTEMPTS):
                raise _attempts(_gave_up(method, shown, status, data, failure, attempts=attempts,
                                         reached=reached, note=note), attempts)
            self._retries += 1
            log.info("bulkops.client.retry", attempt=attempts, delay=round(delay, 3),
                     reason=failure.reason if failure is not None else f"HTTP {status}", path=shown)
            await clock.sleep(delay)

    async def _attempt(
        self, method: str, url: str, body: bytes | None, max_wait: float
    ) -> tuple[int, float | None, bytes, _NoAnswer | None]:
        """One request through the limiter: its status, the Retry-After of a 429, its body, or why no
        answer came; the limiter hears how it went."""
        async with self._limiter.slot(max_wait=max_wait) as ticket:
            self._requests += 1
            sent = time.monotonic()
            status, retry_after, data, failure = 0, None, b"", None
            try:
                status, header, data = await self._send(method, url, body)
            except _NoAnswer as exc:
                failure = exc
                self._transport_errors += 1
            else:
                self._by_status[status] += 1
                if status == 429:
                    retry_after = retry_after_seconds(header)
                    if retry_after <= self._max_retry_after:
                        self._limiter.on_throttled(ticket, retry_after)
                    else:  # too long to wait: every worker stops sending now
                        self._limiter.block(ticket, retry_after)
                else:
                    self._limiter.on_success(ticket)
            log.debug("bulkops.client.request", method=method, path=display_url(url), status=status or None,
                      ms=round((time.monotonic() - sent) * 1000, 1))
        return status, retry_after, data, failure

    async def _send(self, method: str, url: str, body: bytes | None) -> tuple[int, str | None, bytes]:
        """One request; its status, ``Retry-After`` header and body (capped), or ``_NoAnswer``."""
        if self._session is None:
            raise RuntimeError("Client is not open: use `async with Client(...) as client:`")
        headers = {"Authorization": f"Bearer {self._token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, yarl.URL(url, encoded=True), data=body, headers=headers, allow_redirects=False
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > self._max_body:
                    raise self._too_big(method, url, resp.status)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > self._max_body:
                        raise self._too_big(method, url, resp.status)
                    chunks.append(chunk)
                return resp.status, resp.headers.get("Retry-After"), self._scrub(b"".join(chunks))
        except aiohttp.ClientResponseError:
            # not valid HTTP; the aiohttp error holds the request headers (the token): not chained
            raise BadResponseError("unexpected answer: not valid HTTP", method=method,
                                   url=display_url(url)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise no_answer(exc, self._timeout) from exc

    def _scrub(self, data: bytes) -> bytes:
        """An answer with the token (should a server echo it back) blanked out, so that no error message
        or log line made from it can carry the token."""
        token = self._token.encode()
        return data.replace(token, b"<redacted>") if token in data else data

    def _too_big(self, method: str, url: str, status: int) -> BadResponseError:
        return BadResponseError(f"unexpected answer: a body over {self._max_body} bytes, not read",
                                method=method, url=display_url(url), status=status)


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

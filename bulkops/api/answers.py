"""What one request came to: an answer, no answer, or the error a refusal or a give-up maps to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from bulkops.api.urls import answer_text
from bulkops.errors import (
    AuthError,
    BadResponseError,
    ClientRequestError,
    ConflictError,
    ConnectError,
    NoAnswerError,
    NotFoundError,
    RemoteError,
    RetryAfterTooLongError,
    ServerError,
)

if TYPE_CHECKING:
    from bulkops.api.limiter import WaitTooLong

CONNECT_TIMEOUT = 10.0  # seconds to connect at most; half the request timeout when that is shorter, so a
# connect that hangs ends as a connect timeout (never sent), not as the request's own timeout (maybe sent)


def connect_timeout(timeout: float) -> float:
    """Seconds a connection may take to open, for a request ``timeout``."""
    return min(timeout / 2, CONNECT_TIMEOUT)


class _NoAnswer(Exception):
    """Internal: a request got no usable answer; ``reason`` says why (never the token); ``sent``: the
    request reached the server (it may have been applied); ``retry``: sending it again may help."""

    def __init__(self, reason: str, *, retry: bool = True, sent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.sent = sent


@dataclass(frozen=True, slots=True)
class _Reached:
    """The latest attempt of a call that reached the server without a usable answer: a 5xx, or none."""

    status: int
    data: bytes
    failure: _NoAnswer | None


@dataclass(frozen=True, slots=True)
class _Answer:
    """A 2xx answer and how many requests it took."""

    method: str
    target: str
    status: int
    data: bytes
    attempts: int


_E = TypeVar("_E", RemoteError, RetryAfterTooLongError)


def _attempts(exc: _E, attempts: int) -> _E:
    exc.attempts = attempts
    return exc


def _refusal(method: str, url: str, status: int, data: bytes) -> RemoteError:
    """The error for an answer that is not 2xx, 429 or 5xx."""
    text = answer_text(data)
    said = f": {text}" if text else ""
    kw: dict[str, Any] = {"method": method, "url": url, "status": status, "body": text}
    if 300 <= status < 400:
        return BadResponseError("unexpected answer: a redirect, not followed (the token is only ever sent to "
                                "the configured API URL; check --api-url)", **kw)
    if status in (401, 403):
        return AuthError(f"the API refused the token{said}; check that BALENA_API_KEY or BALENA_TOKEN holds "
                         "a valid API key with rights on this resource", **kw)
    if status == 404:
        return NotFoundError(text or "not found", **kw)
    if status == 409:
        return ConflictError(text or "conflict", **kw)
    if 400 <= status < 500:
        return ClientRequestError(f"the request was refused{said or ' (no reason given)'}", **kw)
    return BadResponseError(f"unexpected answer: HTTP status {status}", **kw)


def _gave_up(
    method: str, url: str, status: int, data: bytes, failure: _NoAnswer | None, *, attempts: int,
    reached: _Reached | None, note: str = "",
) -> RemoteError:
    """The error of a call given up: ``ConnectError`` only when no attempt ever reached the server;
    after a connect failure that followed an attempt which did, the error of that attempt."""
    tries = f"gave up after {attempts} attempt{'' if attempts == 1 else 's'}" + note
    if failure is not None and not failure.sent and reached is not None:
        last = f"; the last could not connect: {failure.reason}"
        status, data, failure, tries = reached.status, reached.data, reached.failure, tries + last
    if failure is not None:
        kind = NoAnswerError if failure.sent else ConnectError
        return kind(f"{failure.reason} ({tries})", method=method, url=url)
    text = answer_text(data)
    said = f": {text}" if text else ""
    return ServerError(f"server error ({tries}){said}", method=method, url=url, status=status, body=text)


def held(request: str, exc: WaitTooLong, *, waited: float, throttles: int, max_retry_after: float,
         max_retry_time: float) -> RetryAfterTooLongError:
    """The error of a request the limiter would hold past its bound: it was not sent (again)."""
    wait, retry_after = exc.wait, exc.retry_after
    if retry_after is not None and retry_after > max_retry_after:
        return RetryAfterTooLongError(
            f"{request}: not sent: the server asked every request to wait {retry_after:.0f} s (HTTP 429, "
            f"Retry-After), more than the configured bound of {max_retry_after:.0f} s; dispatch stopped: "
            "the run can be resumed later", retry_after=retry_after)
    own = f" ({throttles} answer{'' if throttles == 1 else 's'} of 429 to it)" if throttles else ""
    return RetryAfterTooLongError(
        f"{request}: gave up waiting after {waited:.0f} s{own}: the rate limit holds every request "
        f"{wait:.0f} s more, past the bound of {max_retry_time:.0f} s on one request's waiting "
        "(max_retry_time); stopped here: the run can be resumed later", retry_after=wait)


def no_answer(exc: BaseException, timeout: float) -> _NoAnswer:
    """Why a request got no answer, whether it reached the server, and whether sending it again may help.
    Only a failure to connect proves that nothing was sent; anything after that may have been applied."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _NoAnswer("the TLS certificate could not be verified", retry=False, sent=False)
    if isinstance(exc, aiohttp.ClientSSLError):
        return _NoAnswer("the TLS handshake failed", retry=False, sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _NoAnswer(f"could not connect to {exc.host}:{exc.port} (refused or unreachable)", sent=False)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _NoAnswer(f"could not connect within {connect_timeout(timeout):g} s", sent=False)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _NoAnswer("the server closed the connection without answering")
    if isinstance(exc, TimeoutError):
        return _NoAnswer(f"no answer within the {timeout:g} s timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _NoAnswer("the answer was cut off before its end")
    if isinstance(exc, ConnectionResetError) or isinstance(exc.__cause__, ConnectionResetError):
        return _NoAnswer("the connection was reset without an answer")
    return _NoAnswer(f"the connection failed ({type(exc.__cause__ or exc).__name__})")


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

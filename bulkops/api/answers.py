"""What one request came to: an answer, no answer, or the error a refusal or a give-up maps to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from bulkops.api.urls import answer_text
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


class _NoAnswer(Exception):
    """Internal: a request got no usable answer; ``reason`` says why (never the token)."""

    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


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
    method: str, url: str, status: int, data: bytes, failure: _NoAnswer | None, *, attempts: int
) -> RemoteError:
    tries = f"gave up after {attempts} attempt{'' if attempts == 1 else 's'}"
    if failure is not None:
        return TransportError(f"{failure.reason} ({tries})", method=method, url=url)
    text = answer_text(data)
    said = f": {text}" if text else ""
    return ServerError(f"server error ({tries}){said}", method=method, url=url, status=status, body=text)


def no_answer_reason(exc: BaseException, timeout: float) -> tuple[str, bool]:
    """Why a request got no answer, and whether sending it again may help."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "the TLS certificate could not be verified", False
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed", False
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect to {exc.host}:{exc.port} (refused or unreachable)", True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering", True
    if isinstance(exc, TimeoutError):
        return f"no answer within the {timeout:g} s timeout", True
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off before its end", True
    return f"the connection failed ({type(exc.__cause__ or exc).__name__})", True

"""The simulator's request log: what every client sent and how the simulator answered.

The log middleware is the outermost one, so it sees throttled requests and injected faults as well as
the answers of the API itself. Tests and benchmarks read it to check exactly what a client sent (the
number of requests, their URLs, the order). Admin requests under ``/_sim/`` are neither logged nor
limited.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import unquote, unquote_plus

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

ADMIN_PREFIX: Final = "/_sim/"
DEFAULT_MAX_ENTRIES: Final = 2_000_000

# Keys of the per-request state the middlewares share (aiohttp requests are mutable mappings).
OUTCOME_KEY: Final = web.RequestKey("bulkops.sim.outcome", str)
CLIENT_KEY: Final = web.RequestKey("bulkops.sim.client", str)


class Outcome(StrEnum):
    OK = "ok"  # the API answered (any status, including 4xx and deliberate 5xx answers)
    THROTTLED = "throttled"  # the rate limiter answered 429
    FAULT_503 = "fault:503"  # an injected 503 with an empty body
    FAULT_RESET = "fault:reset"  # the connection was reset before the request was handled
    FAULT_LOST = "fault:lost"  # the request was applied, then the connection dropped without an answer
    ERROR = "error"  # the handler raised an unexpected exception (the client got a 500)


@dataclass(frozen=True, slots=True)
class LogEntry:
    method: str
    url: str  # decoded path + query as received, e.g. "/v7/device?$filter=id in (1,2)"
    status: int  # 0 when the client got no answer at all (reset)
    outcome: str  # an Outcome value
    client: str  # client address and a short digest of the token, never the token itself
    time: float  # seconds since the epoch, on the log's clock


def is_admin(request: web.Request) -> bool:
    return request.path.startswith(ADMIN_PREFIX)


def decoded_url(request: web.Request) -> str:
    """The request target as received, with %XX decoded and '+' read as a space in the query."""
    raw = request.raw_path
    path, sep, query = raw.partition("?")
    return unquote(path) + (sep + unquote_plus(query) if sep else "")


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("apikey") or None


def client_key(request: web.Request) -> str:
    """``<address>/<token digest>``: the key of the rate limiter's windows and of log entries."""
    cached = request.get(CLIENT_KEY)
    if isinstance(cached, str):
        return cached
    address = request.remote or "unknown"
    token = request_token(request)
    digest = hashlib.sha256(token.encode()).hexdigest()[:12] if token is not None else "anonymous"
    key = f"{address}/{digest}"
    request[CLIENT_KEY] = key
    return key


class RequestLog:
    """A bounded in-memory list of requests; the oldest entries drop off past ``max_entries``."""

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=max_entries)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: LogEntry) -> None:
        self._entries.append(entry)

    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def count(self, method: str | None = None, outcome: str | None = None) -> int:
        return sum(
            1
            for e in self._entries
            if (method is None or e.method == method.upper()) and (outcome is None or e.outcome == outcome)
        )

    def make_middleware(self) -> Middleware:
        log = self

        @web.middleware
        async def request_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if is_admin(request):
                return await handler(request)
            url = decoded_url(request)
            client = client_key(request)
            status = 0
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception:
                status = 500
                request[OUTCOME_KEY] = Outcome.ERROR
                raise
            finally:
                outcome = str(request.get(OUTCOME_KEY, Outcome.OK))
                if outcome == Outcome.FAULT_RESET:
                    status = 0
                log.append(LogEntry(request.method, url, status, outcome, client, log._clock()))

        return request_log_middleware

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_sim/requests", self._get_requests)
        app.router.add_post("/_sim/requests/clear", self._clear_requests)

    async def _get_requests(self, request: web.Request) -> web.Response:
        """``GET /_sim/requests[?method=PATCH][&outcome=ok][&offset=N][&limit=N]``."""
        method = request.query.get("method")
        outcome = request.query.get("outcome")
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", str(len(self._entries))))
        except ValueError:
            return web.json_response({"error": "offset and limit must be integers"}, status=400)
        selected = [
            asdict(e)
            for e in self._entries
            if (method is None or e.method == method.upper()) and (outcome is None or e.outcome == outcome)
        ]
        body = {"count": len(selected), "requests": selected[offset : offset + limit]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _clear_requests(self, request: web.Request) -> web.Response:
        cleared = len(self._entries)
        self.clear()
        return web.Response(body=orjson.dumps({"cleared": cleared}), content_type="application/json")

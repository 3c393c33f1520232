"""``--health-port``: ``GET /healthz`` (the time of the last tick) and ``GET /metrics`` (Prometheus text
format, written by the official ``prometheus-client``), served on 127.0.0.1 unless told otherwise.

The server is a small HTTP/1.1 responder on an anyio listener inside the scheduler's task group: one
request per connection, the request head bounded in size and time, no threads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import anyio
import orjson
import structlog
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.stapled import MultiListener
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from bulkops.errors import RunError
from bulkops.schedule.run import SlotResult
from bulkops.schedule.store import SlotState

log = structlog.get_logger("bulkops.schedule")
MAX_HEAD = 8192  # bytes of request line and headers
READ_TIMEOUT = 5.0  # seconds to send the request head
STALE = timedelta(minutes=2)  # /healthz answers 503 when the last tick is older than this


class Metrics:
    """The scheduler's counters, in a registry of its own (never the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("bulkops_schedule_runs", "Slots that ended, by job and outcome",
                            ["job", "outcome"], registry=r)
        self.skipped = Counter("bulkops_schedule_skipped_slots", "Slots journaled as skipped, by job and "
                               "reason", ["job", "reason"], registry=r)
        self.requests = Counter("bulkops_schedule_requests", "API requests sent by a job's runs (retries "
                                "included)", ["job"], registry=r)
        self.throttled = Counter("bulkops_schedule_throttled", "429 answers a job's runs received",
                                 ["job"], registry=r)
        self.last_tick = Gauge("bulkops_schedule_last_tick_timestamp_seconds", "Unix time of the last tick",
                               registry=r)
        self.jobs = Gauge("bulkops_schedule_jobs", "Job files in the directory, by state", ["state"],
                          registry=r)
        self.tick_at: datetime | None = None

    def observe(self, result: SlotResult) -> None:
        if result.state is SlotState.SKIPPED:
            return  # counted by skip() when it was journaled
        self.runs.labels(result.job, result.state.value).inc()
        self.requests.labels(result.job).inc(result.requests)
        self.throttled.labels(result.job).inc(result.throttled)

    def skip(self, job: str, reason: str) -> None:
        self.skipped.labels(job, reason).inc()

    def tick(self, now: datetime, *, valid: int, invalid: int) -> None:
        self.tick_at = now
        self.last_tick.set(now.timestamp())
        self.jobs.labels("scheduled").set(valid)
        self.jobs.labels("invalid").set(invalid)

    def health(self, now: datetime) -> tuple[int, bytes]:
        if self.tick_at is None:
            return 503, orjson.dumps({"status": "starting", "last_tick": None})
        age = (now - self.tick_at).total_seconds()
        status = "ok" if age <= STALE.total_seconds() else "stale"
        body = {"status": status, "last_tick": self.tick_at.isoformat().replace("+00:00", "Z"),
                "age_seconds": round(age, 3)}
        return (200 if status == "ok" else 503), orjson.dumps(body)


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class HealthServer:
    def __init__(self, metrics: Metrics, now: Callable[[], datetime]) -> None:
        self.metrics = metrics
        self._now = now
        self.port: int | None = None

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            head = b""
            with anyio.move_on_after(READ_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    try:
                        chunk = await stream.receive(4096)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(line) != 3 or b"\r\n\r\n" not in head:
                answer = _response(400, "text/plain", b"bad request\n")
            elif line[0] != "GET":
                answer = _response(405, "text/plain", b"only GET\n")
            elif line[1].split("?")[0] == "/healthz":
                status, body = self.metrics.health(self._now())
                answer = _response(status, "application/json", body)
            elif line[1].split("?")[0] == "/metrics":
                answer = _response(200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
            else:
                answer = _response(404, "text/plain", b"not found: try /healthz or /metrics\n")
            try:
                await stream.send(answer)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def listen(self, host: str, port: int) -> MultiListener[SocketStream]:
        """Bind ``host:port`` (0: any free port); :class:`RunError` naming the address when it cannot."""
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            raise RunError(f"cannot serve --health-port on {host}:{port}: {exc.strerror or exc}") from None
        self.port = int(listener.extra(SocketAttribute.local_port))  # noqa: S610 - anyio's typed attributes, not Django
        log.info("bulkops.schedule.health.listening", host=host, port=self.port)
        return listener

    async def serve(self, listener: MultiListener[SocketStream]) -> None:
        """Answer on ``listener`` until cancelled."""
        async with listener:
            await listener.serve(self._handle)

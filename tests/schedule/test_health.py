"""--health-port: /healthz says when the last tick was; /metrics counts runs, outcomes, skipped slots,
requests and 429s per job in the Prometheus text format."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bulkops.errors import RunError
from bulkops.schedule.clock import ManualClock
from bulkops.schedule.health import HealthServer, Metrics
from bulkops.sim.server import SimServer
from tests.schedule.conftest import at, scheduler, tag_job, write

pytestmark = pytest.mark.anyio


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_healthz_and_metrics(sim: SimServer, jobs: Path, home: Path) -> None:
    """Before the first tick /healthz is 503 (starting); after it 200 with the tick's time; stale after 2 min
    without one. /metrics has the runs by outcome, skipped slots by reason, requests and 429s per job."""
    write(jobs, "tag.toml", tag_job("tag", schedule='{ cron = "0 * * * *", catch_up = "90m" }'))
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    server = HealthServer(s.metrics, clock.now)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, await server.listen("127.0.0.1", 0))
        assert server.port is not None
        port = server.port
        assert await get(port, "/healthz") == (503, b'{"status":"starting","last_tick":null}')
        [done] = await s.run_due()
        assert await get(port, "/healthz") == (
            200, b'{"status":"ok","last_tick":"2027-01-10T03:00:05Z","age_seconds":0.0}')
        clock.set(at("2027-01-10T06:00:05Z"))  # 04:00 too late, 05:00 superseded, 06:00 runs
        await s.run_due()
        status, body = await get(port, "/metrics")
        assert status == 200
        got = samples(body)
        job = (("job", "tag"),)
        assert got[("bulkops_schedule_runs_total", (("job", "tag"), ("outcome", "done")))] == 1
        assert got[("bulkops_schedule_runs_total", (("job", "tag"), ("outcome", "nothing_to_do")))] == 1
        assert got[("bulkops_schedule_skipped_slots_total", (("job", "tag"), ("reason", "superseded")))] == 1
        assert got[("bulkops_schedule_skipped_slots_total", (("job", "tag"), ("reason", "too_late")))] == 1
        sent = len(sim.request_log.entries())
        assert got[("bulkops_schedule_requests_total", job)] == done.requests + 4 == sent
        assert got[("bulkops_schedule_throttled_total", job)] == 0
        tick = at("2027-01-10T06:00:05Z").timestamp()
        assert got[("bulkops_schedule_last_tick_timestamp_seconds", ())] == tick
        assert got[("bulkops_schedule_jobs", (("state", "scheduled"),))] == 1
        clock.advance(timedelta(minutes=3))
        assert await get(port, "/healthz") == (
            503, b'{"status":"stale","last_tick":"2027-01-10T06:00:05Z","age_seconds":180.0}')
        assert (await get(port, "/nope"))[0] == 404
        assert (await get(port, "/metrics", "POST"))[0] == 405
        tg.cancel_scope.cancel()


async def test_a_health_port_in_use_is_a_clear_error() -> None:
    """A --health-port that cannot be bound is refused naming the address, before the scheduler starts."""
    def now() -> datetime:
        return at("2027-01-10T03:00:00Z")

    first = HealthServer(Metrics(), now)
    listener = await first.listen("127.0.0.1", 0)
    assert first.port is not None
    async with listener:
        with pytest.raises(RunError) as info:
            await HealthServer(Metrics(), now).listen("127.0.0.1", first.port)
    assert str(info.value) == f"cannot serve --health-port on 127.0.0.1:{first.port}: Address already in use"

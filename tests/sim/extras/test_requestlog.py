"""The request log: what it records per request, its admin endpoints, its bound."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from bulkops.sim.faults import FaultInjector
from bulkops.sim.ratelimit import RateLimiter
from bulkops.sim.requestlog import LogEntry, RequestLog

from .conftest import FakeClock, TinyApi, serve


@pytest.mark.anyio
async def test_entries_record_decoded_url_status_outcome_client_and_time() -> None:
    """Each request becomes one entry; the URL is decoded; the client key carries a token digest only."""
    clock = FakeClock(1_700_000_000.0)
    log = RequestLog(clock=clock)
    limiter = RateLimiter("fixed:3/10s", clock=FakeClock())
    faults = FaultInjector("503=1,methods=PATCH")
    app = TinyApi().app([log.make_middleware(), limiter.make_middleware(), faults.make_middleware()])
    log.add_routes(app)
    digest = hashlib.sha256(b"secret-token").hexdigest()[:12]
    async with serve(app) as url, aiohttp.ClientSession(
            headers={"Authorization": "Bearer secret-token"}) as http:
        async with http.get(f"{url}/v7/thing?$filter=id%20in%20(1,2)&$select=id,note") as r:
            assert r.status == 200
        async with http.patch(f"{url}/v7/thing?$filter=device_name+eq+'a%2Bb'", json={}) as r:
            assert r.status == 503
        async with http.get(f"{url}/v7/boom") as r:
            assert r.status == 500
        async with http.get(f"{url}/v7/thing") as r:
            assert r.status == 429
        async with http.get(f"{url}/_sim/requests") as r:  # admin: neither logged nor limited
            body = await r.json()
    client, at = f"127.0.0.1/{digest}", 1_700_000_000.0
    assert log.entries() == [
        LogEntry("GET", "/v7/thing?$filter=id in (1,2)&$select=id,note", 200, "ok", client, at),
        LogEntry("PATCH", "/v7/thing?$filter=device_name eq 'a+b'", 503, "fault:503", client, at),
        LogEntry("GET", "/v7/boom", 500, "error", client, at),
        LogEntry("GET", "/v7/thing", 429, "throttled", client, at),
    ]
    assert body["count"] == 4
    assert body["requests"][0] == {"method": "GET", "url": "/v7/thing?$filter=id in (1,2)&$select=id,note",
                                   "status": 200, "outcome": "ok", "client": client, "time": 1_700_000_000.0}
    assert log.count() == 4
    assert log.count(method="get") == 3
    assert log.count(outcome="throttled") == 1
    assert log.count(method="PATCH", outcome="ok") == 0


@pytest.mark.anyio
async def test_admin_filters_pages_and_clears() -> None:
    """GET /_sim/requests filters by method and outcome and pages; POST /_sim/requests/clear empties it."""
    log = RequestLog()
    app = TinyApi().app([log.make_middleware()])
    log.add_routes(app)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        for n in range(3):
            async with http.get(f"{url}/v7/thing?n={n}"):
                pass
            async with http.post(f"{url}/v7/thing", json={}):
                pass
        async with http.get(f"{url}/_sim/requests?method=GET&offset=1&limit=1") as r:
            page = await r.json()
        async with http.get(f"{url}/_sim/requests?outcome=ok&method=post") as r:
            posts = await r.json()
        async with http.get(f"{url}/_sim/requests?limit=x") as r:
            assert r.status == 400
        async with http.post(f"{url}/_sim/requests/clear") as r:
            assert await r.json() == {"cleared": 6}
    assert page["count"] == 3
    assert [e["url"] for e in page["requests"]] == ["/v7/thing?n=1"]
    assert posts["count"] == 3
    assert len(log) == 0


def test_log_is_bounded() -> None:
    """Past max_entries the oldest entries drop off."""
    log = RequestLog(max_entries=3)
    for n in range(5):
        log.append(LogEntry("GET", f"/v7/device({n})", 200, "ok", "c", float(n)))
    assert [e.url for e in log.entries()] == ["/v7/device(2)", "/v7/device(3)", "/v7/device(4)"]
    log.clear()
    assert log.entries() == []

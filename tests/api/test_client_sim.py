"""The client against the simulator over real HTTP: reads, paging, count, writes, refusals, a rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from bulkops.api.client import Client
from bulkops.api.limiter import AdaptiveLimiter
from bulkops.errors import AuthError, ConflictError
from bulkops.odata import eq, in_, lit, path
from bulkops.odata.ast import BinOp, Op
from bulkops.sim.server import SimConfig, SimServer

DEVICES = 30


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig(seed_demo=DEVICES, tick_interval=3600.0, converge_delay=3600.0)) as server:
        yield server


def acme_devices(sim: SimServer) -> list[int]:
    """Ids of the devices the demo key sees (fleets of organization acme)."""
    return [r[0] for r in sim.db.conn.execute(
        "SELECT d.id FROM device d JOIN application a ON a.id = d.belongs_to__application "
        "JOIN organization o ON o.id = a.organization WHERE o.handle = 'acme' ORDER BY d.id")]


@pytest.mark.anyio
async def test_get_by_key_and_filter(sim: SimServer) -> None:
    """A key returns a one-row list; a filter the matching rows; an unknown key an empty list."""
    ids = acme_devices(sim)
    async with Client(sim.url, sim.api_key) as c:
        one = await c.get("device", key=ids[0], select=("id", "device_name"))
        some = await c.get("device", filter=in_("id", ids[:3]), select=("id",), orderby="id asc")
        none = await c.get("device", key=999_999)
    assert [r["id"] for r in one] == [ids[0]]
    assert [r["id"] for r in some] == ids[:3]
    assert none == []


@pytest.mark.anyio
async def test_pages_walk_every_row_once(sim: SimServer) -> None:
    """pages() walks all matching rows in id order, page by page, without repeats."""
    ids = acme_devices(sim)
    seen: list[int] = []
    sizes: list[int] = []
    async with Client(sim.url, sim.api_key) as c:
        async for page in c.pages("device", filter=None, select=("device_name",), page_size=7):
            sizes.append(len(page))
            seen.extend(r["id"] for r in page)
        count = await c.count("device")
        filtered = await c.count("device", filter=BinOp(Op.GT, path("id"), lit(ids[4])))
    assert seen == ids
    assert max(sizes) == 7
    assert count == len(ids)
    assert filtered == len([i for i in ids if i > ids[4]])


@pytest.mark.anyio
async def test_post_patch_delete_round_trip(sim: SimServer) -> None:
    """POST creates (201 entity), PATCH by filter updates, DELETE by composite key removes."""
    device = acme_devices(sim)[0]
    async with Client(sim.url, sim.api_key) as c:
        created = await c.post("device_tag", {"device": device, "tag_key": "client-test", "value": "canary"})
        assert created["tag_key"] == "client-test"
        with pytest.raises(ConflictError) as info:
            await c.post("device_tag", {"device": device, "tag_key": "client-test", "value": "again"})
        assert info.value.status == 409
        await c.patch("device_tag", {"value": "o'brien & co + 100%"}, filter=eq("id", created["id"]))
        rows = await c.get("device_tag", key={"device": device, "tag_key": "client-test"}, select=("value",))
        assert rows[0]["value"] == "o'brien & co + 100%"
        await c.delete("device_tag", key={"device": device, "tag_key": "client-test"})
        assert await c.get("device_tag", filter=eq("id", created["id"])) == []


@pytest.mark.anyio
async def test_wrong_token_is_an_auth_error(sim: SimServer) -> None:
    """An unknown token gets 401 from the simulator: AuthError at once, the token nowhere in it."""
    bad = "not-a-real-key-31415926"
    async with Client(sim.url, bad) as c:
        with pytest.raises(AuthError) as info:
            await c.get("device", key=1)
    assert bad not in str(info.value) and bad not in repr(info.value)
    assert info.value.status == 401


@pytest.mark.anyio
async def test_rate_limited_simulator_is_served_in_full() -> None:
    """Under a fixed window of 20 requests per second, 60 reads all succeed through 429 pauses."""
    cfg = SimConfig(seed_demo=5, tick_interval=3600.0, converge_delay=3600.0, rate_limit="fixed:20/1s")
    async with SimServer(cfg) as sim, Client(sim.url, sim.api_key, limiter=AdaptiveLimiter()) as c:
        async def read() -> None:
            await c.get("device", key=1, select=("id",))

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(read)
        stats = c.statistics()
        limiter = c.limiter.statistics()
    assert stats.by_status.get(200, 0) == 60
    assert stats.throttled == stats.by_status.get(429, 0) >= 1
    assert limiter.estimated_budget is not None and 15 <= limiter.estimated_budget <= 20


@pytest.mark.anyio
async def test_tricky_filter_values_find_their_rows(sim: SimServer) -> None:
    """Values with +, %, &, #, quotes and spaces in a $filter reach the simulator intact."""
    device = acme_devices(sim)[1]
    value = "a+b & c%20 #x'y ü"
    async with Client(sim.url, sim.api_key) as c:
        created = await c.post("device_tag", {"device": device, "tag_key": "client-enc", "value": value})
        found = await c.get("device_tag", filter=eq("value", value), select=("id",))
        by_key = await c.get("device_tag", key={"device": device, "tag_key": "client-enc"}, select=("value",))
    assert [r["id"] for r in found] == [created["id"]]
    assert by_key == [{"value": value}]

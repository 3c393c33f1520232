"""A read the simulator cannot run (HTTP 500, as balena answers a query it cannot compile) is sent twice
at most, against the simulator over HTTP."""

from __future__ import annotations

import pytest

from bulkops.api.client import Client
from bulkops.errors import ServerError
from bulkops.odata.parser import parse
from bulkops.sim.server import SimServer

pytestmark = pytest.mark.anyio


async def test_read_answered_500_is_sent_twice_not_six_times(sim: SimServer) -> None:
    """A GET whose filter the server cannot run fails after 2 requests, not max_attempts (6)."""
    filt = parse("device_tag/tag_key eq 'ring'")  # not checked here: the client sends what it is given
    before = len(sim.request_log.entries())
    async with Client(sim.url, sim.api_key, max_attempts=6) as client:
        with pytest.raises(ServerError) as info:
            await client.get("device", filter=filt, select=("id",))
    sent = sim.request_log.entries()[before:]
    assert [(e.method, e.status) for e in sent] == [("GET", 500), ("GET", 500)]
    assert info.value.status == 500 and info.value.attempts == 2
    assert str(info.value).endswith("HTTP 500: server error (gave up after 2 attempts)")

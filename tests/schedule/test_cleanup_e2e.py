"""End to end over HTTP: the nightly cleanup deletes exactly the stale devices, and never twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.schedule.clock import ManualClock
from bulkops.schedule.store import SlotState
from bulkops.sim.server import SimServer
from tests.conftest import addressed_ids, rows, writes
from tests.schedule.conftest import at, scheduler, write

pytestmark = pytest.mark.anyio

CLEANUP = """name = "cleanup-offline"
schedule = { cron = "0 3 * * *", timezone = "UTC", missed = "latest", catch_up = "6h" }
allow_fleets = ["acme/sensor"]

[target]
resource = "device"
fleet = "acme/sensor"
offline_for = "90d"
expect = { max = 30, max_share = "30%" }

[action]
type = "delete"
"""


def stage(sim: SimServer) -> set[int]:
    """Sensors online and seen yesterday, except: 7 offline since September (stale), 5 offline since
    November (not yet), 3 online but last seen in August (online: not stale); 4 gateways offline since
    August (another fleet). Returns the ids of the 7 stale sensors."""
    sensor, gateway = sim.demo.fleets["acme/sensor"], sim.demo.fleets["acme/gateway"]
    in_fleet = "SELECT id FROM device WHERE belongs_to__application=? ORDER BY id"
    ids = [r[0] for r in rows(sim, in_fleet, sensor)]
    gws = [r[0] for r in rows(sim, in_fleet, gateway)]
    db = sim.db.conn
    db.execute("UPDATE device SET is_online=1, last_connectivity_event='2027-01-09T12:00:00.000Z' "
               "WHERE belongs_to__application IN (?, ?)", (sensor, gateway))

    def set_rows(chosen: list[int], online: int, seen: str) -> None:
        db.executemany("UPDATE device SET is_online=?, last_connectivity_event=? WHERE id=?",
                       [(online, seen, i) for i in chosen])

    set_rows(ids[:7], 0, "2026-09-01T00:00:00.000Z")
    set_rows(ids[7:12], 0, "2026-11-01T00:00:00.000Z")
    set_rows(ids[12:15], 1, "2026-08-01T00:00:00.000Z")
    set_rows(gws[:4], 0, "2026-08-01T00:00:00.000Z")
    return set(ids[:7])


async def test_scheduled_cleanup_deletes_exactly_the_stale_devices(sim: SimServer, jobs: Path,
                                                                   home: Path) -> None:
    """At 03:00 the cleanup deletes the 7 sensors offline for over 90 days — no other device, and every
    write addresses only them; a second tick of the slot, in the same or a restarted scheduler, sends
    no write."""
    stale = stage(sim)
    before = {r[0] for r in rows(sim, "SELECT id FROM device")}
    write(jobs, "cleanup-offline.toml", CLEANUP)
    clock = ManualClock(at("2027-01-10T03:00:20Z"))
    s = scheduler(sim, jobs, clock)
    [result] = await s.run_due()
    assert result.state is SlotState.DONE
    assert result.summary is not None and result.summary.counts["applied"] == 7
    after = {r[0] for r in rows(sim, "SELECT id FROM device")}
    assert before - after == stale
    sent = writes(sim)
    assert sent and {e.method for e in sent} == {"DELETE"}
    addressed = set().union(*(addressed_ids(e.url) for e in sent))
    assert addressed == stale
    # the same slot again: this scheduler, then a new one (a restart), then a minute later
    assert await s.run_due() == []
    restarted = scheduler(sim, jobs, clock)
    assert await restarted.run_due() == []
    clock.set(at("2027-01-10T03:01:00Z"))
    assert await restarted.run_due() == []
    assert len(writes(sim)) == len(sent)
    [record] = restarted.store.slots("cleanup-offline")
    assert (record.slot, record.state) == ("2027-01-10T03:00:00Z", SlotState.DONE)
    assert record.run_id == result.run_id
    assert record.counts["applied"] == 7

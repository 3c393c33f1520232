"""Simulated devices converge on their target release after a delay; some get stuck or go offline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bulkops.sim.db import Database
from bulkops.sim.devices import DeviceSimulator, TickResult, fraction_of
from bulkops.sim.seed import DemoInfo, seed_demo

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _world(n: int = 400) -> tuple[Database, DemoInfo]:
    db = Database.open(":memory:", clock=lambda: T0)
    return db, seed_demo(db, n, seed=3)


def _retarget(db: Database, info: DemoInfo) -> int:
    """Point acme/gateway at 2.0.0; returns how many of its online, unpinned devices must now update."""
    fleet = info.fleets["acme/gateway"]
    db.conn.execute("UPDATE application SET should_be_running__release = ? WHERE id = ?",
                    (info.releases["acme/gateway@2.0.0"], fleet))
    return int(db.conn.execute(
        "SELECT COUNT(*) FROM device WHERE belongs_to__application = ? AND is_online = 1 "
        "AND is_pinned_on__release IS NULL", (fleet,)).fetchone()[0])


def _rows(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.conn.execute(sql, params).fetchall()


def test_devices_converge_after_the_delay() -> None:
    """Devices start updating at the first tick and run the new target once converge_delay has passed."""
    db, info = _world()
    sim = DeviceSimulator(db, converge_delay=10.0)
    assert sim.tick(T0) == TickResult(0, 0, 0, 0)  # the seeded world is settled
    pending = _retarget(db, info)
    assert pending > 50
    assert sim.tick(T0) == TickResult(pending, 0, 0, 0)
    assert _rows(db, "SELECT DISTINCT update_status, status FROM device WHERE belongs_to__application = ? "
                     "AND is_online = 1 AND is_pinned_on__release IS NULL",
                 info.fleets["acme/gateway"]) == [("downloading", "Downloading")]
    assert sim.tick(T0 + timedelta(seconds=9.9)) == TickResult(0, 0, 0, 0)
    assert sim.tick(T0 + timedelta(seconds=10)) == TickResult(0, pending, 0, 0)
    target = info.releases["acme/gateway@2.0.0"]
    assert _rows(db, "SELECT COUNT(*), update_status, status, last_update_status_event FROM device "
                     "WHERE is_running__release = ? AND is_online = 1 AND is_pinned_on__release IS NULL "
                     "GROUP BY 2, 3, 4", target) == [
        (pending, "done", "Idle", "2026-11-27T08:00:10.000Z")]
    assert sim.tick(T0 + timedelta(seconds=20)) == TickResult(0, 0, 0, 0)


def test_a_pin_is_the_target() -> None:
    """A pinned device converges on its pin, not on the fleet's target."""
    db, info = _world(100)
    sim = DeviceSimulator(db, converge_delay=0.0)
    device = _rows(db, "SELECT id FROM device WHERE belongs_to__application = ? AND is_online = 1 "
                       "ORDER BY id LIMIT 1", info.fleets["acme/gateway"])[0][0]
    old = info.releases["acme/gateway@1.4.0"]
    db.conn.execute("UPDATE device SET is_pinned_on__release = ? WHERE id = ?", (old, device))
    sim.tick(T0)
    sim.tick(T0)
    assert _rows(db, "SELECT is_running__release FROM device WHERE id = ?", device) == [(old,)]


def test_stuck_and_offline_fractions() -> None:
    """A deterministic share never converges (aborted) and another goes offline instead."""
    db, info = _world(1000)
    sim = DeviceSimulator(db, converge_delay=1.0, stuck_fraction=0.2, offline_fraction=0.1, seed=9)
    pending = _retarget(db, info)
    fleet = info.fleets["acme/gateway"]
    ids = [r[0] for r in _rows(db, "SELECT id FROM device WHERE belongs_to__application = ? "
                                   "AND is_online = 1 AND is_pinned_on__release IS NULL", fleet)]
    expect_stuck = sum(fraction_of(9, d, "fate") < 0.2 for d in ids)
    expect_offline = sum(0.2 <= fraction_of(9, d, "fate") < 0.3 for d in ids)
    sim.tick(T0)
    result = sim.tick(T0 + timedelta(seconds=1))
    assert result == TickResult(0, pending - expect_stuck - expect_offline, expect_stuck, expect_offline)
    assert 0.1 < expect_stuck / pending < 0.3 and 0.03 < expect_offline / pending < 0.17
    assert _rows(db, "SELECT COUNT(*) FROM device WHERE belongs_to__application = ? AND is_online = 1 AND "
                     "update_status = 'aborted'", fleet) == [(expect_stuck,)]
    id_list = ",".join(map(str, ids))
    assert _rows(db, f"SELECT COUNT(*) FROM device WHERE id IN ({id_list}) AND is_online = 0 AND "
                     "api_heartbeat_state = 'offline' AND last_connectivity_event = ?",
                 "2026-11-27T08:00:01.000Z") == [(expect_offline,)]
    # later ticks change nothing: stuck devices stay stuck, offline devices are left alone
    assert sim.tick(T0 + timedelta(hours=1)) == TickResult(0, 0, 0, 0)


def test_fractions_are_checked() -> None:
    """Fractions outside 0..1 or summing past 1 are refused."""
    db, _ = _world(0)
    with pytest.raises(ValueError, match=r"^stuck_fraction \+ offline_fraction must not exceed 1$"):
        DeviceSimulator(db, stuck_fraction=0.6, offline_fraction=0.6)
    with pytest.raises(ValueError, match=r"^stuck_fraction and offline_fraction must be between 0 and 1$"):
        DeviceSimulator(db, stuck_fraction=-0.1)

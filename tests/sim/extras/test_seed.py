"""Demo data: deterministic, with the documented fleets, keys, counts and distributions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bulkops.sim.db import Database
from bulkops.sim.seed import derive_key, seed_demo

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _db() -> Database:
    return Database.open(":memory:", clock=lambda: NOW)


def _dump(db: Database, table: str) -> list[tuple[Any, ...]]:
    return db.conn.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()


def _one(db: Database, sql: str, *params: Any) -> Any:
    return db.conn.execute(sql, params).fetchone()[0]


def test_same_seed_same_data() -> None:
    """Two databases seeded with the same seed and clock hold identical rows; another seed differs."""
    a, b, c = _db(), _db(), _db()
    info_a, info_b = seed_demo(a, 300, seed=5), seed_demo(b, 300, seed=5)
    seed_demo(c, 300, seed=6)
    assert info_a == info_b
    for table in ("device", "device_tag", "device_environment_variable", "release", "application"):
        assert _dump(a, table) == _dump(b, table)
    assert _dump(a, "device") != _dump(c, "device")


def test_counts_fleets_and_keys() -> None:
    """DemoInfo reports what was written: fleets by slug, keys, counts matching the tables."""
    db = _db()
    info = seed_demo(db, 1000, seed=1)
    assert sorted(info.fleets) == ["acme/gateway", "acme/gateway-next", "acme/sensor", "globex/kiosk"]
    assert info.api_key == derive_key(1, "demo")
    assert info.other_api_key == derive_key(1, "other")
    assert info.api_key not in repr(info)
    for table in ("device", "device_tag", "device_environment_variable", "device_config_variable",
                  "service_install"):
        assert _one(db, f'SELECT COUNT(*) FROM "{table}"') == info.counts[table]
    assert info.counts["device"] == 1000
    assert info.counts["device_tag"] == 2000
    assert _one(db, "SELECT COUNT(DISTINCT uuid) FROM device") == 1000
    assert _one(db, "SELECT COUNT(*) FROM device WHERE length(uuid) = 32") == 1000
    assert _one(db, "SELECT COUNT(DISTINCT device_name) FROM device") == 1000


def test_keys_belong_to_users_of_different_organizations() -> None:
    """The demo key's user is in acme, the other key's user in globex (only globex/kiosk)."""
    db = _db()
    info = seed_demo(db, 0, api_key="my-key")
    assert info.api_key == "my-key"
    sql = (
        "SELECT o.handle FROM api_key k JOIN user u ON u.actor = k.is_of__actor "
        "JOIN organization_membership m ON m.user = u.id "
        "JOIN organization o ON o.id = m.is_member_of__organization WHERE k.key = ?"
    )
    assert _one(db, sql, "my-key") == "acme"
    assert _one(db, sql, info.other_api_key) == "globex"
    assert _one(db, "SELECT organization FROM application WHERE slug = 'globex/kiosk'") == \
        info.organizations["globex"]
    assert _one(db, "SELECT COUNT(*) FROM device") == 0


def test_releases_and_targets() -> None:
    """Fleets target a successful release of their own; acme/gateway: 1.4, 1.5 (target), 1.6 failed, 2.0."""
    db = _db()
    info = seed_demo(db, 0)
    gateway = info.fleets["acme/gateway"]
    rows = db.conn.execute(
        "SELECT semver_major, semver_minor, status FROM release "
        "WHERE belongs_to__application = ? ORDER BY id",
        (gateway,)).fetchall()
    assert rows == [(1, 4, "success"), (1, 5, "success"), (1, 6, "failed"), (2, 0, "success")]
    assert _one(db, "SELECT should_be_running__release FROM application WHERE id = ?", gateway) == \
        info.releases["acme/gateway@1.5.0"]


def test_device_distributions() -> None:
    """Devices vary: online share, long-offline ones, LOG_LEVEL on a share (some debug), canary ring ~5%."""
    db = _db()
    seed_demo(db, 4000, seed=2)
    online = _one(db, "SELECT COUNT(*) FROM device WHERE is_online = 1")
    assert 2800 < online < 3200
    old = (NOW - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert _one(db, "SELECT COUNT(*) FROM device "
                    "WHERE is_online = 0 AND last_connectivity_event < ?", old) > 500
    assert _one(db, "SELECT COUNT(*) FROM device "
                    "WHERE is_online = 1 AND api_heartbeat_state = 'online'") > 2700
    log_levels = dict(db.conn.execute(
        "SELECT value, COUNT(*) FROM device_environment_variable WHERE name = 'LOG_LEVEL' GROUP BY value"))
    assert set(log_levels) == {"info", "warn", "error", "debug"}
    assert 1400 < sum(log_levels.values()) < 1800
    canary = _one(db, "SELECT COUNT(*) FROM device_tag WHERE tag_key = 'ring' AND value = 'canary'")
    assert 120 < canary < 280
    assert _one(db, "SELECT COUNT(*) FROM device_tag WHERE tag_key = 'site'") == 4000
    assert _one(db, "SELECT COUNT(*) FROM device_config_variable "
                    "WHERE name = 'BALENA_SUPERVISOR_POLL_INTERVAL'") > 100
    behind = db.conn.execute(
        "SELECT d.is_online, COUNT(*) FROM device d JOIN application a ON a.id = d.belongs_to__application "
        "WHERE d.is_running__release IS NOT COALESCE(d.is_pinned_on__release, a.should_be_running__release) "
        "GROUP BY d.is_online").fetchall()
    assert len(behind) == 1 and behind[0][0] == 0 and behind[0][1] > 20  # only offline devices lag
    assert _one(db, "SELECT COUNT(*) FROM device WHERE is_pinned_on__release IS NOT NULL") > 100

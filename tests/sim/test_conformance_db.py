"""The simulator database (contract B): tables per resource, WAL, indexes, defaults, injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bulkops import v7
from bulkops.sim.db import Database


def test_file_database_uses_wal_and_has_every_table(tmp_path: Path) -> None:
    """Database.open on a file: WAL journal, one table per v7 resource, reopening keeps the data."""
    path = str(tmp_path / "sim.sqlite")
    db = Database.open(path)
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(v7.RESOURCES) <= tables
    org = db.insert("organization", {"name": "Org", "handle": "org"})
    db.close()
    again = Database.open(path)
    assert again.conn.execute("SELECT id, handle FROM organization").fetchall() == [(org, "org")]
    again.close()


def test_every_link_and_unique_key_is_indexed() -> None:
    """Each FK column leads some index; each unique key has a unique index."""
    db = Database.open()
    for res in v7.RESOURCES.values():
        indexes = db.conn.execute(f'PRAGMA index_list("{res.name}")').fetchall()
        leading = {db.conn.execute(f'PRAGMA index_info("{ix[1]}")').fetchall()[0][2] for ix in indexes}
        unique = {
            tuple(c[2] for c in db.conn.execute(f'PRAGMA index_info("{ix[1]}")')) for ix in indexes if ix[2]
        }
        for fd in res.fields.values():
            if fd.type is v7.FieldType.FK and not fd.computed:
                assert fd.name in leading, (res.name, fd.name)
        for key in res.unique_keys:
            assert tuple(key) in unique, (res.name, key)


def test_insert_fills_ids_timestamps_and_defaults_with_the_clock() -> None:
    """insert() fills id, created_at/modified_at from the injectable clock, actor, uuid, slug, defaults."""
    frozen = datetime(2026, 11, 27, 8, 25, 11, 618_000, tzinfo=UTC)
    db = Database.open(clock=lambda: frozen)
    org = db.insert("organization", {"name": "Org A", "handle": "org_a"})
    app = db.insert("application", {"app_name": "Fleet-One", "organization": org})
    dev = db.insert("device", {"belongs_to__application": app})
    row = db.conn.execute(
        "SELECT created_at, modified_at, actor, uuid, device_name, api_heartbeat_state, is_online "
        "FROM device WHERE id = ?",
        (dev,),
    ).fetchone()
    assert row[:2] == ("2026-11-27T08:25:11.618Z", "2026-11-27T08:25:11.618Z")
    assert row[2] > 0 and len(row[3]) == 32 and row[4] and row[5:] == ("unknown", 0)
    assert db.conn.execute("SELECT slug FROM application WHERE id = ?", (app,)).fetchone() == (
        "org_a/fleet-one",
    )
    assert db.now() == frozen


def test_insert_stores_python_values() -> None:
    """Booleans as 0/1, datetimes as ISO text with ms and Z, JSON as text."""
    db = Database.open()
    app = db.insert(
        "application", {"app_name": "fleet", "organization": db.insert("organization", {"handle": "o"})}
    )
    rel = db.insert(
        "release",
        {
            "belongs_to__application": app,
            "composition": {"services": {}},
            "start_timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "is_invalidated": True,
        },
    )
    row = db.conn.execute(
        "SELECT composition, start_timestamp, is_invalidated FROM release WHERE id = ?", (rel,)
    ).fetchone()
    assert row == ('{"services":{}}', "2026-01-02T03:04:05.000Z", 1)

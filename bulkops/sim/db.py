"""The simulator's SQLite database: one table per v7 resource, built from ``bulkops.schema``.

Table name = resource name, column name = field name, ``id INTEGER PRIMARY KEY AUTOINCREMENT``; FK
columns hold the integer id; datetimes are ISO-8601 UTC text with milliseconds and ``Z``; booleans 0/1;
JSON as text. Computed fields (``device.overall_status``, ``release.semver`` …) are not columns: the
query compiler (``bulkops.sim.sql``) derives them. Every FK and every unique key is indexed.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from bulkops import v7
from bulkops.sim.defaults import _DEFAULTS, _FILLERS
from bulkops.v7 import FieldType, ResourceDef

Clock = Callable[[], datetime]

_ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_INTEGER_TYPES = frozenset(
    {FieldType.SERIAL, FieldType.INTEGER, FieldType.BIG_INTEGER, FieldType.FK, FieldType.BOOLEAN}
)


def iso(dt: datetime) -> str:
    """``2026-11-27T08:25:11.618Z``: how every datetime is stored and answered."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 text (``Z`` or an offset; no zone means UTC); ValueError if it is not one."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def normalize_datetime(value: object) -> str:
    """A stored-form datetime from a datetime, an ISO text, or epoch milliseconds; ValueError otherwise."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str):
        return value if _ISO_MS.match(value) else iso(parse_datetime(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso(datetime.fromtimestamp(value / 1000, UTC))
    raise ValueError(f"not a datetime: {value!r}")


def table_columns(res: ResourceDef) -> list[str]:
    """The stored (non-computed) fields of a resource, in model order."""
    return [f.name for f in res.fields.values() if not f.computed]


def _column_sql(res: ResourceDef, name: str) -> str:
    fd = res.fields[name]
    if fd.type is FieldType.SERIAL:
        return f'"{name}" INTEGER PRIMARY KEY AUTOINCREMENT'
    sql_type = "INTEGER" if fd.type in _INTEGER_TYPES else "TEXT"
    null = "" if fd.nullable else " NOT NULL"
    return f'"{name}" {sql_type}{null}'


def create_statements() -> list[str]:
    """DDL for every resource: tables, FK indexes, unique indexes."""
    out: list[str] = []
    for res in v7.RESOURCES.values():
        cols = ", ".join(_column_sql(res, c) for c in table_columns(res))
        out.append(f'CREATE TABLE IF NOT EXISTS "{res.name}" ({cols})')
        uniques = {tuple(k) for k in res.unique_keys}
        for fd in res.fields.values():
            if fd.type is FieldType.FK and not fd.computed and (fd.name,) not in uniques:
                out.append(
                    f'CREATE INDEX IF NOT EXISTS "ix_{res.name}__{fd.name}" ON "{res.name}" ("{fd.name}")'
                )
        for key in res.unique_keys:
            cols = ", ".join(f'"{c}"' for c in key)
            out.append(
                f'CREATE UNIQUE INDEX IF NOT EXISTS "ux_{res.name}__{"__".join(key)}" '
                f'ON "{res.name}" ({cols})'
            )
    out.append('CREATE INDEX IF NOT EXISTS "ix_device__device_name" ON "device" ("device_name")')
    return out


def to_storage(fd: v7.FieldDef, value: Any) -> Any:
    """A Python value as stored in the column of ``fd`` (bool → 0/1, datetime → ISO text, JSON → text)."""
    if value is None:
        return None
    if fd.type is FieldType.BOOLEAN:
        return 1 if value else 0
    if fd.type is FieldType.DATETIME:
        return normalize_datetime(value)
    if fd.type is FieldType.JSON:
        return orjson.dumps(value).decode()
    if fd.type is FieldType.BIG_INTEGER:
        return int(value)
    return value


class Database:
    """The simulator's state. ``conn`` is a plain sqlite3 connection in autocommit mode (use
    ``with db.transaction():`` for several statements); ``now()`` is the injectable clock."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock | None = None) -> None:
        self.conn = conn
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self._insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._rng = random.Random()  # noqa: S311 - names and ids for simulated rows, not secrets

    @classmethod
    def open(cls, path: str = ":memory:", *, clock: Clock | None = None) -> Database:
        """Open (and create) the database at ``path`` in WAL mode with every table and index."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        for stmt in create_statements():
            conn.execute(stmt)
        return cls(conn, clock)

    def close(self) -> None:
        self.conn.close()

    def set_clock(self, clock: Clock) -> None:
        """Replace the clock (tests freeze or advance time with it)."""
        self._clock = clock

    def now(self) -> datetime:
        """The current time (timezone-aware UTC) from the injectable clock."""
        return self._clock()

    def timestamp(self) -> str:
        """``now()`` in the stored text form."""
        return iso(self._clock())

    def transaction(self) -> _Transaction:
        """``with db.transaction():`` — BEGIN IMMEDIATE … COMMIT, ROLLBACK on error (reentrant)."""
        return _Transaction(self)

    # --- inserting ------------------------------------------------------------------------------

    def insert(self, resource: str, row: Mapping[str, Any]) -> int:
        """Insert one row, filling id, created_at, modified_at and the model's defaults (actor rows,
        uuids, slugs, default device type …). Values may be Python objects (bool, datetime, dict)."""
        with self.transaction():
            return self.insert_row(resource, self.complete(resource, row))

    def insert_many(self, resource: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert many rows in one transaction (fast seeding); returns how many."""
        count = 0
        with self.transaction():
            for row in rows:
                self.insert_row(resource, self.complete(resource, row))
                count += 1
        return count

    def insert_row(self, resource: str, row: Mapping[str, Any]) -> int:
        """Insert exactly ``row`` (already in Python form) plus timestamps; no defaults."""
        res = v7.resource(resource)
        stamp = self.timestamp()
        values = {"created_at": stamp, "modified_at": stamp}
        for name, value in row.items():
            fd = res.fields.get(name)
            if fd is None or fd.computed:
                continue
            values[name] = to_storage(fd, value)
        names = tuple(values)
        sql = self._insert_sql.get((res.name, names))
        if sql is None:
            cols = ", ".join(f'"{n}"' for n in names)
            marks = ", ".join("?" * len(names))
            sql = f'INSERT INTO "{res.name}" ({cols}) VALUES ({marks})'
            self._insert_sql[(res.name, names)] = sql
        cur = self.conn.execute(sql, tuple(values.values()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def complete(self, resource: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` with every default filled in (what a seeding insert gets)."""
        res = v7.resource(resource)
        out = dict(self.defaults(res.name, row))
        out.update(row)
        fill = _FILLERS.get(res.name)
        if fill is not None:
            fill(self, out)
        for name, fd in res.fields.items():
            if (
                name in out
                or fd.computed
                or fd.type is FieldType.SERIAL
                or name in ("created_at", "modified_at")
            ):
                continue
            if fd.nullable:
                continue
            if fd.type is FieldType.BOOLEAN:
                out[name] = False
            elif fd.type in (FieldType.INTEGER, FieldType.BIG_INTEGER):
                out[name] = 0
            elif fd.type in (FieldType.SHORT_TEXT, FieldType.TEXT):
                out[name] = fd.enum[0] if fd.enum else ""
        return out

    def defaults(self, resource: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults balena fills in on create (DB defaults and create hooks), without lookups."""
        base = _DEFAULTS.get(resource, {})
        return {k: v for k, v in base.items() if k not in row}

    def new_actor(self) -> int:
        return self.insert_row("actor", {})

    def random_hex(self, n: int = 32) -> str:
        return uuidlib.UUID(int=self._rng.getrandbits(128), version=4).hex[:n]

    def ensure(self, resource: str, key: Mapping[str, Any], row: Mapping[str, Any]) -> int:
        """The id of the row matching ``key``, inserting ``key | row`` (completed) if there is none."""
        where = " AND ".join(f'"{k}" IS ?' for k in key)
        sql = f'SELECT id FROM "{resource}" WHERE {where}'
        found = self.conn.execute(sql, tuple(key.values())).fetchone()
        if found is not None:
            return int(found[0])
        return self.insert_row(resource, self.complete(resource, {**key, **row}))


class _Transaction:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        self.db.lock.acquire()
        if not self.db.conn.in_transaction:
            self.db.conn.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if self.outer:
                self.db.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.db.lock.release()

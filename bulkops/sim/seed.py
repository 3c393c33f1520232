"""Deterministic demo data for the simulator: organizations, users with API keys, fleets, releases,
devices with env vars, config vars, tags and service installs.

``seed_demo(db, 100_000)`` takes a few seconds: small tables go through ``db.insert``; devices and the
rows hanging off them are written with ``executemany`` in one transaction, using a first row inserted
through ``db.insert`` as the template for every column the seed does not set.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Protocol

DEMO_ORG: Final = "acme"
OTHER_ORG: Final = "globex"
DEVICE_TYPES: Final = (  # slug, name, cpu architecture
    ("raspberrypi4-64", "Raspberry Pi 4 (using 64bit OS)", "aarch64"),
    ("jetson-nano", "Nvidia Jetson Nano SD-CARD", "aarch64"),
    ("intel-nuc", "Intel NUC", "amd64"),
    ("raspberrypi3", "Raspberry Pi 3", "armv7hf"),
)
CPU_ARCHITECTURES: Final = ("rpi", "armv7hf", "aarch64", "i386-nlp", "i386", "amd64")
# slug, device type, device name prefix, share of the devices, releases (semver, status), target semver
FLEETS: Final = (
    ("acme/gateway", "raspberrypi4-64", "gw", 0.50,
     (("1.4.0", "success"), ("1.5.0", "success"), ("1.6.0", "failed"), ("2.0.0", "success")), "1.5.0"),
    ("acme/sensor", "jetson-nano", "sensor", 0.30, (("1.4.0", "success"), ("1.5.0", "success")), "1.5.0"),
    ("acme/gateway-next", "raspberrypi4-64", "gwn", 0.05, (("2.0.0", "success"),), "2.0.0"),
    ("globex/kiosk", "intel-nuc", "kiosk", 0.15, (("1.0.0", "success"), ("1.1.0", "success")), "1.1.0"),
)
SERVICES: Final = {"acme/gateway": ("main", "agent"), "acme/gateway-next": ("main", "agent")}
DEFAULT_SERVICES: Final = ("main",)
SITES: Final = ("berlin", "lyon", "austin", "osaka", "lagos")
LOG_LEVELS: Final = ("info", "warn", "error", "debug")
POLL_INTERVAL: Final = "BALENA_SUPERVISOR_POLL_INTERVAL"


class SeedDatabase(Protocol):
    """What the seed needs from ``bulkops.sim.db.Database``."""

    @property
    def conn(self) -> Any: ...  # sqlite3.Connection

    def insert(self, resource: str, row: dict[str, Any]) -> int: ...

    def now(self) -> Any: ...  # datetime (or ISO text)

    def transaction(self) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True, slots=True)
class DemoInfo:
    api_key: str  # the demo user's key (organization acme)
    other_api_key: str  # a user of organization globex, to prove scoping
    organizations: Mapping[str, int]  # handle -> id
    fleets: Mapping[str, int]  # slug -> id
    releases: Mapping[str, int]  # "<fleet slug>@<semver>" -> id
    device_types: Mapping[str, int]  # slug -> id
    counts: Mapping[str, int]  # table -> rows written by the seed

    def __repr__(self) -> str:  # never show the keys
        return f"DemoInfo(fleets={dict(self.fleets)!r}, counts={dict(self.counts)!r})"


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and 'Z', the simulator's datetime text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now(db: SeedDatabase) -> datetime:
    value = db.now()
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def derive_key(seed: int, who: str) -> str:
    """A deterministic API key for a seeded user (the simulator only binds to loopback)."""
    return "sim_" + hashlib.sha256(f"bulkops-sim:{seed}:{who}".encode()).hexdigest()[:32]


def _columns(db: SeedDatabase, table: str) -> list[str]:
    return [str(row[1]) for row in db.conn.execute(f'PRAGMA table_info("{table}")')]


def _insert(db: SeedDatabase, table: str, row: dict[str, Any]) -> int:
    """``db.insert`` with the keys the table does not have dropped (computed fields, v6 names)."""
    cols = set(_columns(db, table))
    return db.insert(table, {k: v for k, v in row.items() if k in cols})


def bulk_insert(db: SeedDatabase, table: str, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert rows fast: the first through ``db.insert`` (defaults), the rest like it with executemany;
    returns the ids in order. Used by the demo seed and by the benchmark's scenarios."""
    if not rows:
        return []
    first = _insert(db, table, dict(rows[0]))
    cursor = db.conn.execute(f'SELECT * FROM "{table}" WHERE id = ?', (first,))
    names = [d[0] for d in cursor.description]
    template = list(cursor.fetchone())
    keys = [k for k in rows[0] if k in names]
    slots = [names.index(k) for k in keys]
    id_slot = names.index("id")
    values = []
    for offset, row in enumerate(rows[1:], start=1):
        record = template.copy()
        record[id_slot] = first + offset
        for slot, key in zip(slots, keys, strict=True):
            value = row[key]
            record[slot] = int(value) if isinstance(value, bool) else value
        values.append(record)
    column_list = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join("?" for _ in names)
    db.conn.executemany(f'INSERT INTO "{table}" ({column_list}) VALUES ({marks})', values)
    return [first + i for i in range(len(rows))]


def _hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def seed_demo(db: SeedDatabase, n_devices: int, *, seed: int = 0, api_key: str | None = None) -> DemoInfo:
    """Write the demo data set with ``n_devices`` devices (0: organizations, users, fleets only)."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    now = _now(db)
    counts: dict[str, int] = {}
    with db.transaction():
        return _seed_all(db, rng=rng, now=now, n_devices=n_devices, seed=seed, api_key=api_key,
                         counts=counts)


def load_demo(db: SeedDatabase, *, api_key: str | None = None) -> DemoInfo | None:
    """The DemoInfo of a database seeded earlier (a ``--db`` file reused), or None if it holds none.

    A given ``api_key`` replaces the stored key of the demo user."""
    conn = db.conn
    if conn.execute("SELECT 1 FROM organization WHERE handle = ?", (DEMO_ORG,)).fetchone() is None:
        return None
    key_sql = ("SELECT k.id, k.key FROM api_key k JOIN user u ON u.actor = k.is_of__actor "
               "WHERE u.username = ? ORDER BY k.id LIMIT 1")
    keys = {who: conn.execute(key_sql, (who,)).fetchone() for who in ("demo", "globex_admin")}
    if keys["demo"] is None or keys["globex_admin"] is None:
        return None
    demo_key = str(keys["demo"][1])
    if api_key is not None and api_key != demo_key:
        with db.transaction():
            conn.execute("UPDATE api_key SET key = ? WHERE id = ?", (api_key, keys["demo"][0]))
        demo_key = api_key
    orgs = dict(conn.execute("SELECT handle, id FROM organization"))
    fleets = dict(conn.execute("SELECT slug, id FROM application"))
    releases = {
        f"{slug}@{major}.{minor}.{patch}": rid
        for slug, major, minor, patch, rid in conn.execute(
            "SELECT a.slug, r.semver_major, r.semver_minor, r.semver_patch, r.id FROM release r "
            "JOIN application a ON a.id = r.belongs_to__application")
    }
    dtypes = dict(conn.execute("SELECT slug, id FROM device_type"))
    counts = {
        table: int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
        for table in ("organization", "user", "api_key", "application", "release", "device", "device_tag",
                      "device_environment_variable", "device_config_variable", "service_install")
    }
    return DemoInfo(demo_key, str(keys["globex_admin"][1]), MappingProxyType(orgs), MappingProxyType(fleets),
                    MappingProxyType(releases), MappingProxyType(dtypes), MappingProxyType(counts))


def _seed_all(db: SeedDatabase, *, rng: random.Random, now: datetime, n_devices: int, seed: int,
              api_key: str | None, counts: dict[str, int]) -> DemoInfo:
    ts = iso(now)
    arch_ids = {slug: _insert(db, "cpu_architecture", {"slug": slug}) for slug in CPU_ARCHITECTURES}
    dt_ids = {
        slug: _insert(db, "device_type",
                      {"slug": slug, "name": name, "is_of__cpu_architecture": arch_ids[arch]})
        for slug, name, arch in DEVICE_TYPES
    }
    app_type = _insert(db, "application_type", {
        "name": "Microservices", "slug": "microservices", "description": "Multicontainer fleets",
        "supports_gateway_mode": True, "supports_multicontainer": True, "supports_web_url": True,
        "is_legacy": False, "requires_payment": False, "needs__os_version_range": ">=2.11.0",
    })
    orgs = {h: _insert(db, "organization", {"name": n, "handle": h})
            for h, n in ((DEMO_ORG, "Acme Corp"), (OTHER_ORG, "Globex Corporation"))}
    keys = {DEMO_ORG: api_key or derive_key(seed, "demo"), OTHER_ORG: derive_key(seed, "other")}
    for handle, username in ((DEMO_ORG, "demo"), (OTHER_ORG, "globex_admin")):
        actor = _insert(db, "actor", {})
        user = _insert(db, "user",
                       {"actor": actor, "username": username, "email": f"{username}@{handle}.example"})
        _insert(db, "organization_membership", {"user": user, "is_member_of__organization": orgs[handle]})
        _insert(db, "api_key", {"key": keys[handle], "is_of__actor": actor, "name": f"{username} key",
                                "description": "bulkops sim demo key", "expiry_date": None})
    fleets: dict[str, int] = {}
    releases: dict[str, int] = {}
    services: dict[str, list[int]] = {}
    for slug, dtype, _prefix, _share, rels, target in FLEETS:
        handle, app_name = slug.split("/")
        fleet = _insert(db, "application", {
            "actor": _insert(db, "actor", {}), "should_track_latest_release": False, "is_of__class": "fleet",
            "organization": orgs[handle], "app_name": app_name, "slug": slug,
            "is_for__device_type": dt_ids[dtype], "application_type": app_type, "is_host": False,
            "is_archived": False, "uuid": _hex32(rng),
            "is_public": False,
        })
        fleets[slug] = fleet
        for n, (semver, status) in enumerate(rels):
            major, minor, patch = (int(p) for p in semver.split("."))
            started = now - timedelta(days=30 * (len(rels) - n))
            releases[f"{slug}@{semver}"] = _insert(db, "release", {
                "belongs_to__application": fleet, "commit": _hex32(rng), "composition": {},
                "status": status, "source": "cloud", "is_invalidated": False, "start_timestamp": iso(started),
                "end_timestamp": iso(started + timedelta(minutes=7)), "update_timestamp": iso(started),
                "is_passing_tests": True, "semver": semver, "semver_major": major, "semver_minor": minor,
                "semver_patch": patch, "semver_prerelease": "", "semver_build": "", "variant": "",
                "revision": 0,
                "phase": None, "release_version": None,
            })
        db.conn.execute("UPDATE application SET should_be_running__release = ? WHERE id = ?",
                        (releases[f"{slug}@{target}"], fleet))
        services[slug] = [_insert(db, "service", {"application": fleet, "service_name": s})
                          for s in SERVICES.get(slug, DEFAULT_SERVICES)]
        _insert(db, "application_config_variable",
                {"application": fleet, "name": POLL_INTERVAL, "value": "900000"})
        for name, value in (("LOG_LEVEL", "info"), ("MQTT_HOST", f"mqtt.{handle}.example")):
            _insert(db, "application_environment_variable",
                    {"application": fleet, "name": name, "value": value})
    counts.update(organization=2, user=2, api_key=2, application=len(fleets), release=len(releases))
    if n_devices > 0:
        _seed_devices(db, rng=rng, now=now, ts=ts, n=n_devices, fleets=fleets, releases=releases,
                      services=services, dt_ids=dt_ids, counts=counts)
    return DemoInfo(keys[DEMO_ORG], keys[OTHER_ORG], MappingProxyType(orgs), MappingProxyType(fleets),
                    MappingProxyType(releases), MappingProxyType(dt_ids), MappingProxyType(counts))


def _seed_devices(db: SeedDatabase, *, rng: random.Random, now: datetime, ts: str, n: int,
                  fleets: dict[str, int], releases: dict[str, int], services: dict[str, list[int]],
                  dt_ids: dict[str, int], counts: dict[str, int]) -> None:
    first_actor = bulk_insert(db, "actor", [{"created_at": ts, "modified_at": ts} for _ in range(n)])
    devices: list[dict[str, Any]] = []
    owners: list[str] = []
    numbers = dict.fromkeys(fleets, 0)
    created = [iso(now - timedelta(days=days)) for days in range(1, 731)]
    weights = [f[3] for f in FLEETS]
    for i in range(n):
        slug, dtype, prefix, _share, rels, target = rng.choices(FLEETS, weights=weights)[0]
        numbers[slug] += 1
        owners.append(slug)
        good = [s for s, status in rels if status == "success"]
        running = target if rng.random() < 0.85 or len(good) == 1 else rng.choice(good)
        online = rng.random() < 0.75
        # an online device runs its effective target: one on an older release is pinned to it
        pinned = releases[f"{slug}@{running}"] if running != target and online else None
        if online:
            seen = now - timedelta(seconds=rng.randrange(60, 86_400))
            heartbeat = "online" if rng.random() < 0.97 else "timeout"
        else:
            seen = now - timedelta(seconds=rng.randrange(3_600, 365 * 86_400))
            heartbeat = "offline" if rng.random() < 0.95 else "unknown"
        seen_at = iso(seen)
        devices.append({
            "actor": first_actor[i], "uuid": _hex32(rng), "device_name": f"{prefix}-{numbers[slug]:05d}",
            "is_of__device_type": dt_ids[dtype], "belongs_to__application": fleets[slug],
            "is_online": online, "api_heartbeat_state": heartbeat,
            "changed_api_heartbeat_state_on__date": seen_at, "last_connectivity_event": seen_at,
            "is_connected_to_vpn": online, "last_vpn_event": seen_at,
            "is_running__release": releases[f"{slug}@{running}"], "is_pinned_on__release": pinned,
            "status": "Idle", "update_status": "done", "last_update_status_event": seen_at,
            "os_version": rng.choice(("balenaOS 5.3.21", "balenaOS 6.0.13", "balenaOS 6.1.2")),
            "os_variant": "prod", "supervisor_version": rng.choice(("16.4.6", "16.7.1")),
            "ip_address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "note": None,
            "is_undervolted": False, "is_web_accessible": False,
            "created_at": created[rng.randrange(730)], "modified_at": ts,
        })
    device_ids = bulk_insert(db, "device", devices)
    env: list[dict[str, Any]] = []
    conf: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    installs: list[dict[str, Any]] = []
    for device, slug in zip(device_ids, owners, strict=True):
        if rng.random() < 0.4:
            env.append({"device": device, "name": "LOG_LEVEL", "value": rng.choice(LOG_LEVELS)})
        if rng.random() < 0.05:
            conf.append({"device": device, "name": POLL_INTERVAL, "value": "600000"})
        ring = "canary" if rng.random() < 0.05 else "stable"
        tags.append({"device": device, "tag_key": "ring", "value": ring})
        tags.append({"device": device, "tag_key": "site", "value": rng.choice(SITES)})
        installs.extend({"device": device, "installs__service": s} for s in services[slug])
    for table, rows in (("device_environment_variable", env), ("device_config_variable", conf),
                        ("device_tag", tags), ("service_install", installs)):
        for row in rows:
            row["created_at"] = row["modified_at"] = ts
        bulk_insert(db, table, rows)
        counts[table] = len(rows)
    counts["device"] = n

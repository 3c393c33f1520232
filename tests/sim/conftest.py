"""A simulated API (``make_app`` over a fresh SQLite database) on 127.0.0.1, one per test module, with
a small deterministic dataset, and a plain HTTP helper that sends request targets exactly as written."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from bulkops.sim.app import make_app
from bulkops.sim.db import Database

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789"
CAROL = "carol-key-0123456789"  # a member of both organizations: sees every fleet
EXPIRED = "expired-key-0123456789"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def d(self) -> Any:
        return self.json()["d"]


@dataclass
class Data:
    """Ids of the seeded rows."""

    org_a: int = 0
    org_b: int = 0
    alice: int = 0
    bob: int = 0
    rpi4: int = 0
    amd64: int = 0
    alpha: int = 0
    beta: int = 0
    gamma: int = 0
    releases: dict[str, int] = field(default_factory=dict)
    devices: list[int] = field(default_factory=list)  # 1..20: alpha 12, beta 4, gamma 4
    uuids: dict[int, str] = field(default_factory=dict)
    service: int = 0
    service_install: int = 0


def enc(target: str) -> str:
    """A request target with spaces percent-encoded (what a client sends for ``$filter=id eq 1``)."""
    return target.replace(" ", "%20")


class Api:
    """The running server and a request helper (Bearer ALICE unless told otherwise)."""

    def __init__(self, db: Database, port: int, data: Data) -> None:
        self.db = db
        self.port = port
        self.data = data

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        token: str | None = ALICE,
        headers: Mapping[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> Answer:
        target = enc(target)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent.setdefault("Authorization", f"Bearer {token}")
            payload = raw_body
            if payload is None and body is not None:
                payload = orjson.dumps(body)
                sent.setdefault("Content-Type", "application/json")
            conn.request(method, target, body=payload, headers=sent)
            response = conn.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, target: str, **kw: Any) -> Answer:
        return self.request("GET", target, **kw)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return list(self.db.conn.execute(sql, params).fetchall())


def seed(db: Database) -> Data:
    """Two organizations, two users with keys, three fleets, releases, 20 devices, vars and tags."""
    d = Data()
    d.org_a = db.insert("organization", {"name": "Org A", "handle": "org_a"})
    d.org_b = db.insert("organization", {"name": "Org B", "handle": "org_b"})
    for name, org, key in (("alice", d.org_a, ALICE), ("bob", d.org_b, BOB)):
        actor = db.new_actor()
        user = db.insert("user", {"username": name, "email": f"{name}@example.com", "actor": actor})
        db.insert("organization_membership", {"user": user, "is_member_of__organization": org})
        db.insert("api_key", {"key": key, "is_of__actor": actor, "name": f"{name} key"})
        setattr(d, name, user)
    carol = db.insert("user", {"username": "carol", "actor": db.new_actor()})
    carol_actor = db.conn.execute("SELECT actor FROM user WHERE id = ?", (carol,)).fetchone()[0]
    for org in (d.org_a, d.org_b):
        db.insert("organization_membership", {"user": carol, "is_member_of__organization": org})
    db.insert("api_key", {"key": CAROL, "is_of__actor": carol_actor})
    db.insert("api_key", {"key": EXPIRED, "is_of__actor": carol_actor, "expiry_date": "2020-01-01T00:00:00Z"})
    arm = db.insert("cpu_architecture", {"slug": "aarch64"})
    amd = db.insert("cpu_architecture", {"slug": "amd64"})
    d.rpi4 = db.insert(
        "device_type", {"slug": "raspberrypi4-64", "name": "Raspberry Pi 4", "is_of__cpu_architecture": arm}
    )
    d.amd64 = db.insert(
        "device_type", {"slug": "generic-amd64", "name": "Generic x86_64", "is_of__cpu_architecture": amd}
    )
    d.alpha = db.insert(
        "application", {"app_name": "fleet-alpha", "organization": d.org_a, "is_for__device_type": d.rpi4}
    )
    d.beta = db.insert(
        "application", {"app_name": "fleet-beta", "organization": d.org_a, "is_for__device_type": d.rpi4}
    )
    d.gamma = db.insert(
        "application", {"app_name": "fleet-gamma", "organization": d.org_b, "is_for__device_type": d.amd64}
    )
    for name, app, status in (
        ("a1", d.alpha, "success"),
        ("a2", d.alpha, "success"),
        ("a3", d.alpha, "failed"),
        ("b1", d.beta, "success"),
        ("g1", d.gamma, "success"),
    ):
        d.releases[name] = db.insert(
            "release",
            {
                "belongs_to__application": app,
                "commit": f"{name}" * 8,
                "status": status,
                "semver_major": 1,
                "start_timestamp": "2026-01-01T00:00:00.000Z",
            },
        )
    db.conn.execute(
        "UPDATE application SET should_be_running__release = ? WHERE id = ?", (d.releases["a1"], d.alpha)
    )
    for i in range(20):
        app = d.alpha if i < 12 else d.beta if i < 16 else d.gamma
        uuid = f"{i + 1:02d}" + "ab" * 15
        dev = db.insert(
            "device",
            {
                "belongs_to__application": app,
                "device_name": f"dev-{i + 1:02d}",
                "uuid": uuid,
                "is_of__device_type": d.amd64 if app == d.gamma else d.rpi4,
                "note": None if i % 3 == 0 else f"note {i + 1}",
                "is_online": i % 2 == 0,
                "api_heartbeat_state": "online" if i % 2 == 0 else "offline",
                "os_version": "balenaOS 5.1.0" if i < 6 else "balenaOS 4.0.0",
                "last_connectivity_event": f"2026-0{1 + i % 9}-15T12:00:00.000Z",
            },
        )
        d.devices.append(dev)
        d.uuids[dev] = uuid
        if i < 5:
            db.insert("device_environment_variable", {"device": dev, "name": "DEV_VAR_1", "value": f"v{i}"})
        db.insert("device_tag", {"device": dev, "tag_key": "ring", "value": "canary" if i < 3 else "stable"})
        if i < 2:
            db.insert("device_tag", {"device": dev, "tag_key": "site", "value": "lab"})
    db.insert(
        "device_config_variable",
        {"device": d.devices[0], "name": "BALENA_SUPERVISOR_POLL_INTERVAL", "value": "900000"},
    )
    db.insert("application_environment_variable", {"application": d.alpha, "name": "APP_VAR", "value": "x"})
    db.insert("application_tag", {"application": d.alpha, "tag_key": "team", "value": "core"})
    d.service = db.insert("service", {"application": d.alpha, "service_name": "main"})
    d.service_install = db.insert("service_install", {"device": d.devices[0], "installs__service": d.service})
    db.insert(
        "device_service_environment_variable",
        {"service_install": d.service_install, "name": "SVC_VAR", "value": "1"},
    )
    return d


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    """The API on a fresh database, serving from its own thread for the whole test module."""
    db = Database.open()
    data = seed(db)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        runner = web.AppRunner(make_app(db), access_log=None, handle_signals=False)

        async def start() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = runner.addresses[0][1]
            box["stop"] = asyncio.Event()
            ready.set()

        loop.run_until_complete(start())
        loop.run_until_complete(box["stop"].wait())
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Api(db, box["port"], data)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        db.close()

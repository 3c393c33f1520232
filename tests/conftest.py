"""Shared fixtures: a running simulator with the demo data (fresh per test), a private BULKOPS_HOME,
and helpers that read the simulator's database and request log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkops.sim.server import SimConfig, SimServer

DEMO_DEVICES = 2000
WRITES = frozenset({"POST", "PATCH", "PUT", "MERGE", "DELETE"})
_ID_LIST = re.compile(r"\bid in \(([0-9, ]+)\)")
_KEY = re.compile(r"^/v7/[a-z_]+\((\d+)\)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start_sim(**kw: Any) -> SimServer:
    """A simulator serving the demo data from its own thread; the device simulation kept quiet so
    tests see only their own changes."""
    cfg = SimConfig(seed_demo=kw.pop("seed_demo", DEMO_DEVICES), tick_interval=3600.0, converge_delay=3600.0,
                    **kw)
    return SimServer(cfg).start_in_thread()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = start_sim()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BULKOPS_HOME in the test's temporary directory."""
    path = tmp_path / "bulkops-home"
    monkeypatch.setenv("BULKOPS_HOME", str(path))
    return path


@pytest.fixture
def env(sim: SimServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """The CLI's environment: the simulator's URL and key, no other token."""
    monkeypatch.setenv("BALENA_API_URL", sim.url)
    monkeypatch.setenv("BALENA_API_KEY", sim.api_key)
    monkeypatch.delenv("BALENA_TOKEN", raising=False)
    return sim


def rows(sim: SimServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the simulator's database."""
    return list(sim.db.conn.execute(sql, params).fetchall())


def writes(sim: SimServer) -> list[Any]:
    """Write requests the simulator received (every attempt, throttled ones included)."""
    return [e for e in sim.request_log.entries() if e.method in WRITES]


def addressed_ids(url: str) -> set[int]:
    """The row ids a request URL addresses: ``id in (…)`` lists and a numeric key."""
    out: set[int] = set()
    for m in _ID_LIST.finditer(url):
        out.update(int(x) for x in m.group(1).replace(" ", "").split(",") if x)
    m = _KEY.match(url)
    if m:
        out.add(int(m.group(1)))
    return out


def human(stderr: str) -> str:
    """The CLI's stderr as a terminal would show it: off a terminal each message is a JSON line
    (``{"level": "error", "message": …}``); this renders them back to ``bulkops: error: …`` lines.
    Other JSON lines (log events, progress) are dropped; text lines pass through."""
    out: list[str] = []
    for line in stderr.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(doc, dict) or "message" not in doc:
            continue
        prefix = "error: " if doc.get("level") == "error" else ""
        out.append(f"bulkops: {prefix}{doc['message']}")
    return "".join(f"{line}\n" for line in out)

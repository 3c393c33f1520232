"""Rollout fixtures: a simulator whose devices converge, a virtual clock shared by the rollout and the
simulator (a sleep advances time and ticks the devices, nothing waits for real), and the library
pipeline plan → apply_rollout."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from bulkops import make_plan, new_run, open_client, parse_job
from bulkops.apply.engine import RunControl
from bulkops.apply.rollout import Clock, apply_rollout
from bulkops.journal.gates import GateStore
from bulkops.journal.journal import Journal
from bulkops.model import Plan, RolloutProgress, RunSummary
from bulkops.sim.server import SimConfig, SimServer
from tests.conftest import rows

FLEET = "acme/gateway"


class VirtualClock:
    """Time that moves only when the rollout sleeps: each sleep advances it, points the simulator's
    database and fault window at it, and ticks the simulated devices once."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self.start = datetime.now(UTC)
        self.offset = 0.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []
        self.hooks: list[tuple[float, Callable[[], None]]] = []  # (offset, action) run once reached
        sim.db.set_clock(self.now)
        sim.faults.set_clock(lambda: self.offset)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def at(self, offset: float, action: Callable[[], None]) -> None:
        """Run ``action`` when virtual time first reaches ``offset`` seconds."""
        self.hooks.append((offset, action))

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += seconds
        due = [h for h in self.hooks if h[0] <= self.offset]
        self.hooks = [h for h in self.hooks if h[0] > self.offset]
        for _, action in due:
            action()
        self.sim.devices.tick()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await anyio.sleep(0)


def start_rollout_sim(**kw: Any) -> SimServer:
    """A simulator with the demo data whose devices converge ``converge_delay`` (virtual) seconds after
    they first see a new target; ticks only when a test (or its clock) asks."""
    cfg = SimConfig(seed_demo=kw.pop("seed_demo", 2000), tick_interval=3600.0,
                    converge_delay=kw.pop("converge_delay", 20.0), **kw)
    return SimServer(cfg).start_in_thread()


@pytest.fixture
def rsim() -> Iterator[SimServer]:
    server = start_rollout_sim()
    try:
        yield server
    finally:
        server.stop()


def pin_job(rollout: str, *, name: str = "pin-gateways", release: str = "2.0.0", fleet: str = FLEET,
            filt: str = "is_online eq true", options: str = "") -> str:
    lines = [f'name = "{name}"', "[target]", 'resource = "device"', f'fleet = "{fleet}"',
             f'filter = "{filt}"', "[action]", 'type = "pin"', f'release = "{release}"', "[rollout]", rollout]
    if options:
        lines += ["[options]", options]
    return "\n".join(lines) + "\n"


async def plan_of(sim: SimServer, text: str) -> Plan:
    job = parse_job(text, path="job.toml")
    async with open_client(sim.url, sim.api_key, job.options) as client:
        return await make_plan(job, client, api_url=sim.url)


async def roll(sim: SimServer, plan: Plan, clock: Clock, journal: Journal | None = None,
               control: RunControl | None = None,
               seen: list[RolloutProgress] | None = None) -> tuple[RunSummary, Journal]:
    """Apply (or resume, given its journal) a rollout plan through the library on the virtual clock."""
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        journal = journal or new_run(plan)
        summary = await apply_rollout(plan, client, journal, new_run=new_run, clock=clock, control=control,
                                      on_rollout=None if seen is None else seen.append)
    return summary, journal


def staged(plan: Plan) -> dict[int, list[int]]:
    """Stage → target ids."""
    out: dict[int, list[int]] = {}
    for it in plan.items:
        if it.stage:
            out.setdefault(it.stage, []).append(it.target_id)
    return out


def store_of(journal: Journal) -> GateStore:
    store = GateStore.existing(journal.path)
    assert store is not None
    return store


def pins(sim: SimServer, ids: list[int]) -> dict[int, Any]:
    listed = ",".join(map(str, ids)) or "0"
    return dict(rows(sim, f"SELECT id, is_pinned_on__release FROM device WHERE id IN ({listed})"))


def release_id(sim: SimServer, name: str) -> int:
    return int(sim.demo.releases[name])


@pytest.fixture
def clock(rsim: SimServer) -> VirtualClock:
    return VirtualClock(rsim)

"""The stop switch: a fleet env var read between batches and once per gate poll; set, it stops the
rollout within one poll interval; removed, `resume` goes on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from bulkops.journal.gates import EventKind, parse_stamp
from bulkops.model import RunState
from bulkops.sim.server import SimServer
from tests.conftest import addressed_ids, writes

from .conftest import VirtualClock, pin_job, plan_of, roll, store_of

pytestmark = pytest.mark.anyio
SWITCH = "application_environment_variable"


def switch_reads(sim: SimServer, start: int = 0) -> int:
    entries = sim.request_log.entries()[start:]
    return sum(1 for e in entries if e.method == "GET" and f"/v7/{SWITCH}?" in e.url)


def set_switch(sim: SimServer) -> None:
    fleet = sim.demo.fleets["acme/gateway"]
    sim.db.insert(SWITCH, {"application": fleet, "name": "BULKOPS_STOP", "value": "1"})


async def test_stop_switch_during_polling(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """Set while the gate is polled, the switch stops the rollout at the next poll (one GET per poll, not
    per device); the stage is not promoted; once removed, `resume` completes the rollout."""
    rsim.devices.converge_delay = 1000  # the gate stays pending
    plan = await plan_of(rsim, pin_job('stages = ["5", "100%"]\nwait = "1m"\npoll_every = "30s"\n'
                                       'gate_timeout = "1h"\nstop_switch = "BULKOPS_STOP"'))
    first = {it.target_id for it in plan.items if it.stage == 1}
    clock.at(75, lambda: set_switch(rsim))
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.STOPPED
    assert summary.message == ("stopped: the stop switch BULKOPS_STOP is set on fleet acme/gateway "
                               f"(stage 1 of 2); remove it, then `bulkops resume {journal.run_id}`")
    store = store_of(journal)
    stop = next(e for e in store.events() if e.kind is EventKind.STOP)
    assert parse_stamp(stop.at) - clock.start <= timedelta(seconds=75 + 30)  # within one poll interval
    assert store.stages()[0].polls == 1
    assert switch_reads(rsim) == 3  # before the first write, at the poll, at the poll that saw it
    assert {i for e in writes(rsim) for i in addressed_ids(e.url)} == first
    store.close()
    rsim.db.conn.execute(f"DELETE FROM {SWITCH} WHERE name = 'BULKOPS_STOP'")
    rsim.devices.converge_delay = 0
    summary, journal = await roll(rsim, plan, clock, journal)
    assert summary.state is RunState.DONE
    journal.close()


class StepClock:
    """A clock that moves ``step`` seconds each time it is read; runs ``action`` once it passes ``at``."""

    def __init__(self, step: float, at: float, action: Callable[[], None]) -> None:
        self.start = self.t = datetime.now(UTC)
        self.step, self.at, self.action, self.fired = step, at, action, False

    def now(self) -> datetime:
        self.t += timedelta(seconds=self.step)
        if not self.fired and (self.t - self.start).total_seconds() >= self.at:
            self.fired = True
            self.action()
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        await anyio.sleep(0)


async def test_stop_switch_between_batches(rsim: SimServer, home: Path) -> None:
    """Set while a stage is being written, the switch is read again within one poll interval and stops
    dispatch: only the batches already let through (at most one interval's worth, plus those in flight)
    still go out."""
    plan = await plan_of(rsim, pin_job('stages = ["100%"]\ngate = "none"\npoll_every = "30s"\n'
                                       'stop_switch = "BULKOPS_STOP"',
                                       options="batch_size = 5\nmax_concurrency = 1"))
    marks: list[int] = []

    def flip() -> None:
        marks.append(len(writes(rsim)))
        set_switch(rsim)

    clock = StepClock(10.0, 200.0, flip)
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.STOPPED
    after = len(writes(rsim)) - marks[0]
    assert marks[0] > 5 and after <= 3 + 1  # one poll interval is 3 reads of this clock; 1 in flight
    assert summary.counts["not_attempted"] > len(plan.items) // 2
    journal.close()

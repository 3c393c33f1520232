"""An exception nothing in the engine expected still ends the run cleanly: the journal records it as
stopped with the error, the run's lock is released, the exception reaches the caller, resume finishes."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from bulkops import apply_plan, new_run, open_client
from bulkops.journal.journal import Journal
from bulkops.model import Progress, RunState
from bulkops.sim.server import SimServer
from tests.apply.test_apply_e2e import resume_only
from tests.apply.test_conditional_writes import _plan
from tests.conftest import rows

pytestmark = pytest.mark.anyio
JOB = """\
name = "crash"
[target]
resource = "device"
fleet = "acme/gateway-next"
[action]
type = "set_env"
name = "CRASH"
value = "on"
"""


async def test_unexpected_exception_stops_the_run_and_releases_its_lock(sim: SimServer, home: Path) -> None:
    """A progress callback that raises (here: the terminal went away) ends apply_plan with that error,
    the run stopped (not left running) and unlocked; resume then completes it."""
    plan = await _plan(sim.url, sim.api_key, JOB)
    calls = 0

    def broken_terminal(p: Progress) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise BrokenPipeError(32, "Broken pipe")

    async with open_client(sim.url, sim.api_key, plan.options) as client:
        journal = new_run(plan)
        with pytest.raises(BrokenPipeError):
            await apply_plan(plan, client, journal, on_progress=broken_terminal)
    assert journal.state() is RunState.STOPPED
    assert journal.message() == "internal error: BrokenPipeError: [Errno 32] Broken pipe"
    other = Journal.open(journal.run_dir)
    assert not other.in_use()
    other.lock()  # a second process could resume it now
    other.close()
    assert journal.info().state == "stopped"
    journal.close()
    final, resumed = await resume_only(sim, plan, journal.run_dir)
    resumed.close()
    assert final.state is RunState.DONE and final.counts["applied"] == len(plan.items)
    fleet = sim.demo.fleets["acme/gateway-next"]
    assert rows(sim, "SELECT COUNT(*) FROM device d JOIN device_environment_variable v ON v.device=d.id "
                     "AND v.name='CRASH' AND v.value='on' WHERE d.belongs_to__application=?", fleet) == [
        (len(plan.items),)]


async def test_cancelled_apply_is_interrupted_and_unlocked(sim: SimServer, home: Path) -> None:
    """apply_plan cancelled from outside (an enclosing cancel scope) leaves the run interrupted, its lock
    released; resume completes it."""
    plan = await _plan(sim.url, sim.api_key, JOB)
    with anyio.CancelScope() as scope:

        def cancel_soon(p: Progress) -> None:
            if p.done == 5:
                scope.cancel()

        async with open_client(sim.url, sim.api_key, plan.options) as client:
            journal = new_run(plan)
            await apply_plan(plan, client, journal, on_progress=cancel_soon)
    assert scope.cancelled_caught
    assert (journal.state(), journal.message()) == (
        RunState.INTERRUPTED, "cancelled: dispatch stopped, journal flushed")
    other = Journal.open(journal.run_dir)
    assert not other.in_use()
    other.close()
    journal.close()
    final, resumed = await resume_only(sim, plan, journal.run_dir)
    resumed.close()
    assert final.state is RunState.DONE and final.counts["applied"] == len(plan.items)

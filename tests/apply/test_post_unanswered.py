"""Creates whose POST got no answer, through the engine against the simulator: one that may have been
applied is resolved by reading (and sent again only when the read shows it absent); one that never
reached the server is failed as not sent, without a read."""

from __future__ import annotations

import collections
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkops import apply_plan, new_run, open_client
from bulkops.model import Outcome, RunState
from bulkops.sim.server import SimServer
from tests.apply.test_apply_e2e import apply_only, job_text, plan_only
from tests.conftest import rows, start_sim

pytestmark = pytest.mark.anyio
NEW_FLAG = 'type = "set_env"\nname = "NEW_FLAG"\nvalue = "1"'


@pytest.fixture
def small() -> Iterator[SimServer]:
    server = start_sim(seed_demo=600)
    try:
        yield server
    finally:
        server.stop()


def created_once(sim: SimServer, creates: int) -> None:
    dupes = rows(sim, "SELECT device FROM device_environment_variable WHERE name='NEW_FLAG' "
                      "GROUP BY device HAVING COUNT(*) > 1")
    assert dupes == []
    assert rows(sim, "SELECT COUNT(*) FROM device_environment_variable WHERE name='NEW_FLAG'") == [(creates,)]


async def test_applied_post_whose_answer_was_lost_is_read_not_resent(small: SimServer, home: Path) -> None:
    """30 % of POST answers dropped after the row was made: each is read back, no POST sent twice, no 409."""
    plan = await plan_only(small, job_text(NEW_FLAG))
    creates = plan.counts()["create"]
    small.faults.set_spec("lost=0.3,methods=POST,seed=3")
    summary, journal = await apply_only(small, plan)
    small.faults.set_spec("none")
    posts = [e for e in small.request_log.entries() if e.method == "POST"]
    lost = sum(1 for e in posts if e.outcome == "fault:lost")
    assert summary.state is RunState.DONE and summary.counts["applied"] == creates
    assert lost > 20 and len(posts) == creates  # every planned create sent exactly once
    assert [e for e in posts if e.status == 409] == []
    statuses = collections.Counter(it.status for it in journal.items())
    assert statuses == {201: creates - lost, None: lost}
    created_once(small, creates)
    journal.close()


async def test_post_reset_before_it_was_applied_is_read_then_resent(small: SimServer, home: Path) -> None:
    """10 % of POSTs reset before the server handled them: read back as absent, sent again, applied once."""
    plan = await plan_only(small, job_text(NEW_FLAG))
    creates = plan.counts()["create"]
    small.faults.set_spec("reset=0.1,methods=POST,seed=5")  # 6 resets in a row for one create: ~3e-4
    summary, journal = await apply_only(small, plan)
    small.faults.set_spec("none")
    posts = [e for e in small.request_log.entries() if e.method == "POST"]
    resets = sum(1 for e in posts if e.outcome == "fault:reset")
    assert summary.state is RunState.DONE and summary.counts["applied"] == creates
    assert resets > 10 and len(posts) == creates + resets
    assert [e for e in posts if e.status == 409] == []
    attempts = collections.Counter(a.method for a in journal.attempts())
    assert attempts["POST"] == creates + resets
    created_once(small, creates)
    journal.close()


async def test_post_that_never_reached_the_server_fails_as_not_sent(small: SimServer, home: Path) -> None:
    """Nobody listening at apply: every create is failed as not sent, with the connect error; no read."""
    plan = await plan_only(small, job_text(NEW_FLAG, fleet="acme/gateway-next"))
    assert len(plan.items) >= 10
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = dataclasses.replace(plan.options, max_attempts=2)
    async with open_client(dead, small.api_key, options) as client:
        journal = new_run(plan)
        summary = await apply_plan(plan, client, journal)
        stats = client.statistics()
    assert summary.state is RunState.DONE
    assert summary.counts["failed"] == len(plan.items)
    host_port = dead.removeprefix("http://")
    for item in journal.items():
        assert item.outcome is Outcome.FAILED and item.status is None
        assert item.error == (
            f"not sent: POST {dead}/v7/device_environment_variable: could not connect to {host_port} "
            f"(refused or unreachable) (gave up after {options.max_attempts} attempts)"
        )
    assert stats.requests == len(plan.items) * options.max_attempts  # POSTs only: no read-back
    journal.close()

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
from bulkops.model import RunState
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


async def test_post_that_never_reached_the_server_is_left_for_resume(small: SimServer, home: Path) -> None:
    """Nobody listening at apply: no create is read or failed; the run stops with them not attempted,
    saying why, and resume against the server sends each once."""
    plan = await plan_only(small, job_text(NEW_FLAG, fleet="acme/gateway-next"))
    n = len(plan.items)
    assert n >= 10 and plan.counts()["create"] == n
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = dataclasses.replace(plan.options, max_attempts=2)
    async with open_client(dead, small.api_key, options) as client:
        journal = new_run(plan)
        summary = await apply_plan(plan, client, journal)
        stats = client.statistics()
    host_port = dead.removeprefix("http://")
    assert summary.state is RunState.STOPPED
    assert summary.message == (
        f"{n} targets not attempted (POST {dead}/v7/device_environment_variable: could not connect to "
        f"{host_port} (refused or unreachable) (gave up after 2 attempts))"
    )
    assert summary.counts["not_attempted"] == n
    assert all(it.state == "planned" and it.outcome is None for it in journal.items())
    assert stats.requests == n * 2  # POSTs only: nothing read back
    before = len(small.request_log.entries())
    async with open_client(small.url, small.api_key, plan.options) as client:
        final = await apply_plan(plan, client, journal)
    journal.close()
    sent = small.request_log.entries()[before:]
    assert final.state is RunState.DONE and final.counts["applied"] == n
    assert [e.method for e in sent] == ["POST"] * n  # resume sends each once, reads nothing first
    created_once(small, n)

"""Apply under a hostile server: lost answers on POST, a 429 storm, the journal's record of it all."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bulkops import apply_plan, open_client
from bulkops.apply.engine import RunControl
from bulkops.model import ChangeKind, Progress, RunState
from bulkops.sim.server import SimServer
from tests.apply.test_apply_e2e import apply_only, job_text, plan_only
from tests.conftest import rows, start_sim

pytestmark = pytest.mark.anyio


@pytest.fixture
def lossy() -> Iterator[SimServer]:
    server = start_sim(seed_demo=600)
    try:
        yield server
    finally:
        server.stop()


async def test_lost_post_answers_resolved_by_reading(lossy: SimServer, home: Path) -> None:
    """POSTs whose answers are lost are retried; the 409 is resolved by reading: applied, no duplicates."""
    plan = await plan_only(lossy, job_text('type = "set_env"\nname = "NEW_FLAG"\nvalue = "1"'))
    creates = plan.counts()["create"]
    assert creates == len(plan.items) > 100
    lossy.faults.set_spec("lost=0.3,methods=POST,seed=3")
    summary, journal = await apply_only(lossy, plan)
    lossy.faults.set_spec("none")
    assert summary.state is RunState.DONE
    assert summary.counts["applied"] == creates and summary.counts["failed"] == 0
    entries = [e for e in lossy.request_log.entries() if e.method == "POST"]
    lost = [e for e in entries if e.outcome == "fault:lost"]
    created = [e for e in entries if e.status == 201]
    answered = [e for e in created if e.outcome == "ok"]
    assert lost and len(created) == creates  # every row created exactly once
    dupes = rows(lossy, "SELECT device, COUNT(*) FROM device_environment_variable WHERE name='NEW_FLAG' "
                        "GROUP BY device HAVING COUNT(*) > 1")
    assert dupes == []
    total = rows(lossy, "SELECT COUNT(*) FROM device_environment_variable WHERE name='NEW_FLAG'")
    assert total == [(creates,)]
    statuses = collections.Counter(it.status for it in journal.items())
    # an item whose every answer was lost (the client gave up: no status) is resolved by reading it
    assert statuses[201] == len(answered) and set(statuses) <= {201, 409, None}
    assert statuses[409] + statuses[None] == creates - len(answered) > 0
    journal.close()


async def test_429_storm_completes(lossy: SimServer, home: Path) -> None:
    """Under a tight rate limit the run still completes correctly, with every target applied once."""
    plan = await plan_only(lossy, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "error"'))
    active = sum(1 for it in plan.items if it.kind is not ChangeKind.NOOP)
    lossy.rate_limiter.set_policy("fixed:40/1s")
    summary, journal = await apply_only(lossy, plan)
    lossy.rate_limiter.set_policy("none")
    journal.close()
    assert summary.state is RunState.DONE and summary.counts["applied"] == active
    assert summary.throttled > 0
    fleet = lossy.demo.fleets["acme/gateway"]
    values = rows(lossy, "SELECT DISTINCT v.value FROM device d JOIN device_environment_variable v "
                         "ON v.device=d.id AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=?", fleet)
    assert values == [("error",)]


async def test_journal_records_attempts_without_token(lossy: SimServer, home: Path) -> None:
    """The journal has one attempt row per write, answered, and the token appears in no run file."""
    plan = await plan_only(lossy, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    summary, journal = await apply_only(lossy, plan)
    attempts = journal.attempts()
    methods = collections.Counter(a.method for a in attempts)
    assert methods["POST"] == plan.counts()["create"]
    assert methods["PATCH"] >= 1 and all(a.answered_at is not None for a in attempts)
    assert all(a.path.startswith("/device_environment_variable") for a in attempts)
    patched = {i for a in attempts if a.method == "PATCH" for i in a.items}
    assert patched == {i for i, it in enumerate(plan.items) if it.kind is ChangeKind.CHANGE}
    for path in journal.run_dir.iterdir():
        assert lossy.api_key.encode() not in path.read_bytes(), path
    journal.close()
    assert summary.counts["applied"] == len([it for it in plan.items if it.kind is not ChangeKind.NOOP])


async def test_revoked_token_stops_run_and_resume_completes(lossy: SimServer, home: Path) -> None:
    """A 401 mid-run stops the run (state stopped, nothing more sent); with the key back, resume finishes."""
    plan = await plan_only(lossy, job_text('type = "set_env"\nname = "NEW_FLAG"\nvalue = "x"'))
    saved = rows(lossy, "SELECT * FROM api_key WHERE key=?", lossy.api_key)

    def revoke(p: Progress) -> None:
        if p.done == 50:
            lossy.db.conn.execute("DELETE FROM api_key WHERE key=?", (lossy.api_key,))

    summary, journal = await apply_only(lossy, plan, on_progress=revoke)
    assert summary.state is RunState.STOPPED and summary.message.startswith("POST ")
    assert "HTTP 401" in summary.message and lossy.api_key not in summary.message
    unauthorized = [e for e in lossy.request_log.entries() if e.status == 401]
    assert 1 <= len(unauthorized) <= plan.options.max_concurrency  # only requests already in flight
    assert summary.counts["not_attempted"] > 0
    columns = ",".join("?" * len(saved[0]))
    lossy.db.conn.execute(f"INSERT INTO api_key VALUES ({columns})", saved[0])
    async with open_client(lossy.url, lossy.api_key, plan.options) as client:
        final = await apply_plan(plan, client, journal)
    journal.close()
    assert final.state is RunState.DONE and final.counts["applied"] == len(plan.items)
    assert rows(lossy, "SELECT COUNT(*) FROM device_environment_variable WHERE name='NEW_FLAG'") == [
        (len(plan.items),)]


async def test_abort_leaves_sent_items_that_resume_reads_back(lossy: SimServer, home: Path) -> None:
    """An abort cancels requests in flight; resume reads those back and re-sends only what is missing."""
    plan = await plan_only(lossy, job_text('type = "set_env"\nname = "NEW_FLAG"\nvalue = "y"'))
    lossy.faults.set_spec("latency=80ms~60ms,methods=POST,seed=2")
    control = RunControl(grace=0.0)

    def abort(p: Progress) -> None:
        if p.done >= 60:
            control.abort()

    summary, journal = await apply_only(lossy, plan, control=control, on_progress=abort)
    assert summary.state is RunState.INTERRUPTED
    sent = [it for it in journal.items() if it.state == "sent"]
    assert sent, summary.counts  # cancelled while in flight: no answer recorded
    await anyio.sleep(0.2)  # the server finishes what it received
    lossy.faults.set_spec("none")
    before = len(lossy.request_log.entries())
    async with open_client(lossy.url, lossy.api_key, plan.options) as client:
        final = await apply_plan(plan, client, journal)
    assert final.state is RunState.DONE and final.counts["applied"] == len(plan.items)
    after = lossy.request_log.entries()[before:]
    assert [e for e in after if e.status == 409] == []  # in-place items were read, not re-posted
    created = [e for e in lossy.request_log.entries() if e.method == "POST" and e.status == 201]
    assert len(created) == len(plan.items)
    journal.close()


async def test_limit_that_halves_mid_run(lossy: SimServer, home: Path) -> None:
    """When the server's budget halves mid-run the run adapts and completes, with few 429s."""
    text = job_text('type = "set_env"\nname = "HALVED"\nvalue = "1"', fleet="acme/sensor")
    plan = await plan_only(lossy, text)
    creates = plan.counts()["create"]
    assert creates > 100
    lossy.rate_limiter.set_policy("fixed:40/1s@0,fixed:20/1s@1s")
    summary, journal = await apply_only(lossy, plan)
    lossy.rate_limiter.set_policy("none")
    journal.close()
    assert summary.state is RunState.DONE and summary.counts["applied"] == creates
    assert 0 < summary.throttled < summary.requests // 3, (summary.throttled, summary.requests)
    assert rows(lossy, "SELECT COUNT(*) FROM device_environment_variable WHERE name='HALVED'") == [(creates,)]

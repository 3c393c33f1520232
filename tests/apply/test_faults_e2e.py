"""The CLI against a faulty simulator: 503s, resets, lost answers and latency; a Retry-After of an hour;
the token revoked mid-run; permanent errors (unknown field 500, 400). Each run is bounded in time and
ends with every target accounted for once.

The mixed-fault run has 5,000 targets (about 6 s); ``BULKOPS_FAULT_TARGETS=20000 pytest
tests/test_faults_e2e.py -k mixed`` runs it larger."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bulkops import read_plan
from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import (
    FLEET,
    assert_final,
    bulkops,
    child_env,
    created,
    edit_plan_file,
    job_text,
    make_plan_file,
    preseed,
    read_report,
    resume_to_end,
    spawn,
    the_run,
)
from tests.conftest import human, rows, start_sim

TARGETS = int(os.environ.get("BULKOPS_FAULT_TARGETS", "5000"))
MIXED = "503=0.05,reset=0.02,lost=0.02,latency=2ms~2ms,seed=11"
RUN_ID = re.compile(r"bulkops resume (\S+)`")


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def file_sim(tmp_path: Path) -> Iterator[tuple[SimServer, Path]]:
    """A simulator on a database file, so the test can write to it through its own connection."""
    db = tmp_path / "sim.sqlite"
    server = start_sim(seed_demo=1200, db=str(db))
    try:
        yield server, db
    finally:
        server.stop()


def state_of(sim: SimServer, var: str) -> list[tuple[Any, ...]]:
    return rows(sim, "SELECT device, value FROM device_environment_variable WHERE name=?", var)


@pytest.mark.timeout(90 if TARGETS <= 5000 else 600)
def test_mixed_faults_run_completes(tmp_path: Path) -> None:
    """5 % 503s, 2 % resets, 2 % lost answers and 0–4 ms latency on every request, plan and apply: the run
    ends done with every target correct, one 201 per planned create, every target once in the report."""
    sim = start_sim(seed_demo=2 * TARGETS)
    try:
        preseed(sim, "FAULTY", random.Random(3))
        job = tmp_path / "faulty.toml"
        job.write_text(job_text("faulty", "FAULTY"))
        env = child_env(sim.url, sim.api_key, tmp_path / "home")
        plan_file = tmp_path / "faulty.plan.json"
        sim.faults.set_spec(MIXED)
        started = time.monotonic()
        proc = bulkops(["plan", str(job), "-o", str(plan_file)], env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=480)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr[-3000:]
        stats = sim.faults.statistics()
        sim.faults.set_spec("none")
        run_dir = the_run(tmp_path / "home")
        assert run_dir is not None
        applied = read_plan(plan_file)
        assert len(applied.items) >= TARGETS
        again = make_plan_file(sim.url, sim.api_key, job, tmp_path / "again.plan.json")
        assert again.counts()["noop"] == len(applied.items)  # planning again finds nothing to do
        report = read_report(run_dir, tmp_path / "report.json")
        entries = sim.request_log.entries()
        assert_final(state_of(sim, "FAULTY"), applied, report, created(entries))
        outcomes = {o: sum(1 for e in entries if e.outcome == o) for o in ("fault:503", "fault:reset",
                                                                          "fault:lost")}
        assert all(n > 0 for n in outcomes.values()), outcomes
        print(f"mixed faults: {len(applied.items)} targets, {applied.counts()}, {len(entries)} requests, "
              f"{outcomes}, faults {stats}, {elapsed:.1f}s")
        assert elapsed < (60 if TARGETS <= 5000 else 480)
    finally:
        sim.stop()


@pytest.mark.timeout(60)
def test_retry_after_an_hour_stops_cleanly_then_resume(tmp_path: Path) -> None:
    """A 429 with Retry-After 3600 (above max_retry_after) stops the run at once with exit 4, saying why
    and how to resume; once the block is lifted, resume completes the run."""
    sim = start_sim(seed_demo=1200)
    try:
        preseed(sim, "BLOCKED", random.Random(4))
        job = tmp_path / "blocked.toml"
        job.write_text(job_text("blocked", "BLOCKED", options='max_retry_after = "30s"'))
        plan_file = tmp_path / "blocked.plan.json"
        plan = make_plan_file(sim.url, sim.api_key, job, plan_file)
        assert plan.options.max_retry_after == 30
        env = child_env(sim.url, sim.api_key, tmp_path / "home")
        sim.rate_limiter.set_policy("fixed:50/10s,block=3600s")
        started = time.monotonic()
        proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=50)
        elapsed = time.monotonic() - started
        assert proc.returncode == ExitCode.RUN_FAILED, proc.stderr
        assert elapsed < 10, elapsed
        run_id = RUN_ID.search(human(proc.stderr))
        assert run_id is not None, proc.stderr
        lines = human(proc.stderr).splitlines()
        stopped = next(x for x in lines if x.startswith("bulkops: run stopped: "))
        assert re.fullmatch(
            r"bulkops: run stopped: (POST|PATCH|GET) http://127\.0\.0\.1:\d+/v7/\S+: the server asked to "
            r"wait 3600 s before the next request \(HTTP 429, Retry-After\), more than the configured bound "
            r"of 30 s; stopped here: the run can be resumed later", stopped), stopped
        assert f"bulkops: continue with `bulkops resume {run_id[1]}`" in lines
        assert "state    stopped" in proc.stdout
        throttled = [e for e in sim.request_log.entries() if e.status == 429]
        print(f"retry-after 3600: stopped in {elapsed:.2f}s after {len(sim.request_log.entries())} requests, "
              f"{len(throttled)} answered 429")
        assert 1 <= len(throttled) <= plan.options.max_concurrency  # no request sent after the block
        sim.rate_limiter.set_policy("none")
        run_dir = resume_to_end(the_run(tmp_path / "home"), env, plan_file)
        report = read_report(run_dir, tmp_path / "report.json")
        assert_final(state_of(sim, "BLOCKED"), plan, report, created(sim.request_log.entries()))
    finally:
        sim.stop()


@pytest.mark.timeout(60)
def test_revoked_token_stops_at_once_then_resume_with_new_token(file_sim: tuple[SimServer, Path],
                                                                tmp_path: Path) -> None:
    """The API key deleted mid-run: exit 4 at once, no request after the 401s of those in flight, every
    journaled request answered; resume with a new key of the same user completes the run."""
    sim, db = file_sim
    preseed(sim, "REVOKED", random.Random(5))
    job = tmp_path / "revoked.toml"
    job.write_text(job_text("revoked", "REVOKED"))
    plan_file = tmp_path / "revoked.plan.json"
    plan = make_plan_file(sim.url, sim.api_key, job, plan_file)
    home = tmp_path / "home"
    env = child_env(sim.url, sim.api_key, home)
    sim.rate_limiter.set_policy("fixed:200/1s")
    sim.request_log.clear()
    err = tmp_path / "apply.stderr"
    proc = spawn(["apply", str(plan_file), "--yes"], env, err)
    run_dir = the_run(home, wait=20)
    assert run_dir is not None
    conn = sqlite3.connect(db, timeout=10)
    try:
        deadline = time.monotonic() + 20
        while _done(run_dir) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        saved = conn.execute("SELECT * FROM api_key WHERE key=?", (sim.api_key,)).fetchone()
        with conn:
            conn.execute("DELETE FROM api_key WHERE key=?", (sim.api_key,))
        code = proc.wait(timeout=30)
        stderr = err.read_text()
        assert code == ExitCode.RUN_FAILED, stderr
        assert "HTTP 401: the API refused the token" in stderr and sim.api_key not in stderr
        assert f"bulkops: continue with `bulkops resume {run_dir.name}`" in human(stderr)
        entries = sim.request_log.entries()
        first = next(i for i, e in enumerate(entries) if e.status == 401)
        after = entries[first:]
        assert all(e.status == 401 for e in after), [(e.method, e.status) for e in after]
        print(f"revoked: {len(entries)} requests, {len(after)} answered 401 (all in flight), "
              f"{_done(run_dir)} of {len(plan.items)} items done")
        assert len(after) <= plan.options.max_concurrency
        # the journal holds every write request sent, each with its answer
        journal = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            attempts = journal.execute("SELECT method, status, answered_at FROM attempt").fetchall()
            state = journal.execute("SELECT state, message FROM run").fetchone()
        finally:
            journal.close()
        sent = [e for e in entries if e.method in ("POST", "PATCH")]
        assert sorted(a[0] for a in attempts) == sorted(e.method for e in sent)
        assert all(a[2] is not None for a in attempts)
        refused = sum(1 for e in sent if e.status == 401)
        assert sorted(a[1] for a in attempts if a[1] == 401) == [401] * refused
        assert state[0] == "stopped" and "HTTP 401" in state[1]
        # a new key for the same user
        cols = [c[1] for c in conn.execute("PRAGMA table_info(api_key)")]
        row = dict(zip(cols, saved, strict=True))
        row.update(id=None, key="sim_new_key_for_resume_0123456789")
        with conn:
            conn.execute(f"INSERT INTO api_key ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                         [row[c] for c in cols])
    finally:
        conn.close()
    new_env = {**env, "BALENA_API_KEY": "sim_new_key_for_resume_0123456789"}
    old_key = bulkops(["resume", run_dir.name], env)  # the old key stays refused
    assert old_key.returncode == ExitCode.RUN_FAILED and "HTTP 401" in old_key.stderr
    resume_to_end(run_dir, new_env, plan_file)
    report = read_report(run_dir, tmp_path / "report.json")
    assert_final(state_of(sim, "REVOKED"), plan, report, created(sim.request_log.entries()))


def _done(run_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM item WHERE state='done'").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


PATCH_JOB = """\
name = "note"
[target]
resource = "device"
fleet = "acme/gateway-next"
[action]
type = "patch"
fields = { note = "checked" }
[options]
max_attempts = 3
"""




@pytest.mark.timeout(60)
def test_unknown_field_500_is_bounded_and_reported_per_target(sim: SimServer, tmp_path: Path) -> None:
    """A plan edited to patch a field the API does not know: the 500 is retried max_attempts times per
    request, then every target is reported failed with HTTP 500; nothing is written."""
    job = tmp_path / "note.toml"
    job.write_text(PATCH_JOB)
    plan_file = tmp_path / "note.plan.json"
    plan = make_plan_file(sim.url, sim.api_key, job, plan_file)
    n = len(plan.items)
    assert plan.counts()["change"] == n > 50

    def rename(data: dict[str, Any]) -> None:
        for item in data["items"]:
            item["after"] = {"no_such_field": item["after"]["note"]}

    edit_plan_file(plan_file, rename, sim.api_key)
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    started = time.monotonic()
    proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=50)
    assert time.monotonic() - started < 20
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr
    assert f"outcomes applied 0   noop 0   drifted 0   failed {n}   not_attempted 0" in proc.stdout
    patches = [e for e in sim.request_log.entries() if e.method == "PATCH"]
    assert len(patches) == 3 * -(-n // plan.options.batch_size)  # max_attempts per request, no more
    assert {e.status for e in patches} == {500}
    run_dir = the_run(tmp_path / "home")
    assert run_dir is not None
    report = read_report(run_dir, tmp_path / "r.json")
    assert sorted(r["id"] for r in report["items"]) == sorted(it.target_id for it in plan.items)
    for r in report["items"]:
        assert (r["outcome"], r["status"]) == ("failed", 500), r
        assert "HTTP 500: server error (gave up after 3 attempts)" in r["error"], r["error"]
        assert r["error"].startswith("PATCH "), r["error"]  # the write's own error, not the read-back's
    assert rows(sim, "SELECT COUNT(*) FROM device WHERE note='checked'") == [(0,)]


@pytest.mark.timeout(60)
def test_bad_request_is_not_retried_and_reported_per_target(sim: SimServer, tmp_path: Path) -> None:
    """A plan edited to create an env var balena refuses (400): one request per target, never retried,
    each target failed with HTTP 400 and balena's reason."""
    job = tmp_path / "bad.toml"
    job.write_text(job_text("bad", "BAD_NAME").replace(FLEET, "acme/gateway-next"))
    plan_file = tmp_path / "bad.plan.json"
    plan = make_plan_file(sim.url, sim.api_key, job, plan_file)
    n = plan.counts()["create"]
    assert n == len(plan.items) > 50

    def rename(data: dict[str, Any]) -> None:
        for item in data["items"]:
            item["key"]["name"] = "BALENA_RESERVED"

    edit_plan_file(plan_file, rename, sim.api_key)
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=50)
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr
    posts = [e for e in sim.request_log.entries() if e.method == "POST"]
    assert len(posts) == n and {e.status for e in posts} == {400}
    run_dir = the_run(tmp_path / "home")
    assert run_dir is not None
    report = read_report(run_dir, tmp_path / "r.json")
    assert [(r["outcome"], r["status"]) for r in report["items"]] == [("failed", 400)] * n
    assert rows(sim, "SELECT COUNT(*) FROM device_environment_variable WHERE name LIKE 'BALENA%'") == [(0,)]


@pytest.mark.timeout(60)
def test_row_created_by_someone_else_is_not_claimed(sim: SimServer, tmp_path: Path) -> None:
    """A variable created by someone else between plan and apply (with the planned value, or another):
    the POST meets a 409 at its first attempt; the target is reported noop (or drifted), not applied."""
    job = tmp_path / "other.toml"
    job.write_text(job_text("other", "OTHER").replace(FLEET, "acme/gateway-next"))
    plan_file = tmp_path / "other.plan.json"
    plan = make_plan_file(sim.url, sim.api_key, job, plan_file)
    first, second = plan.items[0], plan.items[1]
    assert first.kind.value == second.kind.value == "create"
    sim.db.insert("device_environment_variable", {"device": first.target_id, "name": "OTHER", "value": "on"})
    sim.db.insert("device_environment_variable", {"device": second.target_id, "name": "OTHER", "value": "x"})
    proc = bulkops(["apply", str(plan_file), "--yes"], child_env(sim.url, sim.api_key, tmp_path / "home"))
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr  # one drifted
    run_dir = the_run(tmp_path / "home")
    assert run_dir is not None
    items = read_report(run_dir, tmp_path / "r.json")["items"]
    assert (items[0]["outcome"], items[0]["status"]) == ("noop", 409)
    assert (items[1]["outcome"], items[1]["status"]) == ("drifted", 409)
    assert {r["outcome"] for r in items[2:]} == {"applied"}

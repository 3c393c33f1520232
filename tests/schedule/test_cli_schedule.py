"""``bulkops schedule DIR --list/--status/--once`` and ``bulkops run JOB --unattended`` in-process."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.schedule.clock import SystemClock
from bulkops.schedule.locks import job_lock
from bulkops.schedule.store import SlotState, SlotStore
from bulkops.sim.server import SimServer
from tests.conftest import human, rows, writes
from tests.schedule.conftest import at, tag_job, write

NIGHT = tag_job("night", schedule='{ cron = "30 2 * * *", timezone = "Europe/Berlin" }')


def test_list_shows_the_next_slots_in_the_job_zone_and_in_utc(jobs: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    """--list --at the day before spring-forward: 02:30 Berlin does not exist on 2027-03-28, so that night's
    slot is 03:00 CEST (01:00Z); then 02:30 CEST (00:30Z) again."""
    write(jobs, "night.toml", NIGHT)
    assert main(["schedule", str(jobs), "--list", "--at", "2027-03-27T12:00:00Z"]) == ExitCode.OK
    assert capsys.readouterr().out == (
        f"night  ({jobs}/night.toml)\n"
        "  cron 30 2 * * *  timezone Europe/Berlin  missed latest  catch_up 1h\n"
        "  next  2027-03-28 03:00:00 CEST   2027-03-28T01:00:00Z\n"
        "        2027-03-29 02:30:00 CEST   2027-03-29T00:30:00Z\n"
        "        2027-03-30 02:30:00 CEST   2027-03-30T00:30:00Z\n")


def test_list_json_with_jitter_and_problems(jobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--list --json gives each slot's local time, UTC key and due time (jitter); invalid files exit 2."""
    write(jobs, "a.toml", tag_job("a", schedule='{ cron = "0 3 * * *", jitter = "5m" }'))
    write(jobs, "b.toml", tag_job("b", schedule='"0 3 * * *"').replace('schedule = "0 3 * * *"\n', ""))
    write(jobs, "c.toml", tag_job("c", schedule='"0 3 * * * *"'))
    code = main(["schedule", str(jobs), "--list", "--json", "--next", "1", "--at", "2027-01-10T00:00:00Z"])
    assert code == ExitCode.INVALID_INPUT
    data = orjson.loads(capsys.readouterr().out)
    [job] = data["jobs"]
    assert job["job"] == "a" and job["schedule"]["jitter"] == "5m"
    [nxt] = job["next"]
    assert (nxt["slot"], nxt["local"]) == ("2027-01-10T03:00:00Z", "2027-01-10 03:00:00 UTC")
    assert "2027-01-10T03:00:00Z" <= nxt["due"] < "2027-01-10T03:05:00Z"
    assert data["unscheduled"] == [f"{jobs}/b.toml"]
    assert [p["path"] for p in data["invalid"]] == [f"{jobs}/c.toml"]
    assert "6 fields instead of 5" in data["invalid"][0]["error"]


def test_once_then_status(env: SimServer, jobs: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--once runs what is due; after a gap, --status shows the last outcome, the next slot and every skipped
    slot with its reason, as text and as JSON."""
    write(jobs, "hourly.toml", tag_job("hourly", schedule='{ cron = "0 * * * *", catch_up = "2h" }'))
    assert main(["schedule", str(jobs), "--once", "--at", "2027-01-10T00:00:10Z"]) == ExitCode.OK
    assert main(["schedule", str(jobs), "--once", "--at", "2027-01-10T03:10:00Z"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["schedule", str(jobs), "--status"]) == ExitCode.OK
    store = SlotStore.open()
    first = store.get("hourly", at("2027-01-10T00:00:00Z"))
    assert first is not None and first.state is SlotState.DONE
    out = capsys.readouterr().out
    assert out.startswith(f"hourly  {jobs}/hourly.toml\n"
                          "  last     2027-01-10T03:00:00Z  nothing_to_do\n"
                          "           every target is as wanted already\n"
                          "  next     ")
    assert out.endswith(
        "  skipped  2 slots\n"
        "    2027-01-10T02:00:00Z  superseded  superseded by the later slot 2027-01-10T03:00:00Z "
        '(missed = "latest")\n'
        "    2027-01-10T01:00:00Z  too_late    due 2.2h ago, later than catch_up 2h\n")
    assert main(["schedule", str(jobs), "--status", "--json"]) == ExitCode.OK
    [job] = orjson.loads(capsys.readouterr().out)["jobs"]
    assert job["last"]["state"] == "nothing_to_do" and job["skipped_total"] == 2
    assert [(r["slot"], r["reason"]) for r in job["skipped"]] == [("2027-01-10T02:00:00Z", "superseded"),
                                                                  ("2027-01-10T01:00:00Z", "too_late")]
    store.close()
    # the store and the locks are the owner's only
    folder = home / "schedule"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.glob("slots.sqlite*")} == {0o600}
    assert stat.S_IMODE((folder / "locks").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (folder / "locks").iterdir()} == {0o600}


@pytest.mark.parametrize(("argv", "message"), [
    (["--unattended"], "--unattended applies without asking: give --yes as well"),
    (["--yes", "--slot", "2027-01-10T03:00:00Z"], "--slot and --approve go with --unattended"),
    (["--yes", "--unattended", "--approve"],
     "--approve needs --slot: name the slot that needs approval (see `bulkops schedule DIR --status`)"),
])
def test_unattended_flag_errors(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                argv: list[str], message: str) -> None:
    """Unattended flags out of place are invalid input, named exactly; nothing is sent."""
    path = write(tmp_path, "j.toml", tag_job("j", schedule='"0 3 * * *"'))
    assert main(["run", str(path), *argv]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err).strip().splitlines()[-1] == f"bulkops: error: {message}"
    assert env.request_log.entries() == []


def test_unattended_without_schedule_needs_a_slot(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A job without a schedule runs unattended only with an explicit --slot (the run key)."""
    text = tag_job("plain", schedule='"0 3 * * *"').replace('schedule = "0 3 * * *"\n', "")
    path = write(tmp_path, "plain.toml", text)
    assert main(["run", str(path), "--yes", "--unattended"]) == ExitCode.INVALID_INPUT
    err = human(capsys.readouterr().err).strip().splitlines()[-1]
    assert err.startswith("bulkops: error: job plain has no schedule: give --slot ISO (the run key), "
                          "e.g. --slot ")


def test_unattended_slot_runs_once(env: SimServer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """run --unattended --slot applies the job once; the same slot again sends no write and exits 0."""
    path = write(tmp_path, "j.toml", tag_job("j", schedule='"0 3 * * *"'))
    assert main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T03:00:00Z"]) == ExitCode.OK
    out = capsys.readouterr()
    assert "targets  82 devices" in out.out and "state    done" in out.out
    assert "bulkops: slot 2027-01-10T03:00:00Z of job j: done: applied 82" in human(out.err)
    sent = len(writes(env))
    again = ["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T04:00:00+01:00"]
    assert main(again) == ExitCode.OK
    err = human(capsys.readouterr().err).strip().splitlines()[-1]
    store = SlotStore.open()
    record = store.get("j", at("2027-01-10T03:00:00Z"))
    store.close()
    assert record is not None
    assert err == ("bulkops: slot 2027-01-10T03:00:00Z of job j was taken already: done, "
                   f"run {record.run_id}; nothing to do")
    assert len(writes(env)) == sent


def test_unattended_latest_slot_from_the_schedule(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Without --slot the schedule names the slot: a minute job runs its current minute, and run again it
    sends no write."""
    path = write(tmp_path, "j.toml", tag_job("minutely", schedule='"* * * * *"'))
    assert main(["run", str(path), "--yes", "--unattended"]) == ExitCode.OK
    assert rows(env, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'") == [(82,)]
    sent = len(writes(env))
    assert main(["run", str(path), "--yes", "--unattended"]) == ExitCode.OK
    assert len(writes(env)) == sent


def test_unattended_delete_needs_expect_max(env: SimServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unscheduled delete run unattended without expect.max is refused (exit 3) before any write."""
    path = write(tmp_path, "d.toml", 'name = "d"\n[target]\nresource = "device"\nfleet = "acme/sensor"\n'
                                     '[action]\ntype = "delete"\n')
    code = main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T03:00:00Z"])
    assert code == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err).strip().splitlines()[-1] == (
        "bulkops: slot 2027-01-10T03:00:00Z of job d: refused: the plan removes rows of 82 devices with "
        "nobody to confirm it: set expect.max in the job file to bound how many one run may remove")
    assert writes(env) == []


def test_approve_a_slot_that_needs_approval(env: SimServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A slot refused by grow_limit is applied by run --unattended --slot S --approve; --approve on a slot
    that does not need it is refused (exit 3) and sends nothing."""
    small = tag_job("grow", schedule='"0 3 * * *"', extra="")
    path = write(tmp_path, "g.toml", small.replace("[action]", 'filter = "id lt 0"\n[action]'))
    assert main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T03:00:00Z"]) == ExitCode.OK
    write(tmp_path, "g.toml", small.replace("[action]", "\n[action]"))  # now the whole fleet: 82 > 0 + 50
    assert main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-11T03:00:00Z"]) == \
        ExitCode.REFUSED_BY_GUARD
    assert "needs_approval: the plan changes 82 devices, the job's last run 0" in capsys.readouterr().err
    assert writes(env) == []
    assert main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-11T03:00:00Z",
                 "--approve"]) == ExitCode.OK
    assert rows(env, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'") == [(82,)]
    sent = len(writes(env))
    capsys.readouterr()
    assert main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-11T03:00:00Z",
                 "--approve"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err).strip().splitlines()[-1].startswith(
        "bulkops: slot 2027-01-11T03:00:00Z of job grow was taken already (it does not need approval): done")
    assert len(writes(env)) == sent


def test_once_exits_2_when_a_job_file_is_invalid(env: SimServer, jobs: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--once runs the valid jobs and exits 2 when a file does not validate, reporting it as an event."""
    write(jobs, "good.toml", tag_job("good", schedule='"0 3 * * *"'))
    write(jobs, "bad.toml", tag_job("bad", schedule='"0 3 * * * *"'))
    assert main(["schedule", str(jobs), "--once", "--at", "2027-01-10T03:00:10Z"]) == ExitCode.INVALID_INPUT
    events = [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [e["path"] for e in events if e["event"] == "bulkops.schedule.job.invalid"] == [f"{jobs}/bad.toml"]
    assert [e["job"] for e in events if e["event"] == "bulkops.schedule.slot.done"] == ["good"]


def test_unattended_run_while_the_job_runs_is_an_overlap(env: SimServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """run --unattended for a job another process is running: the slot is journaled as an overlap, exit 3."""
    path = write(tmp_path, "j.toml", tag_job("j", schedule='"0 3 * * *"'))
    with job_lock("j"):
        code = main(["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T03:00:00Z"])
    assert code == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err).strip().splitlines()[-1] == (
        "bulkops: slot 2027-01-10T03:00:00Z of job j: skipped: another run of the job holds its lock")
    assert env.request_log.entries() == []


def test_unattended_run_journals_missed_slots_like_the_scheduler(env: SimServer, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Started by cron after missed minutes, run --unattended runs the newest slot inside catch_up once and
    journals each older slot as superseded or too late."""
    path = write(tmp_path, "j.toml", tag_job("j", schedule='{ cron = "* * * * *", catch_up = "5m" }'))
    store = SlotStore.open()
    now = SystemClock().now()
    store.set_cursor("j", now - timedelta(minutes=10, seconds=1), now)  # the last slot decided, 10 min ago
    assert main(["run", str(path), "--yes", "--unattended"]) == ExitCode.OK
    slots = store.slots("j")
    store.close()
    ran = [r for r in slots if r.state is not SlotState.SKIPPED]
    assert [r.state for r in ran] == [SlotState.DONE] and ran[0].slot == slots[-1].slot
    reasons = [r.reason for r in slots[:-1]]
    assert len(reasons) in {9, 10} and set(reasons) == {"superseded", "too_late"}
    err = human(capsys.readouterr().err)
    assert f"bulkops: slot {slots[0].slot} of job j skipped (too_late): due " in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--at", "2027-01-10T03:00:00Z"], "--at goes with --list or --once"),
    (["--once", "--at", "tomorrow"],
     "--at expects an ISO-8601 time such as 2026-03-29T01:00:00Z, got 'tomorrow'"),
    (["--once", "--json"], "--json goes with --list or --status"),
    (["--status", "--next", "2"], "--next goes with --list"),
    (["--list", "--next", "0"], "--next expects a positive number of slots, got 0"),
    (["--status", "--health-port", "9464"],
     "--health-port goes with the scheduler, not with --list or --status"),
    (["--health-port", "70000"], "--health-port expects a port from 0 to 65535, got 70000"),
])
def test_schedule_flag_errors(jobs: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    """Flags out of place are invalid input, named exactly."""
    assert main(["schedule", str(jobs), *argv]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err).strip().splitlines()[-1] == f"bulkops: error: {message}"


def test_schedule_needs_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DIR that is not a directory is refused with what is expected."""
    assert main(["schedule", str(tmp_path / "nope"), "--list"]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err).strip() == (
        f"bulkops: error: '{tmp_path / 'nope'}' is not a directory: give the folder that holds the job files")


def test_other_commands_start_without_the_scheduler_dependencies() -> None:
    """Loading the CLI imports neither prometheus-client nor the scheduler's implementation."""
    code = ("import sys, bulkops.cli.main; "
            "print(sorted(m for m in ('prometheus_client', 'bulkops.cli.scheduling') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"

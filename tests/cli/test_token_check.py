"""A token the API refuses costs one GET, not writes: apply and resume check it before the first write
and stop with one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bulkops.apply.runner import new_run
from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.plan.file import read_plan
from bulkops.sim.server import SimServer
from tests.cli.test_cli import write_job
from tests.conftest import human

JOB = """\
name = "token"
[target]
resource = "device"
fleet = "acme/gateway"
[action]
type = "set_env"
name = "TOKEN_CHECK"
value = "on"
"""


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _revoke(sim: SimServer) -> None:
    sim.db.conn.execute("DELETE FROM api_key WHERE key=?", (sim.api_key,))
    sim.request_log.clear()


def _refused_once(sim: SimServer, err: str) -> None:
    """One GET, answered 401; one line on stderr naming it; no token in it."""
    entries = sim.request_log.entries()
    assert [(e.method, e.status) for e in entries] == [("GET", 401)], entries
    assert entries[0].url == "/v7/device?$select=id&$top=1"
    assert err == (f"bulkops: error: GET {sim.url}/v7/device?$select=id&$top=1: HTTP 401: the API refused "
                   "the token; check that BALENA_API_KEY or BALENA_TOKEN holds a valid API key with rights "
                   "on this resource (checked before the first write: nothing was changed)\n")
    assert sim.api_key not in err


def test_apply_with_a_refused_token_sends_no_write(env: SimServer, home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The token revoked after planning: apply sends one GET (401), no write, prints one line, exit 4,
    and starts no run."""
    plan = tmp_path / "p.json"
    assert main(["plan", str(write_job(tmp_path, JOB)), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    _revoke(env)
    assert main(["apply", str(plan), "--yes"]) == ExitCode.RUN_FAILED
    _refused_once(env, human(capsys.readouterr().err))
    assert not (home / "runs").exists()


def test_resume_with_a_refused_token_sends_no_write(env: SimServer, home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """resume of a run not yet applied, with the token revoked: one GET (401), no write, one line,
    exit 4; the run stays resumable."""
    plan = tmp_path / "p.json"
    assert main(["plan", str(write_job(tmp_path, JOB)), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    journal = new_run(read_plan(plan))
    journal.close()
    _revoke(env)
    assert main(["resume", journal.run_id]) == ExitCode.RUN_FAILED
    _refused_once(env, human(capsys.readouterr().err))
    assert main(["runs"]) == ExitCode.OK
    assert f"{journal.run_id} planned" in " ".join(capsys.readouterr().out.split())

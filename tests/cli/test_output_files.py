"""Where `plan -o`, `undo -o`, `report --csv` and `report --json` write: ``-`` is stdout, a symlink is
written through, a character device or a FIFO is written in place, a regular file is replaced atomically
(0600), anything else is refused before any work. The only device written to is /dev/null."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from bulkops.cli.main import main
from bulkops.errors import ExitCode, InputError
from bulkops.journal.output import Kind, check_output, output_kind
from bulkops.plan.file import plan_from_json
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import bulkops, child_env
from tests.cli.test_cli import CANARY_JOB, write_job
from tests.conftest import human


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _plan_to(out: str, tmp_path: Path) -> int:
    return main(["plan", str(write_job(tmp_path, CANARY_JOB)), "-o", out])


def test_plan_to_stdout(env: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    """`plan -o -`: stdout holds the plan file and nothing else; the preview goes to stderr; no file
    named '-' is made."""
    monkeypatch.chdir(tmp_path)
    assert _plan_to("-", tmp_path) == ExitCode.OK
    out, err = capsys.readouterr()
    plan = plan_from_json(orjson.loads(out))
    assert plan.job_name == "debug-canaries" and plan.seal
    assert '"event": "bulkops.plan.preview"' in err  # off a terminal the preview is a JSON event on stderr
    assert not (tmp_path / "-").exists()


def test_plan_through_a_symlink(env: SimServer, tmp_path: Path) -> None:
    """A symlink to an existing plan file is written through: the link stays, its target gets the plan
    (0600)."""
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert _plan_to(str(link), tmp_path) == ExitCode.OK
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert orjson.loads(real.read_bytes())["job_name"] == "debug-canaries"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def test_plan_through_a_dangling_symlink(env: SimServer, tmp_path: Path) -> None:
    """A symlink whose target does not exist yet: the target is created, the link stays."""
    real = tmp_path / "sub" / "real.json"
    real.parent.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert _plan_to(str(link), tmp_path) == ExitCode.OK
    assert link.is_symlink() and orjson.loads(real.read_bytes())["job_name"] == "debug-canaries"


def test_plan_into_a_fifo(env: SimServer, tmp_path: Path) -> None:
    """A FIFO is written in place: a reader gets the whole plan, and the FIFO is still a FIFO."""
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert _plan_to(str(fifo), tmp_path) == ExitCode.OK
    reader.join(timeout=10)
    assert orjson.loads(got[0])["job_name"] == "debug-canaries"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_plan_through_a_link_to_its_own_stdout(sim: SimServer, tmp_path: Path) -> None:
    """A symlink to /proc/self/fd/1 (what /dev/stdout is), in a child whose stdout is a pipe: the plan goes
    into the pipe, beside the preview, and the link stays."""
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    proc = bulkops(["plan", str(write_job(tmp_path, CANARY_JOB)), "-o", str(link)],
                   child_env(sim.url, sim.api_key, tmp_path / "home"))
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert '"job_name":"debug-canaries"' in proc.stdout.replace(" ", "") and link.is_symlink()


def test_plan_to_dev_null_leaves_it_a_device(env: SimServer, tmp_path: Path) -> None:
    """`plan -o /dev/null` writes into the device: /dev/null stays the same character device, same mode."""
    before = os.lstat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    assert output_kind("/dev/null") == (Kind.STREAM, Path("/dev/null"))  # never a rename over it
    assert _plan_to("/dev/null", tmp_path) == ExitCode.OK
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_rdev, after.st_mode, after.st_ino) == (before.st_rdev, before.st_mode, before.st_ino)


@pytest.mark.parametrize("what", ["directory", "socket", "missing-directory"])
def test_unwritable_output_is_refused_before_planning(env: SimServer, tmp_path: Path, what: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An output that is a directory, a socket or inside a missing directory: exit 2 with one line naming
    it, before any request."""
    target = tmp_path / what
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    reason = "it is a directory"
    if what == "directory":
        target.mkdir()
    elif what == "socket":
        target = Path(f"/tmp/bulkops-test-{os.getpid()}.sock")  # AF_UNIX paths are short
        sock.bind(str(target))
        reason = "it is a socket"
    else:
        target = tmp_path / "missing" / "p.json"
        reason = f"the directory {target.parent} does not exist"
    try:
        env.request_log.clear()
        assert _plan_to(str(target), tmp_path) == ExitCode.INVALID_INPUT
        assert human(capsys.readouterr().err) == (
            f"bulkops: error: cannot write the plan to {target}: {reason}; give a regular file, a character "
            "device, a FIFO or - for stdout\n")
        assert env.request_log.entries() == []
    finally:
        sock.close()
        if what == "socket":
            target.unlink(missing_ok=True)


def test_block_device_is_refused() -> None:
    """A block device is never written: check_output refuses it (only its type is read)."""
    devices = sorted(p for p in Path("/dev").iterdir() if p.is_block_device())
    if not devices:
        pytest.skip("no block device on this machine")
    with pytest.raises(InputError) as exc:
        check_output(devices[0], "the plan")
    assert str(exc.value) == (f"cannot write the plan to {devices[0]}: it is a block device; give a regular "
                              "file, a character device, a FIFO or - for stdout")


def test_report_to_stdout(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report --csv -` and `report --json -` print only the CSV / the JSON on stdout; both on stdout at
    once is refused (exit 2)."""
    assert main(["run", str(write_job(tmp_path, CANARY_JOB)), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    assert main(["report", run_id, "--csv", "-"]) == ExitCode.OK
    out, err = capsys.readouterr()
    err = human(err)
    assert out.splitlines()[0] == ("index,id,label,kind,resource,row_id,before,after,outcome,status,attempts,"
                                   "error")
    assert main(["report", run_id, "--json", "-"]) == ExitCode.OK
    out, err = capsys.readouterr()
    err = human(err)
    assert orjson.loads(out)["run_id"] == run_id
    assert main(["report", run_id, "--json", "-", "--csv", "-"]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err) == (
        "bulkops: error: only one of --json and --csv - can write to stdout: give --json a file name\n")


def test_report_replaces_a_regular_file_and_keeps_a_symlink(env: SimServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A report over an existing 0644 file replaces it (0600); through a symlink it writes the target."""
    assert main(["run", str(write_job(tmp_path, CANARY_JOB)), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    csv_file, real = tmp_path / "r.csv", tmp_path / "real.json"
    csv_file.write_text("old")
    csv_file.chmod(0o644)
    real.write_text("old")
    link = tmp_path / "r.json"
    link.symlink_to(real)
    assert main(["report", run_id, "--csv", str(csv_file), "--json", str(link)]) == ExitCode.OK
    assert stat.S_IMODE(csv_file.stat().st_mode) == 0o600 and csv_file.read_text().startswith("index,")
    assert link.is_symlink() and orjson.loads(real.read_bytes())["run_id"] == run_id

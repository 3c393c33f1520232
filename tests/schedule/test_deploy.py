"""The deployment examples in docs/deploy/: the systemd units pass `systemd-analyze verify`, the timer and
the CronJob fire when the job's own schedule says, the CronJob forbids overlap, keeps BULKOPS_HOME on a
volume and takes the token from a Secret, and the README shows the files as they are."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bulkops.job.load import load_job

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
JOB = load_job(ROOT / "jobs" / "nightly-cleanup.toml")
UNITS = sorted([*DEPLOY.glob("*.service"), *DEPLOY.glob("*.timer")], key=lambda p: p.name)
VERIFY = shutil.which("systemd-analyze")


def verify(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on copies of the units whose ExecStart names this checkout's bulkops
    (verify requires the program to exist; /usr/local/bin/bulkops is where `pip install` puts it)."""
    program = Path(sys.executable).parent / "bulkops"
    for name, text in files.items():
        (tmp_path / name).write_text(text.replace("/usr/local/bin/bulkops", str(program)))
    assert VERIFY is not None
    return subprocess.run([VERIFY, "verify", *(str(tmp_path / n) for n in files)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.skipif(VERIFY is None, reason="systemd-analyze is not installed on this machine")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """Every unit in docs/deploy/ passes `systemd-analyze verify` without a warning."""
    assert [p.name for p in UNITS] == ["bulkops-nightly-cleanup.service", "bulkops-nightly-cleanup.timer",
                                       "bulkops-schedule.service"]
    done = verify(tmp_path, {p.name: p.read_text() for p in UNITS})
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.skipif(VERIFY is None, reason="systemd-analyze is not installed on this machine")
def test_verify_catches_a_broken_timer(tmp_path: Path) -> None:
    """The check can fail: a calendar spec systemd cannot parse is refused."""
    files = {p.name: p.read_text() for p in UNITS}
    name = "bulkops-nightly-cleanup.timer"
    files[name] = files[name].replace("OnCalendar=*-*-* 03:00:00", "OnCalendar=nightly at three")
    done = verify(tmp_path, files)
    assert done.returncode != 0 and "Failed to parse calendar specification" in done.stderr


def test_timer_fires_when_the_job_schedule_says() -> None:
    """The timer's OnCalendar is the job's cron in the job's time zone, persistent across downtime; its
    service runs the job unattended."""
    assert JOB.schedule is not None
    minute, hour = JOB.schedule.cron.split()[:2]
    timer = (DEPLOY / "bulkops-nightly-cleanup.timer").read_text()
    assert re.findall(r"^OnCalendar=(.*)$", timer, re.M) == [
        f"*-*-* {int(hour):02d}:{int(minute):02d}:00 {JOB.schedule.timezone}"]
    assert "Persistent=true" in timer
    service = (DEPLOY / "bulkops-nightly-cleanup.service").read_text()
    assert re.findall(r"^ExecStart=(.*)$", service, re.M) == [
        "/usr/local/bin/bulkops run /etc/bulkops/jobs/nightly-cleanup.toml --yes --unattended"]


def test_cronjob_manifest() -> None:
    """The CronJob runs the job's schedule in its zone, forbids overlap, starts no later than catch_up, keeps
    BULKOPS_HOME on the persistent volume and reads the token from a Secret."""
    pvc, cron = list(yaml.safe_load_all((DEPLOY / "kubernetes-cronjob.yaml").read_text()))
    assert (pvc["kind"], pvc["spec"]["accessModes"]) == ("PersistentVolumeClaim", ["ReadWriteOnce"])
    assert JOB.schedule is not None
    spec = cron["spec"]
    assert (cron["kind"], spec["schedule"], spec["timeZone"]) == ("CronJob", JOB.schedule.cron,
                                                                 JOB.schedule.timezone)
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == JOB.schedule.catch_up.total_seconds()
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] + container["args"] == [
        "bulkops", "run", "/etc/bulkops/jobs/nightly-cleanup.toml", "--yes", "--unattended"]
    env = {e["name"]: e for e in container["env"]}
    home = env["BULKOPS_HOME"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[home]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert env["BALENA_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "bulkops-balena", "key": "api-key"}
    assert "value" not in env["BALENA_API_KEY"]


def test_readme_shows_the_deploy_files_as_they_are() -> None:
    """The README's systemd pair and CronJob are the files in docs/deploy/, byte for byte."""
    readme = (ROOT / "README.md").read_text()
    shown = ("bulkops-nightly-cleanup.service", "bulkops-nightly-cleanup.timer", "kubernetes-cronjob.yaml")
    for name in shown:
        assert (DEPLOY / name).read_text() in readme, name

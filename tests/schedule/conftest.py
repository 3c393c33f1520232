"""Fixtures for the scheduler: a small simulator (300 devices), a job directory and a private
BULKOPS_HOME; helpers to write job files and build a scheduler on a manual clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bulkops.schedule.clock import ManualClock
from bulkops.schedule.run import Api
from bulkops.schedule.scheduler import Scheduler
from bulkops.sim.server import SimServer
from tests.conftest import start_sim

SMALL = 300  # devices: acme/sensor gets 82, acme/gateway 160


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = start_sim(seed_demo=SMALL)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    path = tmp_path / "jobs"
    path.mkdir()
    return path


def tag_job(name: str, *, schedule: str, fleet: str = "acme/sensor", key: str = "nightly", value: str = "yes",
            extra: str = "") -> str:
    return (f'name = "{name}"\nschedule = {schedule}\n{extra}\n[target]\nresource = "device"\n'
            f'fleet = "{fleet}"\n[action]\ntype = "set_tag"\nkey = "{key}"\nvalue = "{value}"\n')


def write(directory: Path, file: str, text: str) -> Path:
    """Write a job file and move its modification time on, so a rewrite within one clock tick is seen."""
    path = directory / file
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    stat = path.stat()
    if stat.st_mtime_ns <= old:
        os.utime(path, ns=(stat.st_atime_ns, old + 1_000_000))
    return path


def scheduler(sim: SimServer, directory: Path, clock: ManualClock) -> Scheduler:
    return Scheduler(directory, Api(sim.url, sim.api_key), clock=clock)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

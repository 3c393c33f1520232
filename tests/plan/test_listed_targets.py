"""Targets listed outright — ``uuids``, ``uuids_file``, ``ids`` — against the simulator: exactly the
listed rows (ANDed with fleet and filter), the unmatched ones named, a long list paged in requests that fit
the URL limit, and a plan's CSV fed back as a uuids_file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from bulkops.api.urls import URL_BUDGET
from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.conftest import rows

ACTION = '[action]\ntype = "set_tag"\nkey = "listed"\nvalue = "yes"\n'
MISSING = "0" * 32


def planned(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> tuple[list[int], str]:
    path = tmp_path / "job.toml"
    path.write_text(f'name = "listed"\n[target]\nresource = "device"\n{target}\n{ACTION}')
    plan = tmp_path / "p.json"
    assert main(["plan", str(path), "-o", str(plan)]) == ExitCode.OK
    items = orjson.loads(plan.read_bytes())["items"]
    return sorted(i["target_id"] for i in items), capsys.readouterr().out


def test_uuids_select_exactly_those_and_name_the_missing(env: SimServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """uuids = [...] targets the listed devices only; a uuid that matches nothing is named in a warning."""
    some = rows(env, "SELECT id, uuid FROM device ORDER BY id LIMIT 3")
    listed = ", ".join(f'"{u}"' for _, u in some)
    ids, out = planned(tmp_path, f'uuids = [{listed}, "{MISSING}"]', capsys)
    assert ids == [i for i, _ in some]
    assert "listed   4 uuids" in out.splitlines()
    assert (f"warning  1 of the 4 listed uuids is not in the plan (no such row, not visible to this API key,"
            f" or outside the fleet and filter): {MISSING}") in out.splitlines()


def test_uuids_and_a_fleet_are_anded(env: SimServer, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A list combined with a fleet keeps only the listed devices of that fleet."""
    gw = rows(env, "SELECT id, uuid FROM device WHERE belongs_to__application = ? ORDER BY id LIMIT 2",
              env.demo.fleets["acme/gateway"])
    sensor = rows(env, "SELECT id, uuid FROM device WHERE belongs_to__application = ? ORDER BY id LIMIT 2",
                  env.demo.fleets["acme/sensor"])
    listed = ", ".join(f'"{u}"' for _, u in gw + sensor)
    ids, out = planned(tmp_path, f'fleet = "acme/gateway"\nuuids = [{listed}]', capsys)
    assert ids == [i for i, _ in gw]
    assert "warning  2 of the 4 listed uuids are not in the plan" in out


def test_a_long_uuids_file_is_paged_within_the_url_limit(env: SimServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """1,500 listed uuids (53 KB of them) are read in slices whose URLs fit the limit; the plan's CSV, fed
    back as a uuids_file, selects the same devices again."""
    chosen = rows(env, "SELECT id, uuid FROM device WHERE belongs_to__application != ? ORDER BY uuid "
                       "LIMIT 1500", env.demo.fleets["globex/kiosk"])  # the demo key's devices
    (tmp_path / "uuids.txt").write_text("".join(f"{u}\n" for _, u in chosen))
    env.request_log.clear()
    path = tmp_path / "job.toml"
    path.write_text(f'name = "listed"\n[target]\nresource = "device"\nuuids_file = "uuids.txt"\n{ACTION}')
    assert main(["plan", str(path), "-o", str(tmp_path / "p.json"), "--csv", str(tmp_path / "t.csv")]) == 0
    assert "listed   1,500 uuids from uuids.txt" in capsys.readouterr().out
    items = orjson.loads((tmp_path / "p.json").read_bytes())["items"]
    assert sorted(i["target_id"] for i in items) == sorted(i for i, _ in chosen)
    reads = [e for e in env.request_log.entries() if e.method == "GET" and e.url.startswith("/v7/device?")
             and "uuid in (" in e.url]
    assert len(reads) >= 2  # sliced: one URL could not hold them all
    assert sum(len(e.url) for e in reads) > URL_BUDGET
    assert {e.status for e in env.request_log.entries()} == {200}
    back = [r["uuid"] for r in csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text()))]
    (tmp_path / "again.txt").write_text("\n".join(back) + "\n")
    path.write_text(path.read_text().replace("uuids.txt", "again.txt"))
    assert main(["plan", str(path), "-o", str(tmp_path / "p2.json")]) == ExitCode.OK
    again = orjson.loads((tmp_path / "p2.json").read_bytes())["items"]
    assert sorted(i["target_id"] for i in again) == sorted(i for i, _ in chosen)


def test_ids_select_fleets(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ids = [...] on fleets targets those fleets by id."""
    fleet = env.demo.fleets["acme/sensor"]
    path = tmp_path / "job.toml"
    path.write_text(f'name = "f"\n[target]\nresource = "fleet"\nids = [{fleet}, 999999]\n{ACTION}')
    assert main(["plan", str(path), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    out = capsys.readouterr().out
    items = orjson.loads((tmp_path / "p.json").read_bytes())["items"]
    assert [i["target_id"] for i in items] == [fleet]
    assert "listed   2 ids" in out.splitlines()
    assert "warning  1 of the 2 listed ids is not in the plan" in out

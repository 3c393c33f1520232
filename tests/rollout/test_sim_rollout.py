"""The simulator's part in rollouts: a release that a share of devices fails on, and an outage window
(503 between two times) on the fault injector's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bulkops.cli.main import main
from bulkops.sim.db import Database
from bulkops.sim.devices import DeviceSimulator, TickResult, fraction_of
from bulkops.sim.faults import ACCEPTED_FORMS, FaultInjector, FaultSpec, parse_faults
from bulkops.sim.seed import seed_demo
from bulkops.sim.server import SimConfig, SimServer

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_bad_release_fails_only_there() -> None:
    """Told to run the bad release, the chosen share gives up (aborted, online, old release); on any
    other release the same devices converge."""
    db = Database.open(":memory:", clock=lambda: T0)
    info = seed_demo(db, 600, seed=3)
    fleet, bad = info.fleets["acme/gateway"], info.releases["acme/gateway@2.0.0"]
    sim = DeviceSimulator(db, converge_delay=1.0, seed=3, bad_release=bad, bad_release_fraction=0.3)
    sql = ("SELECT id FROM device WHERE belongs_to__application = ? AND is_online = 1 AND "
           "is_running__release != ? ORDER BY id")
    ids = [r[0] for r in db.conn.execute(sql, (fleet, bad))]
    listed = ",".join(map(str, ids))
    db.conn.execute(f"UPDATE device SET is_pinned_on__release = ? WHERE id IN ({listed})", (bad,))
    failing = {d for d in ids if fraction_of(3, d, "bad-release") < 0.3}
    assert 0.15 < len(failing) / len(ids) < 0.45
    assert sim.tick(T0) == TickResult(len(ids), 0, 0, 0)
    assert sim.tick(T0 + timedelta(seconds=1)) == TickResult(0, len(ids) - len(failing), len(failing), 0)
    sql = (f"SELECT id FROM device WHERE id IN ({listed}) AND is_online = 1 AND update_status = 'aborted' "
           "AND is_running__release != ?")
    stuck = {r[0] for r in db.conn.execute(sql, (bad,))}
    assert stuck == failing
    good = info.releases["acme/gateway@1.4.0"]
    db.conn.execute(f"UPDATE device SET is_pinned_on__release = ? WHERE id IN ({listed})", (good,))
    sim.tick(T0 + timedelta(seconds=2))
    sim.tick(T0 + timedelta(seconds=3))
    running = db.conn.execute(f"SELECT DISTINCT is_running__release FROM device WHERE id IN ({listed})")
    assert running.fetchall() == [(good,)]
    with pytest.raises(ValueError, match=r"^bad_release_fraction must be between 0 and 1$"):
        DeviceSimulator(db, bad_release=bad, bad_release_fraction=1.5)


def test_bad_release_by_name_and_refused_names(capsys: pytest.CaptureFixture[str]) -> None:
    """--bad-release takes an id or <fleet>@<semver>; an unknown name stops `bulkops sim` with exit 2."""
    server = SimServer(SimConfig(seed_demo=10, bad_release="acme/gateway@2.0.0", bad_release_fraction=0.5,
                                 tick_interval=3600)).start_in_thread()
    try:
        assert server.devices.bad_release == server.demo.releases["acme/gateway@2.0.0"]
        assert server.devices.bad_release_fraction == 0.5
    finally:
        server.stop()
    assert main(["sim", "--port", "0", "--seed-demo", "0", "--bad-release", "acme/gateway@9.9.9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bulkops sim: bad release 'acme/gateway@9.9.9' is not a release id or one of "
                          "acme/gateway-next@2.0.0, acme/gateway@1.4.0, ")


def test_outage_spec_parses_and_renders() -> None:
    """outage=A..B is read, rendered back, and refused with the accepted forms when malformed."""
    assert parse_faults("outage=120s..300s") == FaultSpec(outage=(120.0, 300.0))
    assert parse_faults("outage=500ms..2s,methods=GET").render() == "outage=0.5s..2s,seed=0,methods=GET"
    for spec, problem in [("outage=30s", "bad outage '30s'"), ("outage=5s..1s", "the outage '5s..1s' ends "
                          "before it starts"), ("outage=x..2s", "bad duration 'x'")]:
        with pytest.raises(ValueError) as info:
            parse_faults(spec)
        assert str(info.value) == f"fault spec {spec!r}: {problem}; {ACCEPTED_FORMS}"


def test_outage_window_on_the_injector_clock() -> None:
    """Every affected request between A and B after the SPEC was applied gets a 503, none outside."""
    now = [0.0]
    faults = FaultInjector("outage=10s..20s,methods=GET", clock=lambda: now[0])
    assert faults.decide("GET") == (None, 0.0)
    now[0] = 10.0
    assert faults.decide("GET") == ("503", 0.0) and faults.decide("PATCH") == (None, 0.0)
    now[0] = 19.9
    assert faults.decide("GET") == ("503", 0.0)
    now[0] = 20.0
    assert faults.decide("GET") == (None, 0.0)
    assert faults.statistics().fault_503 == 2


@pytest.mark.anyio
async def test_outage_over_http() -> None:
    """In the window the simulator answers 503 with an empty body; after it, it serves again."""
    now = [0.0]
    server = SimServer(SimConfig(seed_demo=5, tick_interval=3600)).start_in_thread()
    try:
        server.faults.set_clock(lambda: now[0])
        server.faults.set_spec("outage=1s..2s")
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            statuses = []
            for moment in (0.5, 1.5, 2.5):
                now[0] = moment
                async with http.get(f"{server.url}/v7/device?$select=id") as r:
                    statuses.append((r.status, len(await r.read()) > 0))
        assert statuses == [(200, True), (503, False), (200, True)]
    finally:
        server.stop()

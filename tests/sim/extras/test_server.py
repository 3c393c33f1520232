"""SimServer and the ``bulkops sim`` command: serving, admin routes, size limit, loopback only, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from bulkops.sim.server import SimConfig, SimServer

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.anyio
async def test_serves_the_seeded_api_and_logs_requests() -> None:
    """The demo key reads its devices over HTTP; the request log and the admin routes see it."""
    async with SimServer(SimConfig(seed_demo=50, seed=1)) as sim, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {sim.api_key}"}) as http:
        assert sim.url.startswith("http://127.0.0.1:")
        async with http.get(f"{sim.url}/v7/device?$select=id,note&$orderby=id asc") as r:
            assert r.status == 200
            devices = (await r.json())["d"]
        acme = [row[0] for row in sim.db.conn.execute(
            "SELECT d.id FROM device d JOIN application a ON a.id = d.belongs_to__application "
            "JOIN organization o ON o.id = a.organization WHERE o.handle = 'acme' ORDER BY d.id")]
        assert devices == [{"id": device, "note": None} for device in acme]
        assert 0 < len(acme) < 50  # the globex fleet's devices stay invisible
        async with http.get(f"{sim.url}/_sim/requests") as r:
            logged = (await r.json())["requests"]
        assert [(e["method"], e["url"], e["status"], e["outcome"]) for e in logged] == [
            ("GET", "/v7/device?$select=id,note&$orderby=id asc", 200, "ok")]
        async with http.post(f"{sim.url}/_sim/devices/tick") as r:
            assert await r.json() == {"started": 0, "converged": 0, "stuck": 0, "went_offline": 0}


@pytest.mark.anyio
async def test_rate_limit_and_faults_from_the_config() -> None:
    """SimConfig's rate limit and fault SPECs are in force from the start and changeable by PUT."""
    cfg = SimConfig(rate_limit="fixed:2/10s", faults="503=1,methods=PATCH")
    async with SimServer(cfg) as sim, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {sim.api_key}"}) as http:
        statuses = []
        for _ in range(3):
            async with http.get(f"{sim.url}/v7/application?$select=id") as r:
                statuses.append(r.status)
        assert statuses == [200, 200, 429]
        async with http.put(f"{sim.url}/_sim/ratelimit", json={"spec": "none"}) as r:
            assert r.status == 200
        async with http.patch(f"{sim.url}/v7/device(1)", json={"note": "x"}) as r:
            assert r.status == 503
        assert sim.request_log.count(outcome="fault:503") == 1
        assert sim.rate_limiter.statistics().throttled == 1
        assert sim.faults.statistics().fault_503 == 1


@pytest.mark.anyio
async def test_lost_answer_still_commits_the_write() -> None:
    """With lost=1 on PATCH the client gets no answer, yet the change is in the database."""
    async with SimServer(SimConfig(seed_demo=5, faults="lost=1,methods=PATCH")) as sim, \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.api_key}"}) as http:
        device = sim.db.conn.execute(
            "SELECT d.id FROM device d JOIN application a ON a.id = d.belongs_to__application "
            "WHERE a.slug LIKE 'acme/%' ORDER BY d.id LIMIT 1").fetchone()[0]
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.patch(f"{sim.url}/v7/device({device})", json={"note": "applied"}) as r:
                await r.read()
        note = sim.db.conn.execute("SELECT note FROM device WHERE id = ?", (device,)).fetchone()
        assert note == ("applied",)
        assert [(e.method, e.status, e.outcome) for e in sim.request_log.entries()] == [
            ("PATCH", 200, "fault:lost")]


@pytest.mark.anyio
async def test_request_head_over_16kb_gets_431() -> None:
    """A 14 KB request line passes (whatever the API answers); 17.5 KB gets 431 like balena."""
    async with SimServer(SimConfig(seed_demo=5)) as sim, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {sim.api_key}"}) as http:
        def ids(n: int) -> str:
            return ",".join(str(100000 + i) for i in range(n))

        async with http.get(f"{sim.url}/v7/device?$select=id&$filter=id in ({ids(2000)})") as r:
            assert r.status == 200
        async with http.get(f"{sim.url}/v7/device?$select=id&$filter=id in ({ids(2500)})") as r:
            assert (r.status, await r.read()) == (431, b"")


def test_non_loopback_host_is_refused() -> None:
    """Only loopback addresses are served unless allow_non_loopback is set."""
    with pytest.raises(ValueError, match="loopback") as info:
        SimServer(SimConfig(host="0.0.0.0"))
    assert str(info.value) == (
        "bulkops sim serves only on a loopback address (127.0.0.1, ::1, localhost), got '0.0.0.0'; "
        "pass --allow-non-loopback to serve on it anyway")
    SimServer(SimConfig(host="::1"))
    SimServer(SimConfig(host="10.1.2.3", allow_non_loopback=True))


def test_start_in_thread_for_synchronous_callers() -> None:
    """start_in_thread() returns once serving; stop() shuts it down and the port stops answering."""
    sim = SimServer(SimConfig(api_key="thread-key")).start_in_thread()
    try:
        request = urllib.request.Request(f"{sim.url}/v7/application?$select=slug&$orderby=slug%20asc",
                                         headers={"Authorization": "Bearer thread-key"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            slugs = [row["slug"] for row in json.loads(answer.read())["d"]]
        assert slugs == ["acme/gateway", "acme/gateway-next", "acme/sensor"]
        url = sim.url
    finally:
        sim.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/v7/application", timeout=5)
    assert "thread-key" not in repr(sim.config)


def test_cli_prints_url_and_key_serves_and_exits_on_sigterm() -> None:
    """`python -m bulkops.sim --port 0` prints the URL and key, answers a GET, exits 0 on SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkops.sim", "--port", "0", "--seed-demo", "20", "--api-key", "cli-key",
         "--rate-limit", "fixed:100/10s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url_line = proc.stdout.readline().strip()
        key_line = proc.stdout.readline().strip()
        assert url_line.startswith("BALENA_API_URL=http://127.0.0.1:")
        assert key_line == "BALENA_API_KEY=cli-key"
        url = url_line.split("=", 1)[1]
        request = urllib.request.Request(f"{url}/v7/device/$count",
                                         headers={"Authorization": "Bearer cli-key"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.loads(answer.read())["d"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_refuses_bad_options() -> None:
    """A bad SPEC or a non-loopback host is refused with exit status 2 and a clear message."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([sys.executable, "-m", "bulkops.sim", "--rate-limit", "fast"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert bad.returncode == 2
    assert "argument --rate-limit: rate limit spec 'fast': cannot read 'fast'" in bad.stderr
    remote = subprocess.run([sys.executable, "-m", "bulkops.sim", "--host", "0.0.0.0"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert remote.returncode == 2
    line = json.loads(remote.stderr)  # off a terminal, one JSON line
    assert (line["level"], line["event"], line["message"]) == ("error", "bulkops.sim.refused",
        "bulkops sim serves only on a loopback address (127.0.0.1, ::1, localhost), got "
        "'0.0.0.0'; pass --allow-non-loopback to serve on it anyway")


@pytest.mark.anyio
async def test_a_reused_db_file_is_served_not_seeded_again(tmp_path: Path) -> None:
    """A --db file that holds the demo data keeps its rows and key; a given api_key replaces the key."""
    path = str(tmp_path / "sim.sqlite")
    async with SimServer(SimConfig(db=path, seed_demo=10)) as sim:
        first_key = sim.api_key
        sim.db.conn.execute("UPDATE device SET note = 'kept' WHERE id = 1")
    async with SimServer(SimConfig(db=path, seed_demo=10)) as sim:
        assert sim.api_key == first_key
        assert sim.demo.counts["device"] == 10
        assert sim.db.conn.execute("SELECT note FROM device WHERE id = 1").fetchone() == ("kept",)
    async with SimServer(SimConfig(db=path, api_key="new-key")) as sim:
        url, headers = f"{sim.url}/v7/device/$count", {"Authorization": "Bearer new-key"}
        async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as r:
            assert (r.status, (await r.json())["d"]) == (200, sim.demo.counts["device"] - _globex(sim))


def _globex(sim: SimServer) -> int:
    return int(sim.db.conn.execute(
        "SELECT COUNT(*) FROM device WHERE belongs_to__application = ?",
        (sim.demo.fleets["globex/kiosk"],)).fetchone()[0])

"""Secrets kept and files private: the API token appears in no stream and no file a run produces (nor in a
repr, nor in an error even when the server echoes it back), run files are owner-only, plain http off
loopback is refused before any connection, TLS is verified, and a redirect is never followed."""

from __future__ import annotations

import re
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import structlog
from aiohttp import web

from bulkops.api.client import Client
from bulkops.cli.commands import Endpoint
from bulkops.config import load_settings
from bulkops.errors import InputError, TransportError
from bulkops.sim.server import SimConfig, SimServer
from tests.api.test_hostile_server import ThreadServer
from tests.apply.test_kill_resume import REPO, child_env, edit_plan_file, job_text
from tests.conftest import human, start_sim

TOKEN = "bo_SECRET_7f3a9c1e5d_token_value_0042"
INSECURE = ("refusing to send the API token over plain http to 192.0.2.1: use an https:// API URL, or allow "
            "it explicitly with --allow-insecure-http on a trusted network")


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def secret_sim() -> Iterator[SimServer]:
    server = start_sim(seed_demo=600, api_key=TOKEN)
    try:
        yield server
    finally:
        server.stop()


class Recorder:
    """Runs bulkops commands in child processes (umask 0, so modes come from bulkops, not the umask) and
    keeps everything they print."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.streams: list[str] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["/bin/sh", "-c", 'umask 000; exec "$0" -m bulkops "$@"', _python(),
             *args], env=env or self.env, cwd=self.cwd, capture_output=True, text=True, timeout=60,
            check=False,
        )
        self.streams += [proc.stdout, proc.stderr]
        return proc


def _python() -> str:
    return sys.executable


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.timeout(90)
def test_token_in_no_stream_or_file_and_files_private(secret_sim: SimServer, tmp_path: Path) -> None:
    """validate, plan, apply, runs, report --csv/--json, resume of a finished run, a failing run with
    errors, retry and undo plans, all with -vv debug logging: the token is in no output and no file, and
    every file is 0600 and every run directory 0700 although the umask is 0."""
    sim = secret_sim
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    env = child_env(sim.url, TOKEN, home)
    run = Recorder(env, work)
    job = work / "job.toml"
    job.write_text(job_text("secret", "SECRET").replace("acme/gateway", "acme/gateway-next"))
    plan = work / "p.json"
    assert run("-vv", "validate", str(job)).returncode == 0
    assert run("-vv", "plan", str(job), "-o", str(plan)).returncode == 0
    proc = run("-vv", "apply", str(plan), "--yes")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = re.search(r"bulkops: run (\S+)", human(proc.stderr))
    assert run_id is not None
    assert '"event": "bulkops.client.request"' in proc.stderr or "bulkops.client.request" in proc.stderr
    assert run("-vv", "runs").returncode == 0
    csv_file, json_file = work / "r.csv", work / "r.json"
    assert run("-vv", "report", run_id[1], "--csv", str(csv_file), "--json", str(json_file)).returncode == 0
    assert run("-vv", "resume", run_id[1]).returncode == 0
    assert run("-vv", "undo", run_id[1], "-o", str(work / "undo.json")).returncode == 0
    # a run that fails: the plan edited to patch a field the API does not know
    note = work / "note.toml"
    note.write_text('name = "note"\n[target]\nresource = "device"\nfleet = "acme/gateway-next"\n[action]\n'
                    'type = "patch"\nfields = { note = "x" }\n[options]\nmax_attempts = 2\n')
    bad = work / "bad.json"
    assert run("-vv", "plan", str(note), "-o", str(bad)).returncode == 0
    def unknown_field(data: dict[str, Any]) -> None:
        for item in data["items"]:
            item["after"] = {"no_such_field": "x"}

    edit_plan_file(bad, unknown_field, TOKEN)
    failed = run("-vv", "apply", str(bad), "--yes")
    assert failed.returncode == 1 and "HTTP 500" in failed.stdout, failed.stdout
    failed_id = re.search(r"bulkops: run (\S+)", human(failed.stderr))
    assert failed_id is not None
    assert run("-vv", "report", failed_id[1], "--json", str(work / "f.json")).returncode == 0
    retry = run("-vv", "plan", "--retry-failed", failed_id[1], "-o", str(work / "retry.json"))
    assert retry.returncode == 4 and "HTTP 500" in retry.stderr  # its read-back selects the unknown field
    assert run("-vv", "plan", "--retry-failed", run_id[1], "-o", str(work / "retry.json")).returncode == 0
    # a run refused with 401 (the key deleted): the error quotes the server, never the token
    sim.db.conn.execute("DELETE FROM api_key WHERE key=?", (TOKEN,))
    refused = run("-vv", "plan", str(job), "-o", str(work / "x.json"))
    assert refused.returncode == 4 and "HTTP 401" in refused.stderr
    files = [p for p in [*home.rglob("*"), *work.rglob("*")] if p.is_file()]
    assert len(files) >= 12
    for text in run.streams:
        assert TOKEN not in text
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path
    for path in files:
        if path.suffix in (".json", ".csv", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".lock"):
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
    for directory in [home, home / "runs", *(p for p in (home / "runs").iterdir())]:
        assert _mode(directory) == 0o700, directory
    assert {p.name for p in (home / "runs" / run_id[1]).iterdir()} >= {"plan.json", "journal.sqlite"}


def test_token_echoed_by_the_server_is_not_repeated(tmp_path: Path) -> None:
    """A server that echoes the Authorization header in its error body: the CLI's error line quotes the
    answer without the token."""
    async def echo(request: web.Request) -> web.Response:
        said = f"invalid credentials: {request.headers.get('Authorization', '')}"
        return web.Response(status=401, body=orjson.dumps(said), content_type="application/json")

    server = ThreadServer(echo).start()
    try:
        job = tmp_path / "job.toml"
        job.write_text(job_text("echo", "ECHO"))
        proc = subprocess.run(
            [_python(), "-m", "bulkops", "-vv", "plan", str(job), "-o", str(tmp_path / "p.json")],
            env=child_env(server.url, TOKEN, tmp_path / "home"), cwd=tmp_path, capture_output=True, text=True,
            timeout=30, check=False,
        )
    finally:
        server.stop()
    assert proc.returncode == 4, proc.stderr
    assert "HTTP 401: the API refused the token" in proc.stderr
    assert TOKEN not in proc.stderr and TOKEN not in proc.stdout, proc.stderr


def test_reprs_redact_the_token(tmp_path: Path) -> None:
    """repr() of settings, clients, endpoints and simulator configs never shows the token."""
    settings = load_settings(env={"BALENA_API_KEY": TOKEN}, home=tmp_path)
    assert settings.token == TOKEN
    shown = [repr(settings), str(settings), repr(Client("https://api.example.test", TOKEN)),
             repr(Endpoint("https://api.example.test", TOKEN, False)), repr(SimConfig(api_key=TOKEN))]
    for text in shown:
        assert TOKEN not in text, text
    assert repr(settings) == ("Settings(api_url='https://api.balena-cloud.com', token='***', "
                              "allow_insecure_http=False)")


def test_plain_http_refused_off_loopback_before_any_connection(tmp_path: Path) -> None:
    """http:// to a non-loopback host is refused when the client is made (no connection exists yet) and
    by the CLI with exit 2 at once; loopback and an explicit allowance are accepted."""
    with pytest.raises(InputError) as caught:
        Client("http://192.0.2.1", TOKEN)
    assert str(caught.value) == INSECURE
    Client("http://192.0.2.1", TOKEN, allow_insecure_http=True)  # allowed; never opened here
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "https://192.0.2.1"):
        Client(url, TOKEN)
    with pytest.raises(InputError) as creds:
        Client("https://user:pw@api.example.test", TOKEN)
    assert str(creds.value) == "the API URL must not contain credentials: give the token in BALENA_API_KEY"
    job = tmp_path / "job.toml"
    job.write_text(job_text("insecure", "X"))
    started = time.monotonic()
    proc = subprocess.run(
        [_python(), "-m", "bulkops", "plan", str(job), "--api-url", "http://192.0.2.1"],
        env=child_env("http://127.0.0.1:1", TOKEN, tmp_path / "home"), cwd=REPO, capture_output=True,
        text=True, timeout=30, check=False,
    )
    assert time.monotonic() - started < 10
    assert proc.returncode == 2 and human(proc.stderr) == f"bulkops: error: {INSECURE}\n"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.mark.anyio
async def test_tls_certificate_verified_by_default(tmp_path: Path) -> None:
    """An https API with a self-signed certificate is refused (not retried); the server never sees a
    request, so the token is never sent."""
    cert, key = _self_signed(tmp_path)
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"d": []})

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with anyio.fail_after(20):
            async with Client(f"https://127.0.0.1:{port}", TOKEN) as client:
                with pytest.raises(TransportError) as caught:
                    await client.get("device")
    finally:
        await runner.cleanup()
    assert str(caught.value) == (f"GET https://127.0.0.1:{port}/v7/device: the TLS certificate could not be "
                                 "verified (gave up after 1 attempt)")
    assert seen == []


def test_redirect_to_another_host_is_not_followed(tmp_path: Path) -> None:
    """A 302/307 to another host is an error naming the redirect; the other host gets no request (so no
    Authorization header)."""
    other: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        other.append(dict(request.headers))
        return web.json_response({"d": []})

    target = ThreadServer(record).start()
    port = target.url.rsplit(":", 1)[1]

    async def redirect(request: web.Request) -> web.Response:
        elsewhere = f"http://localhost:{port}{request.path_qs}"
        if request.method == "GET":
            raise web.HTTPFound(elsewhere)
        raise web.HTTPTemporaryRedirect(elsewhere)

    source = ThreadServer(redirect).start()
    try:
        job = tmp_path / "job.toml"
        job.write_text(job_text("redirect", "X"))
        proc = subprocess.run(
            [_python(), "-m", "bulkops", "plan", str(job)], env=child_env(source.url, TOKEN, tmp_path / "h"),
            cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
        )

        async def patch() -> None:
            async with Client(source.url, TOKEN) as client:
                await client.patch("device", {"note": "x"}, key=5)

        with pytest.raises(Exception) as caught:
            anyio.run(patch)
    finally:
        source.stop()
        target.stop()
    assert proc.returncode == 4
    assert human(proc.stderr).startswith(f"bulkops: error: GET {source.url}/v7/application")
    assert "HTTP 302: unexpected answer: a redirect, not followed (the token is only ever sent to the " \
           "configured API URL; check --api-url)" in proc.stderr
    assert "HTTP 307: unexpected answer: a redirect, not followed" in str(caught.value)
    assert other == []


def test_files_replacing_readable_ones_become_private(secret_sim: SimServer, tmp_path: Path) -> None:
    """A plan or report written over an existing world-readable file (and a BULKOPS_HOME that exists
    world-readable) ends owner-only: files are replaced, not rewritten in place."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    env = child_env(secret_sim.url, TOKEN, home)
    run = Recorder(env, tmp_path)
    job = tmp_path / "job.toml"
    job.write_text(job_text("replace", "REPLACE").replace("acme/gateway", "acme/gateway-next"))
    plan, report = tmp_path / "p.json", tmp_path / "r.csv"
    for path in (plan, report):
        path.write_text("old")
        path.chmod(0o644)
    assert run("plan", str(job), "-o", str(plan)).returncode == 0
    proc = run("apply", str(plan), "--yes")
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"bulkops: run (\S+)", human(proc.stderr))
    assert run_id is not None
    assert run("report", run_id[1], "--csv", str(report)).returncode == 0
    assert _mode(plan) == 0o600 and _mode(report) == 0o600
    assert report.read_text().startswith("index,id,label,kind")
    assert _mode(home) == 0o700 and _mode(home / "runs" / run_id[1]) == 0o700

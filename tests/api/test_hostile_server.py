"""Broken and hostile API answers: a small aiohttp server on 127.0.0.1 sits between the CLI and the
simulator and spoils chosen answers (truncated JSON, HTML pages, huge bodies, wrong types, no ``d``,
writes answered oddly or not applied). Every case ends in a clear one-line error or clear per-target
outcomes — never a traceback, and never "applied" for a target the server does not hold as planned."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import (
    bulkops,
    child_env,
    job_text,
    make_plan_file,
    preseed,
    read_report,
    the_run,
)
from tests.conftest import human, rows, start_sim

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HUGE = 64 * 1024 * 1024 + 1024  # just over the client's cap on one answer
FLEET = "acme/gateway-next"


class ThreadServer:
    """An aiohttp application served on 127.0.0.1 (port 0) from a thread with its own event loop."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadServer:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            app = web.Application(client_max_size=1 << 20)
            app.router.add_route("*", "/{tail:.*}", self.handler)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


def resource_of(path: str) -> str:
    """``/v7/device_tag(5)/$count`` → ``device_tag``."""
    rest = path.split("/v7/", 1)[-1]
    for stop in "(/?":
        rest = rest.split(stop, 1)[0]
    return rest


class Spoiler:
    """Forwards every request to the simulator; answers of (method, resource) pairs in ``rules`` are
    replaced according to the rule's mode."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: dict[tuple[str, str], str] = {}
        self.spoiled = 0

    async def forward(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")}
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.upstream + request.raw_path, data=body or None, headers=headers,
            allow_redirects=False,
        ) as resp:
            return resp.status, await resp.read()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self.rules.get((request.method, resource_of(request.path)))
        if mode is None:
            status, data = await self.forward(request, body)
            return web.Response(status=status, body=data, content_type="application/json")
        self.spoiled += 1
        return await spoil(self, request, body, mode)


def _json(status: int, doc: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


async def spoil(proxy: Spoiler, request: web.Request, body: bytes, mode: str) -> web.StreamResponse:
    html = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    if mode == "huge-chunked":
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b'{"d": [' + b" " * (1 << 20)
        sent = 0
        try:
            while sent < HUGE:
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp
    if mode == "hang":
        await asyncio.sleep(30)
        return web.Response(status=200)
    if mode == "429-date":
        later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        return web.Response(status=429, body=b'"Too Many Requests"', headers={"Retry-After": later})
    if mode == "not-http":
        assert request.transport is not None
        request.transport.write(b"SURPRISE 42 not http at all\r\n\r\n")
        request.transport.close()
        return web.Response(status=200)
    if mode == "huge":
        return web.Response(status=200, body=b" " * HUGE, content_type="application/json")
    if mode == "html-200":
        return web.Response(status=200, body=html, content_type="text/html")
    if mode == "html-502":
        return web.Response(status=502, body=html, content_type="text/html")
    if mode.endswith("-not-applied"):  # the write is never forwarded
        if mode == "created-not-applied":
            return _json(201, {})
        return web.Response(status=200)
    status, data = await proxy.forward(request, body)
    if mode == "truncated":
        return web.Response(status=status, body=data[: len(data) // 2], content_type="application/json")
    if mode == "html-after-write":
        return web.Response(status=status, body=html, content_type="text/html")
    doc = orjson.loads(data) if data else None
    if mode == "no-d":
        return _json(status, {"value": doc.get("d") if isinstance(doc, dict) else doc})
    if mode == "d-object":
        return _json(status, {"d": {"rows": doc.get("d") if isinstance(doc, dict) else doc}})
    if mode == "string-ids" and isinstance(doc, dict) and isinstance(doc.get("d"), list):
        return _json(status, {"d": [{**r, "id": f"#{r.get('id')}"} for r in doc["d"]]})
    if mode == "no-ids" and isinstance(doc, dict) and isinstance(doc.get("d"), list):
        return _json(status, {"d": [{k: v for k, v in r.items() if k != "id"} for r in doc["d"]]})
    if mode == "wrong-values" and isinstance(doc, dict) and isinstance(doc.get("d"), list):
        return _json(status, {"d": [{**r, "value": 7, "device": "x"} for r in doc["d"]]})
    raise AssertionError(f"unknown mode {mode}")


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def hostile() -> Iterator[tuple[SimServer, Spoiler, str]]:
    sim = start_sim(seed_demo=1600)
    spoiler = Spoiler(sim.url)
    server = ThreadServer(spoiler.handle).start()
    try:
        yield sim, spoiler, server.url
    finally:
        server.stop()
        sim.stop()


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "Error:" not in stderr.replace("bulkops: error:", ""), stderr


PLAN_CASES = [
    ("device", "truncated", "HTTP 200: unexpected answer: expected valid JSON, got '{\"d\":"),
    ("device", "html-200", "HTTP 200: unexpected answer: expected valid JSON, got (an HTML page)"),
    ("device", "html-502", "HTTP 502: server error (gave up after 6 attempts): (an HTML page)"),
    ("device", "huge", "HTTP 200: unexpected answer: a body over 67108864 bytes, not read"),
    ("device", "huge-chunked", "HTTP 200: unexpected answer: a body over 67108864 bytes, not read"),
    ("device", "no-d", 'HTTP 200: unexpected answer: expected {"d": [objects]}, got \'{"value":'),
    ("device", "d-object", 'HTTP 200: unexpected answer: expected {"d": [objects]}, got \'{"d":{"rows":'),
    ("device", "string-ids", "unexpected answer"),
    ("device", "no-ids", "unexpected answer"),
    ("application", "string-ids", "unexpected answer"),
    ("device_environment_variable", "wrong-values", "unexpected answer"),
]


SLOW_CASES = [
    ("hang", 'request_timeout = "1s"\nmax_attempts = 2',
     r"no answer within the 1 s timeout \(gave up after 2 attempts\)"),
    ("429-date", 'max_retry_after = "60s"',  # an HTTP date counts whole seconds: 3599 or 3600
     r"the server asked to wait 3(599|600) s before the next request \(HTTP 429, Retry-After\), more than "
     r"the configured bound of 60 s; stopped here: the run can be resumed later"),
    ("not-http", "max_attempts = 2", "unexpected answer: not valid HTTP"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "options", "said"), SLOW_CASES, ids=[m for m, _, _ in SLOW_CASES])
def test_plan_against_stalling_servers_is_bounded(hostile: tuple[SimServer, Spoiler, str], tmp_path: Path,
                                                  mode: str, options: str, said: str) -> None:
    """A read that never gets an answer, a 429 whose Retry-After is an HTTP date an hour away, an answer
    that is not HTTP: `bulkops plan` ends within its configured bounds with one clear error line (``said``
    is a pattern)."""
    sim, spoiler, url = hostile
    spoiler.rules[("GET", "device")] = mode
    job = tmp_path / "job.toml"
    job.write_text(job_text("stall", "STALL", options=options).replace("acme/gateway", FLEET))
    started = time.monotonic()
    proc = bulkops(["plan", str(job), "-o", str(tmp_path / "p.json")],
                   child_env(url, sim.api_key, tmp_path / "home"), timeout=50)
    elapsed = time.monotonic() - started
    assert_clean(proc.stderr)
    assert proc.returncode == ExitCode.RUN_FAILED, proc.stderr
    lines = human(proc.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bulkops: error: GET {url}/v7/device?"), lines
    assert re.search(f"{said}$", lines[0]), lines[0]
    assert elapsed < 10, elapsed


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("resource", "mode", "said"), PLAN_CASES,
                         ids=[f"{r}-{m}" for r, m, _ in PLAN_CASES])
def test_plan_against_broken_reads_fails_clearly(hostile: tuple[SimServer, Spoiler, str], tmp_path: Path,
                                                 resource: str, mode: str, said: str) -> None:
    """`bulkops plan` whose reads are answered brokenly exits 4 with one clear error line naming the
    request and what was wrong; no traceback, no plan file."""
    sim, spoiler, url = hostile
    preseed(sim, "HOSTILE", random.Random(8), FLEET)
    spoiler.rules[("GET", resource)] = mode
    job = tmp_path / "job.toml"
    job.write_text(job_text("hostile", "HOSTILE").replace("acme/gateway", FLEET))
    env = child_env(url, sim.api_key, tmp_path / "home")
    plan_file = tmp_path / "p.json"
    proc = bulkops(["plan", str(job), "-o", str(plan_file)], env, timeout=50)
    assert_clean(proc.stderr)
    assert proc.returncode == ExitCode.RUN_FAILED, proc.stderr
    assert spoiler.spoiled >= 1
    lines = human(proc.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulkops: error: GET "), lines
    assert f"/{resource}" in lines[0], lines
    assert said in lines[0], lines[0]
    assert not plan_file.exists()


WRITE_CASES = [
    # (method, resource, mode, whether the server applied every write: True, False, None = some)
    ("POST", "device_environment_variable", "html-after-write", True),
    ("POST", "device_environment_variable", "truncated", True),
    ("POST", "device_environment_variable", "created-not-applied", False),
    ("PATCH", "device_environment_variable", "html-after-write", True),
    ("PATCH", "device_environment_variable", "ok-not-applied", False),
    ("PATCH", "device_environment_variable", "html-502", False),
    ("GET", "device_environment_variable", "string-ids", None),
    ("GET", "device_environment_variable", "no-ids", None),
    ("GET", "device_environment_variable", "wrong-values", None),
    ("GET", "device_environment_variable", "truncated", None),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "resource", "mode", "really"), WRITE_CASES,
                         ids=[f"{m}-{mode}" for m, _, mode, _ in WRITE_CASES])
def test_apply_against_odd_answers_never_claims_wrongly(hostile: tuple[SimServer, Spoiler, str],
                                                        tmp_path: Path, method: str, resource: str,
                                                        mode: str, really: bool | None) -> None:
    """`bulkops apply` whose writes (or read-backs) are answered oddly: no traceback, every target gets an
    outcome, and a target is reported applied only if the server holds its planned value."""
    sim, spoiler, url = hostile
    preseed(sim, "HOSTILE", random.Random(9), FLEET)
    job = tmp_path / "job.toml"
    job.write_text(job_text("hostile", "HOSTILE").replace("acme/gateway", FLEET))
    plan_file = tmp_path / "p.json"
    plan = make_plan_file(url, sim.api_key, job, plan_file)
    kinds = plan.counts()
    assert kinds["create"] > 5 and kinds["change"] > 5
    spoiler.rules[(method, resource)] = mode
    env = child_env(url, sim.api_key, tmp_path / "home")
    proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=50)
    spoiler.rules.clear()
    assert_clean(proc.stderr)
    assert proc.returncode in (ExitCode.OK, ExitCode.SOME_FAILED, ExitCode.RUN_FAILED), proc.stderr
    assert spoiler.spoiled >= 1
    run_dir = the_run(tmp_path / "home")
    assert run_dir is not None
    report = read_report(run_dir, tmp_path / "r.json")
    held = {int(d): v for d, v in rows(sim, "SELECT device, value FROM device_environment_variable "
                                            "WHERE name='HOSTILE'")}
    assert sorted(r["index"] for r in report["items"]) == list(range(len(plan.items)))
    touched = {"POST": "create", "PATCH": "change"}.get(method)
    for r in report["items"]:
        item = plan.items[r["index"]]
        if r["outcome"] in ("applied", "noop"):
            assert held.get(item.target_id) == "on", r  # never a wrong "applied"
        elif touched == item.kind.value and really is False:
            assert r["outcome"] == "failed" and r["error"], r
    if really is True:  # the server applied everything; only the answers were odd
        assert all(held.get(it.target_id) == "on" for it in plan.items)

"""Helpers for the compare-and-set tests: writes over real HTTP (as a device or another operator would
make them), and a proxy on 127.0.0.1 that lets a change land on the server the instant before a write
of bulkops reaches it — the window a read-then-write leaves open."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web

from bulkops import open_client
from bulkops.model import ApplyOptions
from bulkops.odata.ast import Node
from bulkops.odata.parser import parse
from bulkops.sim.server import SimServer
from tests.api.test_hostile_server import ThreadServer, resource_of
from tests.conftest import WRITES, start_sim


def http_patch(sim: SimServer, resource: str, key: int, body: Mapping[str, Any]) -> None:
    """``PATCH /v7/resource(key)`` over HTTP with the demo user's key."""

    async def go() -> None:
        async with open_client(sim.url, sim.api_key, ApplyOptions()) as client:
            await client.patch(resource, body, key=key)

    anyio.run(go)


def stage_offline(sim: SimServer, device: int, since: str) -> None:
    """Make ``device`` look offline since ``since`` (an ISO timestamp), through the API as balena allows:
    ``is_online`` first (which stamps ``last_connectivity_event`` with now), then the stamp itself."""
    http_patch(sim, "device", device, {"is_online": False})
    http_patch(sim, "device", device, {"last_connectivity_event": since})


def write_filter(url: str) -> Node | None:
    """The parsed ``$filter`` of a write in the simulator's request log (whose URLs are decoded; a write
    carries no other query option). None when it has none."""
    query = url.partition("?")[2]
    return parse(query.removeprefix("$filter=")) if query.startswith("$filter=") else None


BAD_GATEWAY = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


class Interloper:
    """Forwards every request to the simulator. Before forwarding the first write of (method, resource)
    in ``before_write``, it runs that callback: a change that lands between bulkops' last look and its
    write. Writes of a pair in ``refuse`` are answered (status, JSON text) without being forwarded. Once
    a write to a resource in ``break_reads`` went out, every GET of that resource answers a 502 page."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.before_write: dict[tuple[str, str], Callable[[], object]] = {}
        self.refuse: dict[tuple[str, str], tuple[int, str]] = {}
        self.break_reads: set[str] = set()
        self.fired: list[str] = []
        self.broken: set[str] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resource = resource_of(request.path)
        if request.method == "GET" and resource in self.broken:
            return web.Response(status=502, body=BAD_GATEWAY, content_type="text/html")
        if request.method in WRITES and resource in self.break_reads:
            self.broken.add(resource)
        refusal = self.refuse.get((request.method, resource))
        if refusal is not None:
            return web.Response(status=refusal[0], body=orjson.dumps(refusal[1]),
                                content_type="application/json")
        hook = self.before_write.pop((request.method, resource), None)
        if hook is not None and request.method in WRITES:
            hook()
            self.fired.append(f"{request.method} {request.path_qs}")
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")}
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.upstream + request.raw_path, data=body or None, headers=headers,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            return web.Response(status=resp.status, body=data, content_type="application/json")


@pytest.fixture
def interloped() -> Iterator[tuple[SimServer, Interloper, str]]:
    """A simulator (600 demo devices), the interloping proxy in front of it, and the proxy's URL."""
    sim = start_sim(seed_demo=600)
    proxy = Interloper(sim.url)
    server = ThreadServer(proxy.handle).start()
    try:
        yield sim, proxy, server.url
    finally:
        server.stop()
        sim.stop()

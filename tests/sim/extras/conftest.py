"""Shared helpers for the simulator-extras tests: a fake clock and a tiny aiohttp app on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TinyApi:
    """Stands in for the API: GET answers, POST/PATCH 'commit' by counting, /boom raises."""

    def __init__(self) -> None:
        self.committed = 0

    def app(self, middlewares: Sequence[Middleware]) -> web.Application:
        app = web.Application(middlewares=list(middlewares))
        app.router.add_get("/v7/thing", self._get)
        app.router.add_post("/v7/thing", self._write)
        app.router.add_patch("/v7/thing", self._write)
        app.router.add_get("/v7/boom", self._boom)
        return app

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"d": []})

    async def _write(self, request: web.Request) -> web.Response:
        await request.read()
        self.committed += 1
        return web.json_response({"id": self.committed}, status=201)

    async def _boom(self, request: web.Request) -> web.Response:
        raise RuntimeError("handler failed")


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()

"""The ``/_sim/`` admin endpoints that read and replace a SPEC at run time (rate limit, faults)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

BAD_BODY = 'body must be JSON: {"spec": "..."}'


def add_spec_routes(app: web.Application, path: str, *, stats: Callable[[], dict[str, object]],
                    set_spec: Callable[[str], object]) -> None:
    """``GET path`` answers ``stats()``; ``PUT path`` with ``{"spec": "..."}`` calls ``set_spec`` (a
    ValueError becomes a 400 naming the problem) and answers the new ``stats()``."""

    def answer() -> web.Response:
        return web.Response(body=orjson.dumps(stats()), content_type="application/json")

    async def get(request: web.Request) -> web.Response:
        return answer()

    async def put(request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            body = None
        spec = body.get("spec") if isinstance(body, dict) else None
        if not isinstance(spec, str):
            return web.json_response({"error": BAD_BODY}, status=400)
        try:
            set_spec(spec)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return answer()

    app.router.add_get(path, get)
    app.router.add_put(path, put)

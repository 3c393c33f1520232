"""The simulated balena API as an aiohttp application: ``/v7`` and ``/v6`` over the SQLite database.

Every request is handled synchronously against SQLite (one short transaction for writes), so the
event loop does the HTTP work and SQLite does the rest. Answers follow balena's conventions:
``{"d": [...]}`` for reads, ``201`` with a ``location`` header for POST, ``200`` with an empty body for
PATCH/PUT/DELETE (``"OK"`` through ``/v6``), error bodies empty or a JSON string.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bulkops import v7
from bulkops.log import get_logger
from bulkops.odata.ast import Literal
from bulkops.odata.query import KeyAlias, KeyFields, KeyValue, QueryOptions
from bulkops.sim.auth import READ_ONLY_RESOURCES, AuthFailed, Caller, authenticate, token_of
from bulkops.sim.db import Database
from bulkops.sim.handlers import VERSIONS, Malformed, Query, Target, parse_query, parse_target
from bulkops.sim.read import V6_RENAMES, Reader, get_body, key_condition
from bulkops.sim.rules import ApiError
from bulkops.sim.sql import CompileError, Compiler, Expr
from bulkops.sim.write import Writer

log = get_logger("bulkops.sim.app")

MAX_BODY: Final = 512 * 1024  # balena's JSON body limit ("512kb")
MAX_REQUEST_HEAD: Final = 16 * 1024  # request line + headers
PARSER_LIMIT: Final = 64 * 1024  # aiohttp's own line limits sit above ours so that we can answer 431
DB_KEY: Final = web.AppKey("bulkops.sim.db", Database)
JSON_TYPE: Final = "application/json"
HTML_PAGE: Final = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>{}</pre>\n</body>\n</html>\n"
)
_STATUS_TEXT: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


def json_response(payload: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=payload, status=status, content_type=JSON_TYPE, charset="utf-8", headers=headers)


def empty_response(status: int, version: str = "v7") -> web.Response:
    """An answer without content: empty in v7; the status text in v6."""
    if version == "v6":
        return web.Response(text=_STATUS_TEXT.get(status, ""), status=status)
    return web.Response(status=status)


def html_error(status: int) -> web.Response:
    page = HTML_PAGE.format(_STATUS_TEXT.get(status, "Error"))
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def head_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``431`` when the request line and headers exceed 16 KB (aiohttp would answer 400)."""
    size = len(request.method) + len(request.raw_path) + 11
    size += sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
    if size > MAX_REQUEST_HEAD:
        response = web.Response(status=431)
        response.force_close()
        return response
    return await handler(request)


def make_app(
    db: Database, *, middlewares: Sequence[Middleware] = (), request_log: Any = None
) -> web.Application:
    """The API app on ``db``: routes ``/v6/…`` and ``/v7/…``; everything else is 404."""
    chain: list[Middleware] = []
    if request_log is not None:
        chain.append(request_log.make_middleware())
    chain.extend(middlewares)
    chain.append(head_limit)
    app = web.Application(
        middlewares=chain,
        client_max_size=MAX_BODY,
        handler_args={"max_line_size": PARSER_LIMIT, "max_field_size": PARSER_LIMIT},
    )
    app[DB_KEY] = db
    api = Api(db)
    for version in VERSIONS:
        app.router.add_route("*", f"/{version}/{{rest:.*}}", api.handle)
    return app


class Api:
    """The request handler: decode, authenticate, dispatch, answer."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        version = raw[1:3]
        try:
            _refuse_head(request.method)
            path, _, query_text = raw.partition("?")
            target = parse_target(version, path[len(version) + 2 :])
            query = parse_query(query_text)
            caller = authenticate(self.db, token_of(request.headers.get("Authorization"), query.apikey))
            body = await self._body(request) if request.method in ("POST", "PATCH", "PUT", "MERGE") else None
            return self.dispatch(request.method, target, query, caller, body)
        except Malformed:
            return json_response(orjson.dumps(f"Malformed url: '{raw}'"), 400)
        except AuthFailed:
            return empty_response(401, version)
        except CompileError:
            return empty_response(500, version)
        except ApiError as exc:
            if exc.message is None:
                return html_error(exc.status) if exc.status in (413,) else empty_response(exc.status, version)
            return json_response(orjson.dumps(exc.message), exc.status)
        except _BadJson:
            return html_error(400)
        except (sqlite3.Error, RecursionError) as exc:  # a query SQLite refuses: balena's 500
            log.warning("bulkops.sim.app.query_failed", method=request.method, error=type(exc).__name__)
            return empty_response(500, version)

    async def _body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413) from None
        if "json" not in request.content_type or not data.strip():
            return {}
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _BadJson from None

    def dispatch(self, method: str, target: Target, query: Query, caller: Caller, body: Any) -> web.Response:
        res = target.resource
        version = target.version
        if caller.anonymous and (method != "GET" or res.name not in ("application", *_PUBLIC)):
            raise AuthFailed
        compiler = Compiler(caller, self.db.now())
        key = self._key(compiler, target, query)
        opts = query.options
        if method == "GET":
            reader = Reader(self.db.conn, compiler, version)
            if target.count:
                return json_response(get_body(reader.count(res, key, opts)))
            return json_response(get_body(reader.rows(res, key, opts)))
        if method not in _WRITES:
            raise ApiError(500)
        if res.name in READ_ONLY_RESOURCES or (res.name == "api_key" and method in ("POST", "PUT")):
            raise AuthFailed
        if target.count:
            raise Malformed()
        writer = Writer(self.db, caller, compiler)
        if version == "v6" and isinstance(body, dict):
            body = v6_body(res.name, body)
        if method == "POST":
            if key is not None:
                raise Malformed()
            if not isinstance(body, dict):
                raise ApiError(400)
            with self.db.transaction():
                new_id = writer.create(res, body)
                rows = Reader(self.db.conn, Compiler(None, self.db.now()), version).rows(
                    res, Expr('t0."id" = ?', [new_id], "bool"), QueryOptions()
                )
            location = f"/{version}/{res.name}(@id)?@id={new_id}"
            return json_response(orjson.dumps(rows[0]), 201, {"location": location})
        if not isinstance(body, dict) and method != "DELETE":
            raise ApiError(400)
        with self.db.transaction():
            if method in ("PATCH", "MERGE"):
                writer.update(res, key, opts, body)
            elif method == "PUT":
                if key is None or target.key is None:
                    raise Malformed()
                writer.replace(res, key, self._key_values(target, query), body)
            else:
                writer.delete(res, key, opts)
        return empty_response(200, version)

    def _key(self, compiler: Compiler, target: Target, query: Query) -> Expr | None:
        if target.key is None:
            return None
        return key_condition(compiler, target.resource, target.key, query.aliases)

    @staticmethod
    def _key_values(target: Target, query: Query) -> dict[str, Any]:
        key = target.key
        if isinstance(key, KeyFields):
            return {name: _plain(lit) for name, lit in key.fields}
        if isinstance(key, KeyAlias):
            alias = query.aliases.get(key.name)
            return {} if alias is None else {"id": _plain(alias)}
        if isinstance(key, KeyValue):
            return {"id": _plain(key.value)}
        return {}


def v6_body(resource: str, body: dict[str, Any]) -> dict[str, Any]:
    """A /v6 write body in v7 terms: the v6 device pin field renamed, v6-only fields dropped (a
    non-null ``is_managed_by__device`` is refused with 400, as balena does)."""
    v6_only = v7.V6_ONLY_FIELDS.get(resource, ())
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in v6_only:
            if name == "is_managed_by__device" and value is not None:
                raise ApiError(400)
            continue
        out[V6_RENAMES.get((resource, name), name)] = value
    return out


def _refuse_head(method: str) -> None:
    """balena answers HEAD with 500."""
    if method == "HEAD":
        raise ApiError(500)


_WRITES: Final = frozenset({"POST", "PATCH", "MERGE", "PUT", "DELETE"})
_PUBLIC: Final = ("device_type", "cpu_architecture", "application_type")


def _plain(lit: Literal) -> Any:
    return lit.value


class _BadJson(Exception):
    """The body is not JSON: answered with Express's HTML error page."""

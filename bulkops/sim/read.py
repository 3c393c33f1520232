"""GET: compile a request's options to one SQL query, run it, shape rows like balena, expand links.

Rows come back as ``{"d": [...]}`` with FKs as ``{"__id": n}`` (or null), booleans as booleans, JSON
fields parsed, datetimes as stored (ISO, milliseconds, ``Z``). An ``$expand`` runs one extra query per
expanded navigation for all parents at once, and its rows are always an array (``nav/$count``: an
integer). Through ``/v6`` the v7-only device fields are left out, the v6-only ones read null, ``actor``
is a bare number and ``device.should_be_running__release`` is the pin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from bulkops import v7
from bulkops.odata.ast import Literal, LiteralKind
from bulkops.odata.query import ExpandItem, Key, KeyAlias, KeyFields, KeyValue, QueryOptions
from bulkops.sim.sql import CompileError, Compiler, Expr, Scope, target_resource
from bulkops.v7 import FieldDef, FieldType, ResourceDef

ROOT = "t0"
Converter = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Output:
    """One output field: its name in the answer, the model field read, and the value converter."""

    name: str
    field: FieldDef | None  # None: a v6-only field that always reads null
    convert: Converter


def _fk(v: Any) -> Any:
    return None if v is None else {"__id": v}


def _bool(v: Any) -> Any:
    return None if v is None else bool(v)


def _json(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, str | bytes) else v


def _big(v: Any) -> Any:
    return None if v is None else str(v)


def converter(fd: FieldDef, version: str) -> Converter:
    if fd.type is FieldType.FK:
        return None if version == "v6" and fd.name == "actor" else _fk
    if fd.type is FieldType.BOOLEAN:
        return _bool
    if fd.type is FieldType.JSON:
        return _json
    if fd.type is FieldType.BIG_INTEGER and version != "v6":
        return _big
    return None


V6_RENAMES: dict[tuple[str, str], str] = {("device", "should_be_running__release"): "is_pinned_on__release"}


@lru_cache(maxsize=4096)
def outputs(resource: str, names: tuple[str, ...], version: str) -> tuple[Output, ...]:
    """The answer's fields for ``$select`` ``names`` (empty: all) per API version; CompileError if unknown."""
    res = v7.RESOURCES[resource]
    v6 = version == "v6"
    v6_only = v7.V6_ONLY_FIELDS.get(resource, ()) if v6 else ()
    if not names:
        names = tuple(f.name for f in res.fields.values() if not (v6 and f.v7_only)) + v6_only
    out: list[Output] = []
    for name in names:
        if name in v6_only:
            out.append(Output(name, None, None))
            continue
        column = V6_RENAMES.get((resource, name), name) if v6 else name
        fd = res.fields.get(column)
        if fd is None or (v6 and fd.v7_only and column == name):
            raise CompileError(f"unknown field {name!r} of {resource}")
        out.append(Output(name, fd, converter(fd, version)))
    return tuple(out)


def shape(outs: Sequence[Output], row: Sequence[Any], offset: int) -> dict[str, Any]:
    """A result row (from column ``offset`` on) as balena's JSON object."""
    item: dict[str, Any] = {}
    i = offset
    for o in outs:
        if o.field is None:
            item[o.name] = None
            continue
        v = row[i]
        i += 1
        item[o.name] = v if o.convert is None else o.convert(v)
    return item


def select_list(
    c: Compiler, res: ResourceDef, outs: Sequence[Output], alias: str
) -> tuple[list[str], list[Any]]:
    cols: list[str] = []
    params: list[Any] = []
    for o in outs:
        if o.field is None:
            continue
        e = c.column(res, o.field.name, alias)
        cols.append(e.sql)
        params.extend(e.params)
    return cols, params


# --- keys -----------------------------------------------------------------------------------------


def key_condition(
    c: Compiler, res: ResourceDef, key: Key, aliases: dict[str, Literal], alias: str = ROOT
) -> Expr:
    """The WHERE condition for ``resource(key)``; CompileError for a key that is not unique."""
    if isinstance(key, KeyAlias):
        found = aliases.get(key.name)
        if found is None:
            raise CompileError(f"parameter alias @{key.name} not given")
        key = KeyValue(found)
    if isinstance(key, KeyValue):
        fields: tuple[tuple[str, Literal], ...] = (("id", key.value),)
    else:
        assert isinstance(key, KeyFields)
        fields = key.fields
    names = {n for n, _ in fields}
    if names != {"id"} and not any(set(k) == names for k in res.unique_keys):
        raise CompileError(f"{sorted(names)} is not a key of {res.name}")
    parts: list[str] = []
    params: list[Any] = []
    for name, value in fields:
        col = c.column(res, name, alias)
        if value.kind is LiteralKind.NULL:
            raise CompileError("a null key")
        lit = c.literal(value, col.kind)
        parts.append(f"{col.sql} = {lit.sql}")
        params.extend(lit.params)
    return Expr(" AND ".join(parts), params, "bool")


def where_clause(
    c: Compiler, res: ResourceDef, key: Expr | None, opts: QueryOptions, alias: str = ROOT
) -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    vis = c.visible(res.name, alias)
    if vis is not None:
        conds.append(vis[0])
        params.extend(vis[1])
    if key is not None:
        conds.append(key.sql)
        params.extend(key.params)
    if opts.filter is not None:
        f = c.condition(opts.filter, Scope((res, alias)))
        conds.append(f.sql)
        params.extend(f.params)
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def order_clause(
    c: Compiler, res: ResourceDef, opts: QueryOptions, alias: str = ROOT
) -> tuple[str, list[Any]]:
    if not opts.orderby:
        return "", []
    terms: list[str] = []
    params: list[Any] = []
    for item in opts.orderby:
        sql, p = c.order_term(item.path, item.descending, Scope((res, alias)))
        terms.append(sql)
        params.extend(p)
    return " ORDER BY " + ", ".join(terms), params


def limit_clause(top: int | None, skip: int | None) -> tuple[str, list[Any]]:
    if top is None and not skip:
        return "", []
    return " LIMIT ? OFFSET ?", [-1 if top is None else top, skip or 0]


def select_names(opts: QueryOptions) -> tuple[str, ...]:
    names: list[str] = []
    for p in opts.select:
        if len(p.segments) != 1:
            raise CompileError("a $select path must be a field")
        names.append(p.segments[0])
    return tuple(names)


# --- the query --------------------------------------------------------------------------------------


class Reader:
    """Runs one GET for a caller (``visibility``) against ``conn``."""

    def __init__(self, conn: Any, compiler: Compiler, version: str) -> None:
        self.conn = conn
        self.c = compiler
        self.version = version

    def count(self, res: ResourceDef, key: Expr | None, opts: QueryOptions) -> int:
        where, params = where_clause(self.c, res, key, opts)
        row = self.conn.execute(f'SELECT COUNT(*) FROM "{res.name}" {ROOT}{where}', params).fetchone()
        return int(row[0])

    def rows(self, res: ResourceDef, key: Expr | None, opts: QueryOptions) -> list[dict[str, Any]]:
        outs = outputs(res.name, select_names(opts), self.version)
        cols, params = select_list(self.c, res, outs, ROOT)
        where, wparams = where_clause(self.c, res, key, opts)
        order, oparams = order_clause(self.c, res, opts)
        limit, lparams = limit_clause(opts.top, opts.skip)
        sql = f'SELECT {ROOT}."id", {", ".join(cols) or "1"} FROM "{res.name}" {ROOT}{where}{order}{limit}'
        found = self.conn.execute(sql, [*params, *wparams, *oparams, *lparams]).fetchall()
        items = [shape(outs, r, 1) for r in found]
        if opts.expand:
            self.expand(res, [r[0] for r in found], items, opts.expand)
        return items

    def expand(
        self, res: ResourceDef, ids: list[int], items: list[dict[str, Any]], expand: Sequence[ExpandItem]
    ) -> None:
        if not ids:
            for item in items:
                for e in expand:
                    item[e.nav.segments[-1]] = 0 if e.count else []
            return
        for e in expand:
            if len(e.nav.segments) != 1:
                raise CompileError("an $expand path must be one navigation")
            name = e.nav.segments[0]
            nav = res.navigations.get(name)
            if nav is None:
                raise CompileError(f"unknown navigation {name!r} of {res.name}")
            if e.count:
                counts = self._expand_count(res, ids, nav, e.options)
                for pid, item in zip(ids, items, strict=True):
                    item[name] = counts.get(pid, 0)
                continue
            children = self._expand_rows(res, ids, nav, e.options)
            for pid, item in zip(ids, items, strict=True):
                item[name] = children.get(pid, [])

    def _join(self, res: ResourceDef, ids: list[int], nav: v7.Navigation, opts: QueryOptions) -> _Join:
        """``FROM parent p JOIN target t ON link WHERE p.id IN (ids) AND visible(t) AND filter``."""
        target = target_resource(nav)
        p = self.c.alias()
        t = self.c.alias()
        link = self.c.link(res, p, nav, t)
        where, wparams = where_clause(self.c, target, None, opts, t)
        where = where.replace(" WHERE ", " AND ", 1) if where else ""
        sql = (
            f'FROM "{res.name}" {p} JOIN "{target.name}" {t} ON {link.sql} '
            f'WHERE {p}."id" IN (SELECT value FROM json_each(?)){where}'
        )
        return _Join(sql, [*link.params, orjson.dumps(ids).decode(), *wparams], target, p, t)

    def _expand_count(
        self, res: ResourceDef, ids: list[int], nav: v7.Navigation, opts: QueryOptions
    ) -> dict[int, int]:
        j = self._join(res, ids, nav, opts)
        sql = f'SELECT {j.parent}."id", COUNT(*) {j.sql} GROUP BY {j.parent}."id"'
        return {int(r[0]): int(r[1]) for r in self.conn.execute(sql, j.params)}

    def _expand_rows(
        self, res: ResourceDef, ids: list[int], nav: v7.Navigation, opts: QueryOptions
    ) -> dict[int, list[dict[str, Any]]]:
        j = self._join(res, ids, nav, opts)
        target, p, t, params = j.target, j.parent, j.child, j.params
        body = j.sql
        outs = outputs(target.name, select_names(opts), self.version)
        cols, cparams = select_list(self.c, target, outs, t)
        order, oparams = order_clause(self.c, target, opts, t)
        sql = f'SELECT {p}."id", {t}."id", {", ".join(cols) or "1"} {body}{order}'
        found = self.conn.execute(sql, [*cparams, *params, *oparams]).fetchall()
        grouped: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for r in found:
            grouped.setdefault(int(r[0]), []).append((int(r[1]), shape(outs, r, 2)))
        out: dict[int, list[dict[str, Any]]] = {}
        skip, top = opts.skip or 0, opts.top
        child_ids: list[int] = []
        child_items: list[dict[str, Any]] = []
        for pid, pairs in grouped.items():
            chosen = pairs[skip:] if top is None else pairs[skip : skip + top]
            out[pid] = [item for _, item in chosen]
            child_ids.extend(cid for cid, _ in chosen)
            child_items.extend(item for _, item in chosen)
        if opts.expand and child_ids:
            self.expand(target, child_ids, child_items, opts.expand)
        return out


@dataclass(frozen=True, slots=True)
class _Join:
    sql: str
    params: list[Any]
    target: ResourceDef
    parent: str
    child: str


def get_body(rows: list[dict[str, Any]] | int) -> bytes:
    return orjson.dumps({"d": rows})

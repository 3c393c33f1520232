"""Compile OData trees (``bulkops.odata.ast``) to parameterised SQLite for one resource.

Values are always bound parameters; identifiers come only from ``bulkops.schema``. Balena semantics:
``eq`` is ``IS`` and ``ne`` is ``IS NOT`` (so ``ne`` matches nulls), ``in`` is SQL ``IN``, lambdas are
``EXISTS`` / ``NOT EXISTS``, navigation paths are correlated subqueries, datetimes compare as their
normalized ISO text. A name that is not in the model, or a literal that cannot be compared with its
field (``id eq 'abc'``), raises ``CompileError`` — answered with 500 and an empty body, like balena.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bulkops import v7
from bulkops.odata.ast import BinOp, Call, Count, In, Lambda, Literal, LiteralKind, Node, Not, Op, Path
from bulkops.sim.db import iso, normalize_datetime
from bulkops.sim.sqlfns import (
    BOOL,
    COMPUTED,
    DATE,
    DATETIME,
    DURATION,
    FUNCTIONS,
    INT,
    JSON,
    NULL,
    NUM,
    SQLITE_ISO,
    TEXT,
    CompileError,
    Expr,
    field_kind,
)
from bulkops.sim.sqlscope import (
    _ARITH,
    _COMPARE,
    _INT_TEXT,
    Scope,
    Visibility,
    _num_param,
    duration_seconds,
    target_resource,
)
from bulkops.v7 import Navigation, ResourceDef

__all__ = [
    "COMPUTED",
    "CompileError",
    "Compiler",
    "Expr",
    "Scope",
    "Visibility",
    "field_kind",
    "target_resource",
]

class Compiler:
    """One compilation: allocates table aliases and carries the caller's visibility and the clock."""

    def __init__(self, visibility: Visibility | None, now: datetime) -> None:
        self.visibility = visibility
        self.now = now
        self._n = 0

    def alias(self) -> str:
        self._n += 1
        return f"t{self._n}"

    def visible(self, resource: str, alias: str) -> tuple[str, list[Any]] | None:
        return None if self.visibility is None else self.visibility.condition(resource, alias)

    # --- columns and links ----------------------------------------------------------------------

    def column(self, res: ResourceDef, name: str, alias: str) -> Expr:
        fd = res.fields.get(name)
        if fd is None:
            raise CompileError(f"unknown field {name!r} of {res.name}")
        if fd.computed:
            build = COMPUTED.get((res.name, name))
            if build is None:
                raise CompileError(f"no expression for computed field {res.name}.{name}")
            return Expr(build(self, alias), [], field_kind(fd), True)
        return Expr(f'{alias}."{name}"', [], field_kind(fd), fd.nullable)

    def link(self, res: ResourceDef, alias: str, nav: Navigation, target_alias: str) -> Expr:
        """The condition joining ``target_alias`` (rows of ``nav.target``) to the row ``alias``."""
        if nav.name == v7.DIRECT_ACCESS_NAV:
            m = self.alias()
            return Expr(
                f'{target_alias}."id" IN (SELECT {m}."user" FROM "organization_membership" {m} '
                f'WHERE {m}."is_member_of__organization" = {alias}."organization")',
                [],
                BOOL,
            )
        target = target_resource(nav)
        if not nav.many:
            fk = self.column(res, nav.via, alias)
            return Expr(f'{target_alias}."id" = {fk.sql}', fk.params, BOOL)
        back = self.column(target, nav.via, target_alias)
        return Expr(f'{back.sql} = {alias}."id"', back.params, BOOL)

    def from_nav(
        self,
        res: ResourceDef,
        alias: str,
        nav: Navigation,
        extra: Expr | None = None,
        *,
        negate: bool = False,
    ) -> tuple[str, str, list[Any], ResourceDef]:
        """``FROM target tN WHERE link AND visible [AND extra]`` for a subquery over a navigation."""
        target = target_resource(nav)
        t = self.alias()
        link = self.link(res, alias, nav, t)
        where, params = [link.sql], list(link.params)
        vis = self.visible(target.name, t)
        if vis is not None:
            where.append(vis[0])
            params.extend(vis[1])
        if extra is not None:
            where.append(f"NOT ({extra.sql})" if negate else f"({extra.sql})")
            params.extend(extra.params)
        return f'FROM "{target.name}" {t} WHERE ' + " AND ".join(where), t, params, target

    # --- paths ------------------------------------------------------------------------------------

    def resolve(self, segments: tuple[str, ...], scope: Scope) -> tuple[ResourceDef, str, tuple[str, ...]]:
        if segments and segments[0] in scope.variables:
            res, alias = scope.variables[segments[0]]
            return res, alias, segments[1:]
        res, alias = scope.default
        return res, alias, segments

    def path(self, p: Path, scope: Scope) -> Expr:
        res, alias, rest = self.resolve(p.segments, scope)
        if not rest:
            raise CompileError(f"a lambda variable is not a value: {'/'.join(p.segments)}")
        return self._walk(res, alias, rest)

    def _walk(self, res: ResourceDef, alias: str, rest: tuple[str, ...]) -> Expr:
        name = rest[0]
        if len(rest) == 1:
            return self.column(res, name, alias)
        nav = res.navigations.get(name)
        if nav is None or nav.many:
            raise CompileError(f"{name!r} is not a single-valued navigation of {res.name}")
        if rest[1:] == ("$count",):
            raise CompileError("$count of a single-valued navigation")
        target = target_resource(nav)
        t = self.alias()
        inner = self._walk(target, t, rest[1:])
        link = self.link(res, alias, nav, t)
        where, params = [link.sql], [*inner.params, *link.params]
        vis = self.visible(target.name, t)
        if vis is not None:
            where.append(vis[0])
            params.extend(vis[1])
        sql = f'(SELECT {inner.sql} FROM "{target.name}" {t} WHERE {" AND ".join(where)})'
        return Expr(sql, params, inner.kind, True)

    def nav_of(self, p: Path, scope: Scope) -> tuple[ResourceDef, str, Navigation, tuple[str, ...]]:
        """The navigation a lambda or ``$count`` ranges over: (owner, owner alias, nav, remaining prefix)."""
        res, alias, rest = self.resolve(p.segments, scope)
        if not rest:
            raise CompileError("a lambda needs a navigation")
        nav = res.navigations.get(rest[0])
        if nav is None:
            raise CompileError(f"unknown navigation {rest[0]!r} of {res.name}")
        return res, alias, nav, rest[1:]

    # --- expressions ------------------------------------------------------------------------------

    def condition(self, node: Node, scope: Scope) -> Expr:
        """A node used as a boolean condition."""
        e = self.expr(node, scope)
        if e.kind in (INT, NUM, TEXT, DATETIME, DATE, JSON, DURATION) and not isinstance(node, Path | Call):
            raise CompileError("not a condition")
        return e

    def expr(self, node: Node, scope: Scope) -> Expr:
        if isinstance(node, Literal):
            return self.literal(node, None)
        if isinstance(node, Path):
            return self.path(node, scope)
        if isinstance(node, BinOp):
            return self.binop(node, scope)
        if isinstance(node, Not):
            inner = self.condition(node.operand, scope)
            return Expr(f"(NOT {inner.sql})", inner.params, BOOL)
        if isinstance(node, In):
            left = self.expr(node.left, scope)
            vals = [self.literal(v, left.kind) for v in node.values]
            marks = ", ".join(v.sql for v in vals)
            return Expr(
                f"({left.sql} IN ({marks}))", [*left.params, *(p for v in vals for p in v.params)], BOOL
            )
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Lambda):
            return self.lambda_(node, scope)
        if isinstance(node, Count):
            return self.count(node, scope)
        raise CompileError(f"unsupported node {type(node).__name__}")

    def literal(self, lit: Literal, target: str | None) -> Expr:
        """Bind ``lit`` for comparison with a value of kind ``target`` (None: by its own kind)."""
        kind, value = lit.kind, lit.value
        if kind is LiteralKind.NULL:
            return Expr("NULL", [], NULL)
        if kind is LiteralKind.DURATION:
            assert isinstance(value, str)
            return Expr(
                "?",
                [f"{duration_seconds(value):+f} seconds"],
                DURATION,
                False,
                timedelta(seconds=duration_seconds(value)),
            )
        if target in (INT, NUM):
            if kind is LiteralKind.NUMBER:
                return Expr("?", [_num_param(value)], target, False)
            if kind is LiteralKind.STRING and isinstance(value, str) and _INT_TEXT.match(value.strip()):
                return Expr("?", [int(value)], INT, False)
            if kind is LiteralKind.BOOL:
                return Expr("?", [1 if value else 0], INT, False)
            raise CompileError(f"cannot compare a number with {value!r}")
        if target == BOOL:
            if kind is LiteralKind.BOOL or (kind is LiteralKind.NUMBER and value in (0, 1)):
                return Expr("?", [1 if value else 0], BOOL, False)
            if kind is LiteralKind.STRING and value in ("true", "false"):
                return Expr("?", [1 if value == "true" else 0], BOOL, False)
            raise CompileError(f"cannot compare a boolean with {value!r}")
        if target == DATETIME:
            return self._datetime_literal(lit)
        if target == DATE:
            if kind is LiteralKind.DATE:
                return Expr("?", [value], DATE, False)
            return Expr("?", [self._datetime_literal(lit).params[0][:10]], DATE, False)
        if target in (TEXT, JSON):
            if kind is LiteralKind.BOOL:
                return Expr("?", ["true" if value else "false"], TEXT, False)
            if isinstance(value, datetime):
                return Expr("?", [iso(value)], TEXT, False)
            return Expr("?", [str(value)], TEXT, False)
        # no target: the literal's own kind
        if kind is LiteralKind.BOOL:
            return Expr("?", [1 if value else 0], BOOL, False)
        if kind is LiteralKind.NUMBER:
            return Expr("?", [_num_param(value)], INT if isinstance(value, int) else NUM, False)
        if kind is LiteralKind.DATETIME:
            assert isinstance(value, datetime)
            return Expr("?", [iso(value)], DATETIME, False, value)
        if kind is LiteralKind.DATE:
            return Expr("?", [value], DATE, False)
        return Expr("?", [value], TEXT, False)

    def _datetime_literal(self, lit: Literal) -> Expr:
        value = lit.value
        try:
            if lit.kind is LiteralKind.DATE:
                text = f"{value}T00:00:00.000Z"
            elif lit.kind in (LiteralKind.DATETIME, LiteralKind.STRING):
                text = normalize_datetime(value)
            else:
                raise CompileError(f"cannot compare a date with {value!r}")
        except ValueError as exc:
            raise CompileError(f"not a datetime: {value!r}") from exc
        return Expr("?", [text], DATETIME, False)

    def binop(self, node: BinOp, scope: Scope) -> Expr:
        op = node.op
        if op in (Op.AND, Op.OR):
            # a chain of one operator (and_()/or_() build them left-deep) becomes one flat SQL chain:
            # SQLite's parser overflows on ~100 nested parentheses, balena takes 150 OR'd terms
            terms: list[Node] = [node.right]
            first: Node = node.left
            while isinstance(first, BinOp) and first.op is op:
                terms.append(first.right)
                first = first.left
            parts = [self.condition(t, scope) for t in (first, *reversed(terms))]
            sql = f" {op.value.upper()} ".join(p.sql for p in parts)
            return Expr(f"({sql})", [x for p in parts for x in p.params], BOOL)
        left, right = self._operands(node.left, node.right, scope)
        if op in _COMPARE:
            if DURATION in (left.kind, right.kind):
                raise CompileError("a duration is not comparable")
            return Expr(f"({left.sql} {_COMPARE[op]} {right.sql})", [*left.params, *right.params], BOOL)
        if DATETIME in (left.kind, right.kind):
            return self._date_arith(op, left, right)
        if DURATION in (left.kind, right.kind):
            raise CompileError("duration arithmetic needs a datetime")
        kind = NUM if NUM in (left.kind, right.kind) or op is Op.DIV else INT
        if op is Op.DIV:
            return Expr(f"(CAST({left.sql} AS REAL) / {right.sql})", [*left.params, *right.params], NUM)
        return Expr(f"({left.sql} {_ARITH[op]} {right.sql})", [*left.params, *right.params], kind)

    def _operands(self, a: Node, b: Node, scope: Scope) -> tuple[Expr, Expr]:
        if isinstance(a, Literal) and not isinstance(b, Literal):
            right = self.expr(b, scope)
            return self.literal(a, right.kind), right
        left = self.expr(a, scope)
        if isinstance(b, Literal):
            return left, self.literal(b, left.kind)
        return left, self.expr(b, scope)

    def _date_arith(self, op: Op, left: Expr, right: Expr) -> Expr:
        if op not in (Op.ADD, Op.SUB) or right.kind != DURATION:
            raise CompileError("only datetime add/sub duration is supported")
        delta: timedelta = right.const
        if isinstance(left.const, datetime):
            value = left.const + delta if op is Op.ADD else left.const - delta
            return Expr("?", [iso(value)], DATETIME, False, value)
        seconds = delta.total_seconds() * (1 if op is Op.ADD else -1)
        return Expr(
            f"strftime('{SQLITE_ISO}', {left.sql}, ?)", [*left.params, f"{seconds:+f} seconds"], DATETIME
        )

    def call(self, node: Call, scope: Scope) -> Expr:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise CompileError(f"unsupported function {node.name}")
        arity, build = spec
        if len(node.args) not in arity:
            raise CompileError(f"{node.name} takes {arity} arguments")
        args = [self.expr(a, scope) for a in node.args]
        return build(self, args)

    def lambda_(self, node: Lambda, scope: Scope) -> Expr:
        res, alias, nav, rest = self.nav_of(node.nav, scope)
        if rest:  # a/b/any(x: …) = a/any(_: _/b/any(x: …)) through single-valued links
            if nav.many:
                raise CompileError("a lambda path may only pass through single-valued navigations")
            hop = f"__hop{self._n + 1}"
            inner = Lambda(Path((hop, *rest)), node.kind, node.var, node.body)
            return self.lambda_(Lambda(Path((nav.name,)), "any", hop, inner), scope)
        target = target_resource(nav)
        t = self.alias()
        link = self.link(res, alias, nav, t)
        body = self.condition(node.body, Scope(scope.default, {**scope.variables, node.var: (target, t)}))
        where, params = [link.sql], list(link.params)
        vis = self.visible(target.name, t)
        if vis is not None:
            where.append(vis[0])
            params.extend(vis[1])
        if node.kind == "any":
            where.append(f"({body.sql})")
            params.extend(body.params)
            return Expr(
                f'EXISTS (SELECT 1 FROM "{target.name}" {t} WHERE {" AND ".join(where)})', params, BOOL, False
            )
        if node.kind != "all":
            raise CompileError(f"unknown lambda {node.kind}")
        where.append(f"NOT ({body.sql})")
        params.extend(body.params)
        return Expr(
            f'NOT EXISTS (SELECT 1 FROM "{target.name}" {t} WHERE {" AND ".join(where)})', params, BOOL, False
        )

    def count(self, node: Count, scope: Scope) -> Expr:
        res, alias, nav, rest = self.nav_of(node.nav, scope)
        if rest:
            raise CompileError("$count of a nested path")
        target = target_resource(nav)
        t = self.alias()
        link = self.link(res, alias, nav, t)
        where, params = [link.sql], list(link.params)
        vis = self.visible(target.name, t)
        if vis is not None:
            where.append(vis[0])
            params.extend(vis[1])
        if node.filter is not None:
            f = self.condition(node.filter, Scope((target, t), dict(scope.variables)))
            where.append(f"({f.sql})")
            params.extend(f.params)
        return Expr(
            f'(SELECT COUNT(*) FROM "{target.name}" {t} WHERE {" AND ".join(where)})', params, INT, False
        )

    def order_term(self, p: Path, descending: bool, scope: Scope) -> tuple[str, list[Any]]:
        """One ``ORDER BY`` term with PostgreSQL's null placement (last ascending, first descending)."""
        if p.segments and p.segments[-1] == "$count":
            e = self.count(Count(Path(p.segments[:-1])), scope)
        else:
            e = self.path(p, scope)
        direction = "DESC" if descending else "ASC"
        nulls = (" NULLS FIRST" if descending else " NULLS LAST") if e.nullable else ""
        return f"{e.sql} {direction}{nulls}", e.params

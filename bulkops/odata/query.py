"""The query options besides ``$filter``, and resource keys, as balena's grammar reads them.

Each ``parse_*`` takes the DECODED text of one option (or of a key, inside ``resource(…)``) and raises
``FilterSyntaxError`` with the 0-based position when it is malformed. Balena quirks kept on purpose:
``$orderby=f`` with no direction sorts DESCENDING; ``$select=*`` means all fields (an empty tuple);
``$expand=nav($count)`` is malformed (``$count`` needs ``=true``/``=false``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bulkops.errors import FilterSyntaxError
from bulkops.odata.ast import Literal, LiteralKind, Node, Path
from bulkops.odata.lexer import Tok, Token, describe
from bulkops.odata.parser import Parser

T = TypeVar("T")
_UNSIGNED = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One ``$orderby`` key."""

    path: Path
    descending: bool


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """Options of a request or of an ``$expand`` item; empty ``select`` means all fields."""

    select: tuple[Path, ...] = ()
    filter: Node | None = None
    expand: tuple[ExpandItem, ...] = ()
    orderby: tuple[OrderItem, ...] = ()
    top: int | None = None
    skip: int | None = None
    count: bool | None = None


@dataclass(frozen=True, slots=True)
class ExpandItem:
    """``nav``, ``nav(options)``, ``nav/$count`` or ``nav/$count(options)``."""

    nav: Path
    count: bool = False
    options: QueryOptions = field(default_factory=QueryOptions)


@dataclass(frozen=True, slots=True)
class KeyValue:
    """``resource(5)`` or ``resource('5')``."""

    value: Literal


@dataclass(frozen=True, slots=True)
class KeyAlias:
    """``resource(@id)``; ``name`` is the alias without the ``@`` (here ``id``)."""

    name: str


@dataclass(frozen=True, slots=True)
class KeyFields:
    """``resource(uuid='…')``, ``resource(device=5,tag_key='x')``: fields in the order written."""

    fields: tuple[tuple[str, Literal], ...]


Key = KeyValue | KeyAlias | KeyFields


# --- public parsers ----------------------------------------------------------------------------


def parse_select(text: str) -> tuple[Path, ...]:
    """``$select``: ``*`` (→ ``()``, all fields) or a comma list of paths."""
    return _whole(text, _select, "',' or the end")


def parse_orderby(text: str) -> tuple[OrderItem, ...]:
    """``$orderby``: comma list of ``path asc``, ``path desc`` or bare ``path`` (= descending)."""
    return _whole(text, _orderby, "'asc', 'desc', ',' or the end")


def parse_expand(text: str) -> tuple[ExpandItem, ...]:
    """``$expand``: comma list of ``nav``, ``nav/$count``, ``nav(options)``, ``nav/$count(options)``."""
    return _whole(text, _expand, "'(', ',' or the end")


def parse_options(text: str) -> QueryOptions:
    """The options inside ``$expand=nav(…)``, separated by ``;`` (or ``&``); may be empty."""
    return _whole(text, _options, "';' or the end")


def parse_top_skip(text: str) -> int:
    """``$top`` / ``$skip``: an unsigned integer."""
    if _UNSIGNED.fullmatch(text) is None:
        raise FilterSyntaxError(f"expected an unsigned integer, found '{text}'", text=text, position=0)
    return int(text)


def parse_key(text: str) -> Key:
    """The key inside ``resource(…)``: ``5``, ``'5'``, ``@id``, ``uuid='…'``, ``device=5,tag_key='x'``."""
    return _whole(text, _key, "the end of the key")


# --- rules over the shared tokenizer -----------------------------------------------------------


def _whole(text: str, rule: Callable[[Parser], T], expected: str) -> T:
    parser = Parser(text)
    result = rule(parser)
    tok = parser.peek()
    if tok.kind is Tok.RPAREN:
        raise parser.error("unbalanced parenthesis", tok.pos)
    if tok.kind is not Tok.EOF:
        raise parser.error(f"expected {expected}, found {describe(tok)}", tok.pos)
    return result


def _select(parser: Parser) -> tuple[Path, ...]:
    if parser.peek().kind is Tok.STAR:
        parser.advance()
        return ()
    paths = [parser.path()]
    while parser.peek().kind is Tok.COMMA:
        parser.advance()
        paths.append(parser.path())
    return tuple(paths)


def _orderby(parser: Parser) -> tuple[OrderItem, ...]:
    items: list[OrderItem] = []
    while True:
        target = parser.path()
        descending = True
        tok = parser.peek()
        if tok.kind is Tok.NAME and tok.text in ("asc", "desc"):
            parser.advance()
            descending = tok.text == "desc"
        items.append(OrderItem(target, descending))
        if parser.peek().kind is not Tok.COMMA:
            return tuple(items)
        parser.advance()


def _expand(parser: Parser) -> tuple[ExpandItem, ...]:
    items: list[ExpandItem] = []
    while True:
        nav = parser.name("a navigation name")
        last: Token | None = parser.prev
        count = False
        if parser.peek().kind is Tok.SLASH:
            parser.advance()
            tok = parser.peek()
            if tok.kind is not Tok.DOLLAR or tok.text != "$count":
                raise parser.error(f"expected '$count' after '{nav}/', found {describe(tok)}", tok.pos)
            last = parser.advance()
            count = True
        options = QueryOptions()
        opening = parser.peek()
        if opening.kind is Tok.LPAREN and last is not None and opening.pos == last.end:
            parser.advance()
            options = _options(parser)
            parser.close(opening, "';' or ')'")
        items.append(ExpandItem(Path((nav,)), count, options))
        if parser.peek().kind is not Tok.COMMA:
            return tuple(items)
        parser.advance()


def _unsigned(parser: Parser, option: str) -> int:
    tok = parser.peek()
    if tok.kind is not Tok.NUMBER or _UNSIGNED.fullmatch(tok.text) is None:
        raise parser.error(f"expected an unsigned integer after '{option}=', found {describe(tok)}", tok.pos)
    parser.advance()
    return int(tok.text)


def _boolean(parser: Parser, option: str) -> bool:
    tok = parser.peek()
    if tok.kind is not Tok.NAME or tok.text not in ("true", "false"):
        raise parser.error(f"expected true or false after '{option}=', found {describe(tok)}", tok.pos)
    parser.advance()
    return tok.text == "true"


_OPTIONS: dict[str, Callable[[Parser], Any]] = {
    "$select": _select,
    "$filter": lambda p: p.expression(),
    "$expand": _expand,
    "$orderby": _orderby,
    "$top": lambda p: _unsigned(p, "$top"),
    "$skip": lambda p: _unsigned(p, "$skip"),
    "$count": lambda p: _boolean(p, "$count"),
}


def _options(parser: Parser) -> QueryOptions:
    values: dict[str, Any] = {}
    if parser.peek().kind in (Tok.EOF, Tok.RPAREN):
        return QueryOptions()
    while True:
        tok = parser.peek()
        if tok.kind is not Tok.DOLLAR:
            raise parser.expected("a query option such as '$select='")
        rule = _OPTIONS.get(tok.text)
        if rule is None:
            raise parser.error(f"unknown query option '{tok.text}'", tok.pos)
        parser.advance()
        if parser.peek().kind is not Tok.EQUALS:
            raise parser.error(f"expected '=' after '{tok.text}'", parser.peek().pos)
        parser.advance()
        values[tok.text[1:]] = rule(parser)  # a repeated option: the last one wins, as in balena
        if parser.peek().kind not in (Tok.SEMI, Tok.AMP):
            return QueryOptions(**values)
        parser.advance()


def _key_value(parser: Parser) -> Literal:
    tok = parser.peek()
    if tok.literal is None or tok.literal.kind not in (LiteralKind.NUMBER, LiteralKind.STRING):
        raise parser.expected("a number or a quoted string")
    parser.advance()
    return tok.literal


def _key(parser: Parser) -> Key:
    tok = parser.peek()
    if tok.kind is Tok.AT:
        parser.advance()
        return KeyAlias(tok.text[1:])
    if tok.kind is not Tok.NAME:
        return KeyValue(_key_value(parser))
    if parser.peek(1).kind is not Tok.EQUALS:
        raise parser.error(f"expected a number, a quoted string, @alias or name=value, found {describe(tok)}",
                           tok.pos)
    fields: list[tuple[str, Literal]] = []
    while True:
        name_tok = parser.peek()
        name = parser.name("a key field name")
        if any(name == seen for seen, _ in fields):
            raise parser.error(f"duplicate key field '{name}'", name_tok.pos)
        if parser.peek().kind is not Tok.EQUALS:
            raise parser.error(f"expected '=' after '{name}'", parser.peek().pos)
        parser.advance()
        fields.append((name, _key_value(parser)))
        if parser.peek().kind is not Tok.COMMA:
            return KeyFields(tuple(fields))
        parser.advance()

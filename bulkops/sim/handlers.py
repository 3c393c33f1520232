"""Reading a request the way balena does: the resource path, the key, the query options.

``/v7/<resource>[(<key>)][/$count]?<options>``: the path is percent-decoded, the query split on ``&``
and each part decoded (``+`` is a space) before the OData grammar sees it. A malformed option, key or
filter → ``400 "Malformed url: '<path+query as received>'"``; an unterminated string literal, a name
the model lacks, a navigation path after the key → 500 with an empty body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote, unquote_plus

from bulkops import v7
from bulkops.errors import FilterSyntaxError
from bulkops.odata.ast import Literal
from bulkops.odata.parser import parse
from bulkops.odata.query import (
    Key,
    QueryOptions,
    parse_expand,
    parse_key,
    parse_orderby,
    parse_select,
    parse_top_skip,
)
from bulkops.sim.rules import ApiError
from bulkops.v7 import ResourceDef

VERSIONS = ("v6", "v7")
_PATH = re.compile(r"^(?P<res>[^()/]+)(?:\((?P<key>.*)\))?(?P<tail>/.*)?$", re.DOTALL)
_IGNORED_OPTIONS = frozenset({"$count", "$inlinecount", "$format"})


class Malformed(ApiError):
    """400 with ``"Malformed url: '<raw path and query>'"``; the text is filled in by the app."""

    def __init__(self) -> None:
        super().__init__(400)


@dataclass(frozen=True, slots=True)
class Target:
    """What the path addresses."""

    version: str
    resource: ResourceDef
    key: Key | None = None
    count: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """The decoded query string: OData options, parameter aliases, and an ``apikey`` if one was sent."""

    options: QueryOptions = field(default_factory=QueryOptions)
    aliases: dict[str, Literal] = field(default_factory=dict)
    apikey: str | None = None


def _syntax(exc: FilterSyntaxError) -> ApiError:
    """Balena answers an unterminated string with 500 (its parser dies differently), else 400."""
    if exc.detail.startswith("unterminated string"):
        return ApiError(500)
    return Malformed()


def parse_target(version: str, rest: str) -> Target:
    """The resource part of ``/<version>/<rest>`` (``rest`` still percent-encoded)."""
    text = unquote(rest)
    if text == "$batch":
        raise Malformed()
    m = _PATH.match(text)
    if m is None:
        raise ApiError(401)
    try:
        res = v7.resource(m.group("res"))
    except KeyError:
        raise ApiError(401) from None
    key: Key | None = None
    if m.group("key") is not None:
        try:
            key = parse_key(m.group("key"))
        except FilterSyntaxError as exc:
            raise _syntax(exc) from None
    tail = m.group("tail")
    count = False
    if tail is not None:
        if tail != "/$count":
            raise ApiError(500)
        if key is not None:
            raise Malformed()
        count = True
    return Target(version, res, key, count)


@lru_cache(maxsize=2048)
def parse_query(raw: str) -> Query:
    """The options of a raw query string; Malformed / ApiError(500) as balena answers them."""
    values: dict[str, object] = {}
    aliases: dict[str, Literal] = {}
    apikey: str | None = None
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        if name.startswith("@"):
            aliases[name[1:]] = _alias_value(value)
            continue
        if not name.startswith("$"):
            if name == "apikey":
                apikey = value
            continue
        if name in _IGNORED_OPTIONS:
            continue
        try:
            values[name[1:]] = _OPTION_PARSERS[name](value)
        except KeyError:
            raise Malformed() from None
        except FilterSyntaxError as exc:
            raise _syntax(exc) from None
    return Query(QueryOptions(**values), aliases, apikey)  # type: ignore[arg-type]


def _alias_value(text: str) -> Literal:
    try:
        node = parse(text)
    except FilterSyntaxError as exc:
        raise _syntax(exc) from None
    if not isinstance(node, Literal):
        raise Malformed()
    return node


_OPTION_PARSERS = {
    "$filter": parse,
    "$select": parse_select,
    "$expand": parse_expand,
    "$orderby": parse_orderby,
    "$top": parse_top_skip,
    "$skip": parse_top_skip,
}

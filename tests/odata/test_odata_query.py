"""bulkops.odata.query: $select, $orderby, $expand, nested options, $top/$skip and resource keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bulkops.errors import FilterSyntaxError
from bulkops.odata import (
    ExpandItem,
    KeyAlias,
    KeyFields,
    KeyValue,
    OrderItem,
    QueryOptions,
    eq,
    lit,
    parse_expand,
    parse_key,
    parse_options,
    parse_orderby,
    parse_select,
    parse_top_skip,
    path,
)


def test_select_star_means_all() -> None:
    """$select=* gives the empty tuple, meaning every field."""
    assert parse_select("*") == ()


def test_select_lists_paths() -> None:
    """$select is a comma list of paths, in order."""
    assert parse_select("id,device_name,belongs_to__application/app_name") == (
        path("id"), path("device_name"), path("belongs_to__application/app_name"),
    )


def test_orderby_without_direction_is_descending() -> None:
    """A bare $orderby path sorts DESCENDING, as balena parses it."""
    assert parse_orderby("id") == (OrderItem(path("id"), descending=True),)


def test_orderby_directions_and_several_keys() -> None:
    """asc/desc are honoured per key; nav/field paths are allowed."""
    assert parse_orderby("id asc,device_name desc,belongs_to__application/app_name") == (
        OrderItem(path("id"), descending=False),
        OrderItem(path("device_name"), descending=True),
        OrderItem(path("belongs_to__application/app_name"), descending=True),
    )


def test_expand_forms() -> None:
    """$expand takes nav, nav/$count, nav(options) and nav/$count(options)."""
    assert parse_expand("belongs_to__application,device_tag/$count,x(),y/$count($filter=a eq 1)") == (
        ExpandItem(path("belongs_to__application")),
        ExpandItem(path("device_tag"), count=True),
        ExpandItem(path("x")),
        ExpandItem(path("y"), count=True, options=QueryOptions(filter=eq("a", 1))),
    )


def test_expand_nested_options() -> None:
    """Options inside $expand parentheses are separated by ';' and may nest another $expand."""
    items = parse_expand(
        "belongs_to__application($select=id,app_name;$filter=app_name eq 'a;b)';$orderby=id asc;"
        "$expand=owns__device/$count($filter=is_online eq true);$top=5;$skip=0;$count=true)"
    )
    assert items == (
        ExpandItem(
            path("belongs_to__application"),
            options=QueryOptions(
                select=(path("id"), path("app_name")),
                filter=eq("app_name", "a;b)"),
                expand=(ExpandItem(path("owns__device"), count=True,
                                   options=QueryOptions(filter=eq("is_online", True))),),
                orderby=(OrderItem(path("id"), descending=False),),
                top=5,
                skip=0,
                count=True,
            ),
        ),
    )


def test_options_empty_and_ampersand() -> None:
    """parse_options accepts empty text and '&' as a separator too."""
    assert parse_options("") == QueryOptions()
    assert parse_options("$top=1&$skip=2") == QueryOptions(top=1, skip=2)


def test_repeated_option_last_wins() -> None:
    """A repeated option keeps the last value, as balena does."""
    assert parse_options("$top=1;$top=3") == QueryOptions(top=3)


def test_top_skip_accept_unsigned_integers() -> None:
    """$top/$skip take unsigned integers, zero included."""
    assert parse_top_skip("0") == 0
    assert parse_top_skip("1000") == 1000


KEYS: list[tuple[str, object]] = [
    ("5", KeyValue(lit(5))),
    ("'5'", KeyValue(lit("5"))),
    ("@id", KeyAlias("id")),
    ("id=5", KeyFields((("id", lit(5)),))),
    ("uuid='a1b2'", KeyFields((("uuid", lit("a1b2")),))),
    ("device=5,tag_key='x'", KeyFields((("device", lit(5)), ("tag_key", lit("x"))))),
    ("tag_key='x',device=5", KeyFields((("tag_key", lit("x")), ("device", lit(5))))),
    ("device=5,name='DEV_VAR_1'", KeyFields((("device", lit(5)), ("name", lit("DEV_VAR_1"))))),
    ("slug='admin/fleet-alpha'", KeyFields((("slug", lit("admin/fleet-alpha")),))),
    ("name='it''s'", KeyFields((("name", lit("it's")),))),
]


@pytest.mark.parametrize(("text", "key"), KEYS, ids=[t for t, _ in KEYS])
def test_keys(text: str, key: object) -> None:
    """Every key form balena accepts parses to its key value."""
    assert parse_key(text) == key


REJECTED: list[tuple[Callable[[str], Any], str, str, int]] = [
    (parse_key, "abc", "expected a number, a quoted string, @alias or name=value, found 'abc'", 0),
    (parse_key, "", "expected a number or a quoted string, found the end of the text", 0),
    (parse_key, "5,6", "expected the end of the key, found ','", 1),
    (parse_key, "device=5,device=6", "duplicate key field 'device'", 9),
    (parse_key, "is_online=true", "expected a number or a quoted string after '='", 10),
    (parse_key, "uuid='abc", "unterminated string literal", 5),
    (parse_key, "device=5,", "expected a key field name after ','", 9),
    (parse_expand, "device($count)", "expected '=' after '$count'", 13),
    (parse_expand, "device($foo=1)", "unknown query option '$foo'", 7),
    (parse_expand, "device($search=x)", "unknown query option '$search'", 7),
    (parse_expand, "device($top=-1)", "expected an unsigned integer after '$top=', found '-1'", 12),
    (parse_expand, "device($skip=abc)", "expected an unsigned integer after '$skip=', found 'abc'", 13),
    (parse_expand, "device($select=id", "unbalanced parenthesis", 6),
    (parse_expand, "device($select=id))", "unbalanced parenthesis", 18),
    (parse_expand, "device($filter=id eq)", "expected a value after 'eq'", 20),
    (parse_expand, "device($filter=id eq 1 x)", "expected ';' or ')', found 'x'", 23),
    (parse_expand, "device(select=id)", "expected a query option such as '$select=' after '('", 7),
    (parse_expand, "device/tag", "expected '$count' after 'device/', found 'tag'", 7),
    (parse_expand, "", "expected a navigation name, found the end of the text", 0),
    (parse_expand, "a,", "expected a navigation name after ','", 2),
    (parse_select, "", "expected a name, found the end of the text", 0),
    (parse_select, "id,", "expected a name after ','", 3),
    (parse_select, "id name", "expected ',' or the end, found 'name'", 3),
    (parse_orderby, "id up", "expected 'asc', 'desc', ',' or the end, found 'up'", 3),
    (parse_orderby, "id ASC", "expected 'asc', 'desc', ',' or the end, found 'ASC'", 3),
    (parse_top_skip, "-1", "expected an unsigned integer, found '-1'", 0),
    (parse_top_skip, "abc", "expected an unsigned integer, found 'abc'", 0),
    (parse_top_skip, "1.5", "expected an unsigned integer, found '1.5'", 0),
    (parse_top_skip, "", "expected an unsigned integer, found ''", 0),
    (parse_options, "$top=1;", "expected a query option such as '$select=' after ';'", 7),
]


@pytest.mark.parametrize(
    ("rule", "text", "message", "position"), REJECTED, ids=[f"{r.__name__}:{t}" for r, t, _, _ in REJECTED]
)
def test_rejected_options_and_keys(
    rule: Callable[[str], Any], text: str, message: str, position: int
) -> None:
    """Malformed options and keys raise FilterSyntaxError with the message and the position."""
    with pytest.raises(FilterSyntaxError) as info:
        rule(text)
    assert info.value.detail == message
    assert info.value.position == position

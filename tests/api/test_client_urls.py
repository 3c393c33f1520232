"""The client's URLs: percent-encoding balena decodes back to the rendered filter, keys, length, safety."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp import web

from bulkops.api.client import Client
from bulkops.api.urls import quote, render_key
from bulkops.errors import InputError
from bulkops.odata import and_, any_, eq, in_, lit, path
from bulkops.odata.ast import BinOp, Call, Node, Op
from bulkops.odata.render import render
from tests.api.test_client_http import TOKEN, reply, rows, serve

TRICKY = [
    "a+b",
    "50% off",
    "#hash&amp=1",
    "O'Brien",
    "x;y=z?w",
    "tab\there",
    "ünïcödé ✓",
    "a%20b",
    "slash/back\\slash",
    "'';--",
    "(paren)",
]


@pytest.mark.anyio
@pytest.mark.parametrize("value", TRICKY)
async def test_filter_arrives_as_rendered(value: str) -> None:
    """What the server decodes from the query equals the rendered filter, whatever the string holds."""
    node: Node = and_(eq("device_name", value), Call("startswith", (path("note"), lit(value))))
    async with serve(rows()) as srv, Client(srv.url, TOKEN) as c:
        await c.get("device", filter=node, select=("id", "note"), orderby="id asc", top=5, skip=10)
    assert srv.seen[0].query == {
        "$filter": render(node), "$select": "id,note", "$orderby": "id asc", "$top": "5", "$skip": "10",
    }


def test_quote_escapes_what_balena_would_misread() -> None:
    """%, +, #, & and spaces are escaped; OData punctuation stays readable."""
    assert quote("a+b c%d#e&f") == "a%2Bb%20c%25d%23e%26f"
    assert quote("id in (1,2)") == "id%20in%20(1,2)"
    assert quote("name eq 'x'") == "name%20eq%20'x'"
    assert quote("a/b:c;d=e$f@g!h*i") == "a/b:c;d=e$f@g!h*i"
    assert quote("é") == "%C3%A9"


def test_keys_render_with_literal_escaping() -> None:
    """Integer keys, composite keys and quoted strings (quotes doubled, spaces encoded)."""
    assert render_key(5) == "(5)"
    assert render_key({"device": 5, "tag_key": "x"}) == "(device=5,tag_key='x')"
    assert render_key({"uuid": "O'B c"}) == "(uuid='O''B%20c')"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (True, "a key is an integer id or a mapping of field names to values, got True"),
        ({}, "a composite key needs at least one field"),
        ({"bad name": 1}, "a key field is a plain field name, got 'bad name'"),
        ({"device": 1.5}, "key field 'device' takes an integer or a string, got 1.5"),
    ],
)
def test_bad_keys_are_refused(key: object, message: str) -> None:
    """Keys that cannot be written are refused before anything is sent."""
    with pytest.raises(InputError) as info:
        render_key(key)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.anyio
async def test_composite_key_arrives_decoded() -> None:
    """A composite key reaches the server as written, decoded."""
    captured: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        captured.append(request.path)
        return web.Response(status=200)

    async with serve(answer) as srv, Client(srv.url, TOKEN) as c:
        await c.patch("device_tag", {"value": "1"}, key={"device": 5, "tag_key": "a b&c"})
    assert captured == ["/v7/device_tag(device=5,tag_key='a b&c')"]


def test_url_length_counts_the_encoded_target() -> None:
    """url_length is the length of the encoded request target, growing with the id list."""
    c = Client("https://api.example.com", TOKEN)
    small = c.url_length("device", in_("id", range(1, 11)))
    assert small == len("/v7/device?$filter=" + quote(render(in_("id", range(1, 11)))))
    assert c.url_length("device", None) == len("/v7/device")
    big = c.url_length("device", in_("id", range(100000, 102000)))
    assert 14_000 < big < 16_000


def test_api_url_with_path_prefix() -> None:
    """An API URL with a path keeps it before the version."""
    c = Client("https://example.com/balena/", TOKEN)
    assert c.url_length("device", None) == len("/balena/v7/device")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.example.com",
         "refusing to send the API token over plain http to api.example.com: use an https:// API URL, or "
         "allow it explicitly with --allow-insecure-http on a trusted network"),
        ("ftp://api.example.com", "the API URL must look like https://api.balena-cloud.com, got "
                                  "'ftp://api.example.com'"),
        ("https://user:pw@api.example.com", "the API URL must not contain credentials: give the token in "
                                            "BALENA_API_KEY"),
        ("https://api.example.com/?x=1", "the API URL must have no query or fragment, got "
                                         "'https://api.example.com/?x=1'"),
    ],
)
def test_unsafe_api_urls_are_refused(url: str, message: str) -> None:
    """Plain http off loopback, other schemes and URLs with credentials are refused."""
    with pytest.raises(InputError) as info:
        Client(url, TOKEN)
    assert str(info.value) == message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.1.2.3", "http://[::1]:80", "http://localhost"])
def test_plain_http_on_loopback_is_allowed(url: str) -> None:
    """Loopback addresses may use plain http."""
    Client(url, TOKEN)


def test_plain_http_allowed_explicitly() -> None:
    """allow_insecure_http lifts the refusal."""
    Client("http://api.example.com", TOKEN, allow_insecure_http=True)


@pytest.mark.anyio
async def test_write_without_key_or_filter_is_refused() -> None:
    """PATCH or DELETE with neither key nor filter would touch every row: refused before sending."""
    async with serve(rows()) as srv, Client(srv.url, TOKEN) as c:
        with pytest.raises(InputError) as info:
            await c.delete("device")
    assert str(info.value) == (
        "refusing to DELETE device without a key or a filter: balena would apply it to every row the token "
        "can see"
    )
    assert srv.seen == []


@pytest.mark.anyio
async def test_filters_with_datetimes_and_lambdas() -> None:
    """Datetime literals and lambdas survive the trip too."""
    node = and_(
        BinOp(Op.GT, path("created_at"), lit(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))),
        any_("device_tag", "t", and_(eq("t/tag_key", "a+b"), eq("t/value", "c d"))),
    )
    async with serve(reply(200, b'{"d":0}')) as srv, Client(srv.url, TOKEN) as c:
        assert await c.count("device", filter=node) == 0
    assert srv.seen[0].query == {"$filter": render(node)}

"""URLs and answer bodies as balena reads and writes them: percent-encoding, keys, the URL budget,
and the short forms kept in errors and logs (never a token)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Final

import orjson

from bulkops.errors import InputError
from bulkops.odata.ast import Node, lit
from bulkops.odata.render import render, render_literal

KeySpec = int | Mapping[str, str | int]

URL_BUDGET = 12_000
SHOWN_URL: Final = 300  # characters of a URL kept in errors and logs
SHOWN_TEXT: Final = 200  # characters of an answer body kept in errors
# kept as is in paths and query values; everything else is %XX (space %20, + %2B, % %25, # %23, & %26)
SAFE: Final = "'()*,/:;=@!$"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _filter_option(filter: Node | None) -> list[tuple[str, str | None]]:
    return [("$filter", None if filter is None else render(filter))]




def quote(text: str) -> str:
    """Percent-encode for balena, which URI-decodes paths and query values and reads ``+`` as a space."""
    return urllib.parse.quote(text, safe=SAFE)


def render_key(key: KeySpec) -> str:
    """``(5)`` or ``(device=5,tag_key='ring')``, literals escaped as in a ``$filter``, then encoded."""
    if isinstance(key, bool) or not isinstance(key, int | Mapping):
        raise InputError(f"a key is an integer id or a mapping of field names to values, got {key!r}")
    if isinstance(key, int):
        return f"({key})"
    if not key:
        raise InputError("a composite key needs at least one field")
    parts = []
    for name, value in key.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(f"a key field is a plain field name, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InputError(f"key field {name!r} takes an integer or a string, got {value!r}")
        parts.append(f"{name}={render_literal(lit(value))}")
    return quote("(" + ",".join(parts) + ")")


def display_url(url: str) -> str:
    """The URL as kept in errors and logs: never a token (those go in a header), cut when very long."""
    if len(url) <= SHOWN_URL:
        return url
    return f"{url[:SHOWN_URL]}…({len(url) - SHOWN_URL} more characters)"


def answer_text(data: bytes) -> str:
    """What an answer body says: a JSON string's text, or the raw text cut short; '' when empty."""
    raw = data.strip()
    if not raw:
        return ""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, str):
        text = doc
    elif raw[:1] == b"<":
        return "(an HTML page)"
    else:
        text = raw.decode("utf-8", "replace")
    return text if len(text) <= SHOWN_TEXT else text[:SHOWN_TEXT] + "…"

"""Reading a parsed TOML job table: typed getters, unknown-key checks, durations and fleet slugs.

Every problem becomes a ``JobFileError`` naming the file, the dotted key and what is accepted. Nothing
here is coerced: a value of the wrong TOML type is refused with a message that shows the value received.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bulkops.errors import JobFileError

MAX_DURATION = dt.timedelta(days=36_500)
_DURATION = re.compile(r"(\d{1,9})([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_SLUG = re.compile(r"[a-z0-9_]+/[a-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class Where:
    """The file being read and the table inside it (``""`` = the top level, ``"target"``, ...)."""

    path: str
    table: str = ""

    def key(self, name: str) -> str:
        return f"{self.table}.{name}" if self.table else name

    def sub(self, name: str) -> Where:
        return Where(self.path, self.key(name))

    def place(self) -> str:
        return f"in [{self.table}]" if self.table else "at the top level"

    def error(self, name: str | None, message: str) -> JobFileError:
        """An error about key ``name`` of this table (``None``: the table itself)."""
        key = self.key(name) if name is not None else (self.table or None)
        return JobFileError(message, path=self.path, key=key)


def describe(value: object) -> str:
    """The TOML type of ``value`` and a short rendering, for "expected X, got Y" messages."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}" if value.bit_length() <= 128 else "integer (too large to show)"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, dt.datetime):
        return f"datetime {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"date {value.isoformat()}"
    if isinstance(value, dt.time):
        return f"time {value.isoformat()}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def close_matches(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` when something in ``choices`` is close to ``word``, else ``""``."""
    found = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"


def accepted_hint(word: str, choices: Sequence[str], accepted: str, *, scope: str = "") -> str:
    """``"; did you mean 'x'? accepted: a, b"`` or ``"; accepted: a, b"``."""
    close = close_matches(word, choices)
    return f"{close or ';'} accepted{scope}: {accepted}"


def check_keys(where: Where, table: Mapping[str, Any], accepted: Sequence[str], *, what: str = "") -> None:
    """Refuse the first key of ``table`` (in file order) that is not in ``accepted``."""
    for name in table:
        if name not in accepted:
            scope = f" for {what}" if what else ""
            hint = accepted_hint(name, accepted, ", ".join(accepted), scope=scope)
            raise where.error(name, f"unknown key {name!r} {where.place()}{hint}")


def found_hint(table: Mapping[str, Any], name: str) -> str:
    """``"; found 'tpye' — did you mean 'type'?"`` when a key of ``table`` looks like the missing ``name``."""
    found = difflib.get_close_matches(name, [k for k in table if isinstance(k, str)], n=1, cutoff=0.6)
    return f"; found {found[0]!r} — did you mean {name!r}?" if found else ""


def _expected(where: Where, name: str, wanted: str, value: object) -> JobFileError:
    return where.error(name, f"expected {wanted}, got {describe(value)}")


def get_table(where: Where, table: Mapping[str, Any], name: str, *, required: bool) -> dict[str, Any] | None:
    value = table.get(name)
    if value is None:
        if required:
            raise where.error(name, f"missing required table [{where.key(name)}]{found_hint(table, name)}")
        return None
    if not isinstance(value, dict):
        raise _expected(where, name, "a table", value)
    return value


def get_str(where: Where, table: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = table.get(name)
    if value is None:
        if required:
            raise where.error(name, f"missing required key {name!r} {where.place()}{found_hint(table, name)}")
        return None
    if not isinstance(value, str):
        raise _expected(where, name, "a string", value)
    return value


def get_int(
    where: Where, table: Mapping[str, Any], name: str, *, low: int, high: int | None = None
) -> int | None:
    value = table.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(where, name, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise where.error(name, f"expected an integer {bound}, got {value}")
    return value


def get_str_list(where: Where, table: Mapping[str, Any], name: str) -> list[str] | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _expected(where, name, "an array of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise where.error(f"{name}[{i}]", f"expected a string, got {describe(item)}")
    return list(value)


def parse_duration(text: str) -> dt.timedelta | None:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"45s"`` or a sum such as ``"1d12h"``; None if invalid."""
    pos, seconds = 0, 0
    if not text:
        return None
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        seconds += int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
        if seconds > MAX_DURATION.total_seconds():
            return None
    return dt.timedelta(seconds=seconds) if pos == len(text) else None


DURATION_HELP = 'a duration such as "90d", "12h", "30m" or "2w" (units: w, d, h, m, s)'


def get_duration(
    where: Where, table: Mapping[str, Any], name: str, *, seconds_ok: bool
) -> dt.timedelta | None:
    """A duration string; with ``seconds_ok`` also a plain number of seconds. Always > 0."""
    value = table.get(name)
    if value is None:
        return None
    wanted = DURATION_HELP + (" or a number of seconds" if seconds_ok else "")
    if seconds_ok and isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 < value <= MAX_DURATION.total_seconds():
            raise where.error(name, f"expected a positive number of seconds, got {value!r}")
        return dt.timedelta(seconds=value)
    if not isinstance(value, str):
        raise _expected(where, name, wanted, value)
    parsed = parse_duration(value)
    if parsed is None:
        raise _expected(where, name, wanted, value)
    if parsed <= dt.timedelta():
        raise where.error(name, f"expected a duration above zero, got {value!r}")
    return parsed


SLUG_HELP = "a fleet slug '<organization handle>/<fleet name>' in lower case, e.g. 'acme/gateway'"


def check_slug(where: Where, name: str, value: str) -> str:
    """A fleet slug as balena writes it; upper case is refused with the lower-case spelling."""
    if _SLUG.fullmatch(value):
        return value
    hint = ""
    if _SLUG.fullmatch(value.lower()):
        hint = f"; slugs are lower case: write {value.lower()!r}"
    raise where.error(name, f"expected {SLUG_HELP}, got {describe(value)}{hint}")


def check_job_name(where: Where, value: str) -> str:
    if _NAME.fullmatch(value):
        return value
    raise where.error(
        "name",
        "expected 1-100 letters, digits, '.', '_' or '-' (starting with a letter or digit),"
        f" e.g. name = \"debug-logging-on-canaries\", got {describe(value)}",
    )

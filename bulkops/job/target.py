"""The ``[target]`` table of a job file: which rows a job selects, and the bounds on how many.

``resource`` is ``device`` or ``application`` (alias ``fleet``); ``fleet``/``fleets`` name fleets by
slug; ``filter`` is OData, parsed and name-checked here; ``offline_for`` is the cleanup shorthand;
``uuids``, ``uuids_file`` and ``ids`` list the rows outright; and ``expect`` bounds the target count
(``min``, ``max``, ``max_share`` of the fleets' population).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bulkops import v7
from bulkops.errors import FilterModelError, FilterSyntaxError, UnknownFieldError
from bulkops.job.fields import (
    Where,
    accepted_hint,
    check_keys,
    check_slug,
    describe,
    get_duration,
    get_int,
    get_str,
    get_str_list,
    get_table,
)
from bulkops.model import Expect, Target
from bulkops.odata.check import check_filter
from bulkops.odata.parser import parse

TARGET_KEYS = ("resource", "fleet", "fleets", "filter", "offline_for", "uuids", "uuids_file", "ids", "expect")
EXPECT_KEYS = ("min", "max", "max_share")
RESOURCES = {"device": "device", "application": "application", "fleet": "application"}
RESOURCE_HELP = "device, application (alias: fleet)"
MAX_FILTER = 8_000
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,6})?)%")
_UUID = re.compile(r"[0-9a-f]{32}(?:[0-9a-f]{30})?")
UUID_HELP = "a device uuid (32 lower-case hex characters, or 62 for old devices)"
MAX_LISTED = 100_000


def check_filter_text(where: Where, key: str, text: str, resource: str) -> None:
    """Parse ``text`` as a ``$filter`` and check it against ``resource`` in the v7 model (names,
    navigations, literal types, enumerated values); errors name ``key``."""
    try:
        check_filter(parse(text), resource)
    except FilterSyntaxError as exc:
        raise where.error(key, f"filter syntax error: {exc}") from exc
    except (UnknownFieldError, FilterModelError) as exc:
        raise where.error(key, f"{exc} (in the filter)") from exc
    except RecursionError:
        raise where.error(key, "filter syntax error: parentheses nested too deeply") from None


def _resource(where: Where, table: Mapping[str, Any]) -> str:
    name = get_str(where, table, "resource", required=True)
    assert name is not None
    if name in RESOURCES:
        canonical = RESOURCES[name]
        v7.resource(canonical)  # both are in the model; a KeyError here is a bug, not bad input
        return canonical
    try:
        v7.resource(name)
    except KeyError:
        raise where.error(
            "resource",
            f"unknown resource {name!r}{accepted_hint(name, list(RESOURCES), RESOURCE_HELP)}",
        ) from None
    raise where.error("resource", f"resource {name!r} cannot be a job target; accepted: {RESOURCE_HELP}")


def _fleets(where: Where, table: Mapping[str, Any]) -> tuple[str, ...]:
    one = get_str(where, table, "fleet", required=False)
    many = get_str_list(where, table, "fleets")
    if one is not None and many is not None:
        raise where.error("fleets", "give either fleet or fleets, not both")
    if one is not None:
        return (check_slug(where, "fleet", one),)
    if many is None:
        return ()
    if not many:
        raise where.error("fleets", "expected at least one fleet slug")
    slugs = tuple(check_slug(where, f"fleets[{i}]", s) for i, s in enumerate(many))
    for i, slug in enumerate(slugs):
        if slug in slugs[:i]:
            raise where.error(f"fleets[{i}]", f"fleet {slug!r} is listed twice")
    return slugs


def _share(where: Where, value: object) -> float:
    wanted = 'a share such as "10%" or 0.1 (above 0, at most 100%)'
    share: float | None = None
    if isinstance(value, str):
        m = _PERCENT.fullmatch(value)
        share = float(m.group(1)) / 100 if m else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    if share is None or not 0 < share <= 1:
        raise where.error("max_share", f"expected {wanted}, got {describe(value)}")
    return share


def parse_expect(where: Where, table: Mapping[str, Any] | None) -> Expect:
    """``expect = { min = 1, max = 500, max_share = "10%" }``: every key optional."""
    if table is None:
        return Expect()
    check_keys(where, table, EXPECT_KEYS)
    low = get_int(where, table, "min", low=0)
    high = get_int(where, table, "max", low=0)
    if low is not None and high is not None and low > high:
        raise where.error("min", f"min ({low}) is above max ({high})")
    share = _share(where, table["max_share"]) if "max_share" in table else None
    return Expect(min=low, max=high, max_share=share)


def _uuid(where: Where, key: str, value: object, place: str = "") -> str:
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value
    hint = ""
    if isinstance(value, str) and _UUID.fullmatch(value.lower()):
        hint = f"; uuids are lower case: write {value.lower()!r}"
    elif isinstance(value, str) and re.fullmatch(r"[0-9a-f]{7,31}", value):
        hint = "; give the full uuid (a short uuid is only a prefix)"
    raise where.error(key, f"{place}expected {UUID_HELP}, got {describe(value)}{hint}")


def _unique(where: Where, key: str, values: list[Any], name: str) -> None:
    if not values:
        raise where.error(key, f"expected at least one {name}")
    if len(values) > MAX_LISTED:
        raise where.error(key, f"expected at most {MAX_LISTED:,} {name}s, got {len(values):,}")
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v in seen:
            raise where.error(f"{key}[{i}]", f"{name} {v!r} is listed twice (also at {key}[{seen[v]}])")
        seen[v] = i


def _uuids_file(where: Where, text: str) -> tuple[str, ...]:
    """One uuid per line; blank lines and ``#`` comments are skipped. A path is relative to the job file."""
    job_dir = Path(where.path).parent if where.path and not where.path.startswith("<") else Path()
    path = job_dir / text
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise where.error("uuids_file", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise where.error("uuids_file", f"{path} is not UTF-8 text") from None
    out: list[str] = []
    first: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        uuid = _uuid(where, "uuids_file", entry, f"{path} line {n}: ")
        if uuid in first:
            raise where.error("uuids_file", f"{path} line {n}: uuid {uuid!r} is listed twice (also on "
                                            f"line {first[uuid]})")
        first[uuid] = n
        out.append(uuid)
    if not out:
        raise where.error("uuids_file", f"{path} lists no uuid (one per line; # starts a comment)")
    if len(out) > MAX_LISTED:
        raise where.error("uuids_file", f"{path}: expected at most {MAX_LISTED:,} uuids, got {len(out):,}")
    return tuple(out)


def parse_listed(
    where: Where, table: Mapping[str, Any], resource: str
) -> tuple[tuple[str, ...], tuple[int, ...], str]:
    """``uuids = [...]``, ``uuids_file = "..."`` or ``ids = [...]`` (at most one of them): the rows listed
    outright, as (uuids, ids, uuids_file)."""
    given = [k for k in ("uuids", "uuids_file", "ids") if k in table]
    if len(given) > 1:
        raise where.error(given[1], f"give one of uuids, uuids_file or ids, not {' and '.join(given)}")
    if not given:
        return (), (), ""
    key = given[0]
    if key != "ids" and resource != "device":
        raise where.error(key, f"{key} lists devices; for fleets use ids = [...] or fleets = [...]")
    if key == "uuids":
        raw = table["uuids"]
        if not isinstance(raw, list):
            raise where.error(key, f"expected an array of device uuids, got {describe(raw)}")
        uuids = [_uuid(where, f"uuids[{i}]", v) for i, v in enumerate(raw)]
        _unique(where, key, uuids, "uuid")
        return tuple(uuids), (), ""
    if key == "uuids_file":
        text = get_str(where, table, "uuids_file", required=True)
        assert text is not None
        if not text.strip():
            raise where.error(key, "expected a file name, got an empty string")
        return _uuids_file(where, text), (), text
    raw = table["ids"]
    if not isinstance(raw, list):
        raise where.error(key, f"expected an array of integer ids, got {describe(raw)}")
    for i, v in enumerate(raw):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**63:
            raise where.error(f"ids[{i}]", f"expected a positive integer id, got {describe(v)}")
    _unique(where, key, list(raw), "id")
    return (), tuple(raw), ""


def parse_target(where: Where, table: Mapping[str, Any]) -> Target:
    """The ``[target]`` table; at least one selector (fleet, fleets, filter, offline_for, uuids,
    uuids_file, ids) is required."""
    check_keys(where, table, TARGET_KEYS)
    resource = _resource(where, table)
    fleets = _fleets(where, table)
    text = get_str(where, table, "filter", required=False)
    if text is not None:
        if not text.strip():
            raise where.error("filter", "expected an OData filter, got an empty string (leave the key out)")
        if len(text) > MAX_FILTER:
            raise where.error("filter", f"expected at most {MAX_FILTER} characters, got {len(text)}")
        check_filter_text(where, "filter", text, resource)
    offline = get_duration(where, table, "offline_for", seconds_ok=False)
    uuids, ids, uuids_file = parse_listed(where, table, resource)
    expect = parse_expect(where.sub("expect"), get_table(where, table, "expect", required=False))
    if not fleets and text is None and offline is None and not uuids and not ids:
        raise where.error(
            None,
            "no selector: give fleet, fleets, filter, offline_for, uuids, uuids_file or ids"
            " (a job never targets everything by default)",
        )
    return Target(resource=resource, fleets=fleets, filter=text, offline_for=offline, expect=expect,
                  uuids=uuids, ids=ids, uuids_file=uuids_file)

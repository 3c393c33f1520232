"""The ``schedule`` key of a job file: when the job runs unattended.

Two forms::

    schedule = "0 3 * * *"                                   # a cron expression, read in UTC
    schedule = { cron = "0 3 * * *", timezone = "Europe/Berlin", jitter = "5m", missed = "latest",
                 catch_up = "6h", grow_limit = { factor = 2, add = 50 } }

The cron expression has the five classic fields (``minute hour day-of-month month day-of-week``) or is
one of ``@hourly @daily @midnight @weekly @monthly @yearly @annually``; it is evaluated by ``cronsim``,
which handles daylight-saving changes as Debian cron does. A job that deletes rows and has a schedule
must bound itself with ``expect.max``: nobody is there to confirm it.
"""

from __future__ import annotations

import itertools
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cronsim import CronSim, CronSimError

from bulkops.job.fields import (
    DURATION_HELP,
    Where,
    accepted_hint,
    check_keys,
    describe,
    get_duration,
    get_str,
)
from bulkops.model import Action, ActionType, GrowLimit, Missed, Schedule, Target

__all__ = ["DESTRUCTIVE", "ON_TIME", "cron_iter", "parse_schedule", "zone"]

KEYS = ("cron", "timezone", "jitter", "missed", "catch_up", "grow_limit")
GROW_KEYS = ("factor", "add")
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
FIELDS = (
    ("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31, L or LW"),
    ("month", "1-12 or JAN-DEC"), ("day-of-week", "0-7 or SUN-SAT, with #N or L"),
)
CRON_HELP = ('a cron expression "minute hour day-of-month month day-of-week" such as "0 3 * * *"'
             " (or @hourly, @daily, @weekly, @monthly, @yearly)")
ZONE_HELP = 'an IANA time zone name such as "Europe/Berlin", "America/New_York" or "UTC"'
ON_TIME = timedelta(minutes=1)  # a slot started at most this late is on time, whatever the policy
DESTRUCTIVE = frozenset({ActionType.DELETE, ActionType.REMOVE_ENV, ActionType.REMOVE_CONFIG,
                         ActionType.REMOVE_TAG})
MAX_JITTER = timedelta(hours=24)
_GAP_SAMPLE = 200  # slots looked at to find the shortest time between two


def cron_iter(cron: str, start: datetime, tz: zoneinfo.ZoneInfo) -> CronSim:
    """The slots of ``cron`` strictly after ``start``, as aware datetimes in ``tz``."""
    return CronSim(cron, start.astimezone(tz))


@cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _cron(where: Where, name: str, value: str) -> str:
    text = " ".join(value.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            hint = accepted_hint(text.lower(), list(MACROS), ", ".join(MACROS))
            raise where.error(name, f"expected {CRON_HELP}, got {describe(value)}: unknown macro{hint}")
        return MACROS[text.lower()]
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        raise where.error(name, f"expected {CRON_HELP}, got {describe(value)}: {len(parts)} "
                                f"field{'' if len(parts) == 1 else 's'} instead of 5")
    try:
        it = CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        bad = str(exc).removeprefix("Bad ")
        index = next((i for i, (field, _) in enumerate(FIELDS) if field == bad), None)
        if index is None:
            raise where.error(name, f"expected {CRON_HELP}, got {describe(value)}: {exc}") from None
        field, accepted = FIELDS[index]
        raise where.error(
            name, f"expected {CRON_HELP}, got {describe(value)}: bad {field} {parts[index]!r} "
                  f"(accepted: {accepted}, *, lists a,b, ranges a-b and steps */n)") from None
    try:
        next(it)
    except StopIteration:
        raise where.error(name, f"the cron expression {text!r} never comes due") from None
    return text


def _timezone(where: Where, table: Mapping[str, Any]) -> str:
    name = get_str(where, table, "timezone", required=False)
    if name is None:
        return "UTC"
    try:
        zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        names = _zone_names()
        exact = [n for n in names if n.lower() == name.lower()]
        if exact:
            hint = f"; time zone names are case-sensitive: write {exact[0]!r}"
        else:
            tail = [n for n in names if n.rsplit("/", 1)[-1].lower() == name.lower().replace(" ", "_")]
            hint = f"; did you mean {tail[0]!r}?" if tail else ""
        raise where.error("timezone", f"expected {ZONE_HELP}, got {describe(name)}{hint}") from None
    return name


def _shortest_gap(cron: str, tz: zoneinfo.ZoneInfo) -> timedelta:
    it = cron_iter(cron, datetime(2001, 1, 1, tzinfo=UTC), tz)
    slots = []
    for _ in range(_GAP_SAMPLE):
        try:
            slots.append(next(it))
        except StopIteration:
            break
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    return min(gaps) if gaps else timedelta(days=366)


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _grow_limit(where: Where, table: Mapping[str, Any]) -> GrowLimit:
    value = table.get("grow_limit")
    if value is None:
        return GrowLimit()
    if not isinstance(value, dict):
        raise where.error("grow_limit", f"expected a table such as {{ factor = 2, add = 50 }}, "
                                        f"got {describe(value)}")
    sub = where.sub("grow_limit")
    check_keys(sub, value, GROW_KEYS)
    out = GrowLimit()
    factor = value.get("factor")
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor <= 1000:
            raise sub.error("factor", f"expected a number from 1 to 1000, got {describe(factor)}")
        out = GrowLimit(float(factor), out.add)
    add = value.get("add")
    if add is not None:
        if isinstance(add, bool) or not isinstance(add, int) or not 0 <= add <= 1_000_000:
            raise sub.error("add", f"expected an integer from 0 to 1000000, got {describe(add)}")
        out = GrowLimit(out.factor, add)
    return out


def _missed(where: Where, table: Mapping[str, Any]) -> Missed:
    value = get_str(where, table, "missed", required=False)
    if value is None:
        return Missed.LATEST
    choices = [m.value for m in Missed]
    if value not in choices:
        hint = accepted_hint(value, choices, ", ".join(choices))
        raise where.error("missed", f"unknown policy {value!r}{hint}")
    return Missed(value)


def parse_schedule(top: Where, doc: Mapping[str, Any], target: Target, action: Action) -> Schedule | None:
    """The job's ``schedule`` (a cron string or a table), or None when the key is absent."""
    value = doc.get("schedule")
    if value is None:
        return None
    if isinstance(value, str):
        table: dict[str, Any] = {"cron": value}
        where, cron_key = top, "schedule"
    elif isinstance(value, dict):
        table = value
        where, cron_key = top.sub("schedule"), "cron"
        check_keys(where, table, KEYS)
        if "cron" not in table:
            raise where.error("cron", f"missing required key 'cron' in [schedule]: {CRON_HELP}")
    else:
        raise top.error("schedule", f"expected {CRON_HELP} or a table with cron, timezone, jitter, "
                                    f"missed, catch_up, grow_limit; got {describe(value)}")
    raw = table["cron"]
    if not isinstance(raw, str):
        raise where.error(cron_key, f"expected {CRON_HELP}, got {describe(raw)}")
    cron = _cron(where, cron_key, raw)
    tz_name = _timezone(where, table)
    catch_up = get_duration(where, table, "catch_up", seconds_ok=False) or Schedule(cron).catch_up
    if catch_up < ON_TIME:
        raise where.error("catch_up", f"expected at least 1m (a slot up to 1m late is always on time), "
                                      f"got {table['catch_up']!r}")
    jitter = get_duration(where, table, "jitter", seconds_ok=False) or timedelta(0)
    if jitter > MAX_JITTER:
        raise where.error("jitter", f"expected {DURATION_HELP} of at most 24h, got {table['jitter']!r}")
    if jitter:
        gap = _shortest_gap(cron, zone(tz_name))
        if jitter >= gap:
            raise where.error("jitter", f"expected less than the {_human(gap)} between two slots of "
                                        f"{cron!r}, got {table['jitter']!r}")
    if action.type in DESTRUCTIVE and target.expect.max is None:
        raise top.error(
            "target.expect",
            f"a scheduled {action.type.value} runs with nobody to confirm it: set expect.max "
            "(e.g. expect = { max = 100 }) to bound how many targets one run may remove")
    return Schedule(cron=cron, timezone=tz_name, jitter=jitter, missed=_missed(where, table),
                    catch_up=catch_up, grow_limit=_grow_limit(where, table))

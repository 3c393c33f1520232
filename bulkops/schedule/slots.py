"""Slots: the instants a job's cron expression names, and what to do with the ones that came due.

A *slot* is one instant the schedule names, kept in UTC and written ``2026-03-29T01:00:00Z``; with the
job's name it is the run key. Its *due time* is the slot plus the job's jitter for that slot (a fixed
fraction of ``jitter`` derived from the job name and the slot, so every process agrees on it).

:func:`decide` looks at the slots after the job's cursor (the last slot already decided) that are due
by ``now`` and splits them by the job's ``missed`` policy into slots to run and slots to skip, each
skip with its reason. Pure functions of their arguments: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cronsim import CronSim

from bulkops.errors import InputError
from bulkops.job.schedule import ON_TIME, cron_iter, zone
from bulkops.model import Missed, Schedule

MAX_DUE = 100_000  # slots looked at one by one after a downtime; older ones are journaled as one range


class SkipReason(StrEnum):
    MISSED = "missed"  # not on time, and the policy is "skip"
    SUPERSEDED = "superseded"  # a later due slot runs instead (policy "skip" or "latest")
    TOO_LATE = "too_late"  # later than catch_up
    OVERLAP = "overlap"  # the job was still running an earlier slot
    STOPPED = "stopped"  # the scheduler stopped before this slot started


@dataclass(frozen=True, slots=True)
class Skip:
    slot: datetime
    reason: SkipReason
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What a tick does for one job: slots to run (oldest first), slots skipped, and the new cursor."""

    run: tuple[datetime, ...] = ()
    skip: tuple[Skip, ...] = ()
    cursor: datetime | None = None  # the newest slot decided; None when nothing was due


def slot_key(when: datetime) -> str:
    """``2026-03-29T01:00:00Z``: a slot as stored and shown."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_slot(text: str, *, flag: str = "--slot") -> datetime:
    """An ISO-8601 time (``Z``, an offset, or none for UTC) as an aware UTC datetime, whole seconds."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in {"Z", "z"} else value)
    except ValueError:
        raise InputError(
            f"{flag} expects an ISO-8601 time such as 2026-03-29T01:00:00Z, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def jitter_offset(job: str, schedule: Schedule, slot: datetime) -> timedelta:
    """The fixed part of ``schedule.jitter`` this job waits for this slot (whole seconds)."""
    span = int(schedule.jitter.total_seconds())
    if span <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{job}\x00{slot_key(slot)}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % span)


def due_at(job: str, schedule: Schedule, slot: datetime, *, jitter: bool = True) -> datetime:
    return slot + jitter_offset(job, schedule, slot) if jitter else slot


def iter_slots(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The slots strictly after ``after``, in UTC, oldest first.

    cronsim walks fixed-time expressions in local wall time (as Debian cron does: a time skipped by a
    spring-forward runs at the first minute after the jump, a time repeated by a fall-back runs once),
    so a slot it names can lie before ``after`` when ``after`` falls in a repeated hour; such slots are
    dropped here."""
    start = after.astimezone(UTC)
    for local in cron_iter(schedule.cron, start, zone(schedule.timezone)):
        slot = local.astimezone(UTC)
        if slot > start:
            yield slot


def next_slots(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` slots after ``after`` (fewer if the expression runs out)."""
    return list(itertools.islice(iter_slots(schedule, after), count))


def latest_slot(schedule: Schedule, at: datetime) -> datetime | None:
    """The newest slot at or before ``at``, or None if there was none in the last 50 years."""
    tz = zone(schedule.timezone)
    at = at.astimezone(UTC)
    back = CronSim(schedule.cron, (at + timedelta(seconds=1)).astimezone(tz).replace(microsecond=0),
                   reverse=True)
    for local in back:
        slot = local.astimezone(UTC)
        if slot <= at:
            return slot
    return None


def _human(span: timedelta) -> str:
    """``45s``, ``70m``, ``2h``, ``7.2h``, ``3d``: short, and exact where it can be."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7_200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def _due(job: str, schedule: Schedule, after: datetime, now: datetime, *, jitter: bool, limit: int
         ) -> tuple[list[datetime], list[Skip]]:
    """Due slots after ``after``; past ``limit`` of them the oldest become one range skip."""
    horizon = now - schedule.catch_up - schedule.jitter - ON_TIME  # older slots are too late for any policy
    out: list[datetime] = []
    ranged: list[Skip] = []
    for slot in iter_slots(schedule, after):
        if due_at(job, schedule, slot, jitter=jitter) > now:
            break
        out.append(slot)
        if len(out) >= limit and slot < horizon:
            resume = latest_slot(schedule, horizon) or slot
            detail = (f"more than {limit:,} slots from {slot_key(out[0])} to {slot_key(resume)} came due "
                      f"unseen, all later than catch_up {_human(schedule.catch_up)}")
            ranged.append(Skip(out[0], SkipReason.TOO_LATE, detail))
            rest, _ = _due(job, schedule, max(resume, slot), now, jitter=jitter, limit=limit)
            return rest, ranged
    return out, ranged


def decide(job: str, schedule: Schedule, after: datetime, now: datetime, *, jitter: bool = True,
           limit: int = MAX_DUE) -> Decision:
    """Split the slots after ``after`` that are due by ``now`` into runs and skips by ``schedule.missed``.

    A slot started at most :data:`ON_TIME` after its due time is on time. ``skip`` runs the newest slot
    on time; ``latest`` the newest slot no later than ``catch_up``; ``all`` every slot no later than
    ``catch_up``, oldest first. Every other due slot is skipped with its reason. Past ``limit`` due
    slots, the oldest are journaled as one range skip."""
    due, skips = _due(job, schedule, after, now, jitter=jitter, limit=limit)
    if not due:
        return Decision(skip=tuple(skips), cursor=skips[-1].slot if skips else None)
    policy = schedule.missed
    bound = ON_TIME if policy is Missed.SKIP else schedule.catch_up
    late = {slot: now - due_at(job, schedule, slot, jitter=jitter) for slot in due}
    candidates = [slot for slot in due if late[slot] <= bound]
    run = candidates if policy is Missed.ALL else candidates[-1:]
    for slot in due:
        if slot in run:
            continue
        if late[slot] > bound:
            if policy is Missed.SKIP:
                detail = f"due {_human(late[slot])} ago; missed = \"skip\" runs only slots at most 1m late"
                skips.append(Skip(slot, SkipReason.MISSED, detail))
            else:
                skips.append(Skip(slot, SkipReason.TOO_LATE, f"due {_human(late[slot])} ago, later than "
                                                              f"catch_up {_human(schedule.catch_up)}"))
        else:
            skips.append(Skip(slot, SkipReason.SUPERSEDED,
                              f"superseded by the later slot {slot_key(run[-1])} (missed = \"{policy}\")"))
    return Decision(tuple(run), tuple(sorted(skips, key=lambda s: s.slot)), due[-1])

"""Slots and missed-slot decisions as pure functions of the schedule, the cursor and an injected now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bulkops.errors import InputError
from bulkops.job.schedule import zone
from bulkops.model import Missed, Schedule
from bulkops.schedule.slots import (
    Decision,
    SkipReason,
    decide,
    due_at,
    jitter_offset,
    latest_slot,
    next_slots,
    parse_slot,
    slot_key,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def keys(slots: list[datetime] | tuple[datetime, ...]) -> list[str]:
    return [slot_key(s) for s in slots]


def test_timezone_slots_are_local_wall_time() -> None:
    """03:00 Europe/Berlin is 02:00Z in winter and 01:00Z in summer; 03:00 America/New_York is 08:00Z."""
    berlin = Schedule(cron="0 3 * * *", timezone="Europe/Berlin")
    assert keys(next_slots(berlin, utc(2027, 1, 10), 2)) == ["2027-01-10T02:00:00Z", "2027-01-11T02:00:00Z"]
    assert keys(next_slots(berlin, utc(2027, 7, 10), 1)) == ["2027-07-10T01:00:00Z"]
    ny = Schedule(cron="0 3 * * *", timezone="America/New_York")
    assert keys(next_slots(ny, utc(2027, 1, 10), 1)) == ["2027-01-10T08:00:00Z"]


def test_spring_forward_runs_a_skipped_time_once_at_the_jump() -> None:
    """02:30 does not exist in Berlin on 2027-03-28: as in cron, that day's slot is 03:00 CEST, once."""
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    slots = next_slots(s, utc(2027, 3, 26, 12), 4)
    assert keys(slots) == ["2027-03-27T01:30:00Z", "2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z",
                           "2027-03-30T00:30:00Z"]
    assert slots[1].astimezone(zone(s.timezone)).strftime("%H:%M %Z") == "03:00 CEST"


def test_fall_back_runs_a_repeated_time_once() -> None:
    """02:30 happens twice in Berlin on 2026-10-25: the slot is the first (CEST) only, no second run."""
    s = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert keys(next_slots(s, utc(2026, 10, 23, 12), 4)) == [
        "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
    # asked from inside the repeated hour (02:10 CET, after the 02:30 CEST slot), the next is tomorrow's
    assert keys(next_slots(s, utc(2026, 10, 25, 1, 10), 1)) == ["2026-10-26T01:30:00Z"]


def test_hourly_schedule_follows_real_hours_across_dst() -> None:
    """A wildcard hour runs every real hour: 23 slots on the spring-forward day, 25 on the fall-back day."""
    s = Schedule(cron="15 * * * *", timezone="Europe/Berlin")
    spring = [t for t in next_slots(s, utc(2027, 3, 27, 23), 30) if t < utc(2027, 3, 28, 22)]
    fall = [t for t in next_slots(s, utc(2026, 10, 24, 22), 30) if t < utc(2026, 10, 25, 23)]
    assert len(spring) == 23 and len(fall) == 25
    assert len(set(fall)) == 25


def test_latest_slot_is_at_or_before() -> None:
    """latest_slot gives the newest slot at or before the time asked."""
    s = Schedule(cron="0 3 * * *")
    assert latest_slot(s, utc(2027, 1, 10, 3)) == utc(2027, 1, 10, 3)
    assert latest_slot(s, utc(2027, 1, 10, 2, 59)) == utc(2027, 1, 9, 3)


def test_jitter_is_fixed_per_job_and_slot() -> None:
    """The jitter of a slot is the same every time it is computed, below the jitter, and differs by job."""
    s = Schedule(cron="0 3 * * *", jitter=timedelta(minutes=5))
    slot = utc(2027, 1, 10, 3)
    offsets = {jitter_offset("a", s, slot) for _ in range(3)}
    assert len(offsets) == 1 and timedelta(0) <= offsets.pop() < timedelta(minutes=5)
    many = {jitter_offset(f"job{i}", s, slot) for i in range(20)}
    assert len(many) > 5
    assert due_at("a", s, slot) == slot + jitter_offset("a", s, slot)
    assert due_at("a", s, slot, jitter=False) == slot


def test_on_time_slot_runs_under_every_policy() -> None:
    """A slot 30 s late runs whatever the policy, and moves the cursor to it."""
    for policy in Missed:
        s = Schedule(cron="0 3 * * *", missed=policy)
        d = decide("j", s, utc(2027, 1, 10, 2, 59), utc(2027, 1, 10, 3, 0, 30))
        assert d == Decision(run=(utc(2027, 1, 10, 3),), skip=(), cursor=utc(2027, 1, 10, 3)), policy


def test_nothing_due_before_the_slot() -> None:
    """Before a slot's due time nothing runs and the cursor stays (jitter counts)."""
    s = Schedule(cron="0 3 * * *", jitter=timedelta(minutes=5))
    slot = utc(2027, 1, 10, 3)
    before = due_at("j", s, slot) - timedelta(seconds=1)
    assert decide("j", s, utc(2027, 1, 10, 2), before) == Decision()
    assert decide("j", s, utc(2027, 1, 10, 2), due_at("j", s, slot)).run == (slot,)


HOURLY_DOWN = (utc(2027, 1, 10, 0, 30), utc(2027, 1, 10, 8, 10))  # down from 00:30 to 08:10: 8 slots missed


def test_missed_skip_journals_every_late_slot() -> None:
    """missed = "skip": after a downtime nothing runs; each of the 8 missed slots is skipped as missed."""
    s = Schedule(cron="0 * * * *", missed=Missed.SKIP, catch_up=timedelta(hours=3))
    d = decide("j", s, *HOURLY_DOWN)
    assert d.run == ()
    assert keys([k.slot for k in d.skip]) == [f"2027-01-10T0{h}:00:00Z" for h in range(1, 9)]
    assert {k.reason for k in d.skip} == {SkipReason.MISSED}
    assert d.skip[-1].detail == 'due 10m ago; missed = "skip" runs only slots at most 1m late'
    assert d.cursor == utc(2027, 1, 10, 8)


def test_missed_latest_runs_one_catch_up() -> None:
    """missed = "latest": the newest slot inside catch_up runs once; older ones are superseded or too late."""
    s = Schedule(cron="0 * * * *", missed=Missed.LATEST, catch_up=timedelta(hours=3))
    d = decide("j", s, *HOURLY_DOWN)
    assert d.run == (utc(2027, 1, 10, 8),)
    reasons = {slot_key(k.slot): (k.reason, k.detail) for k in d.skip}
    assert len(reasons) == 7
    assert reasons["2027-01-10T06:00:00Z"] == (
        SkipReason.SUPERSEDED, 'superseded by the later slot 2027-01-10T08:00:00Z (missed = "latest")')
    assert reasons["2027-01-10T01:00:00Z"] == (SkipReason.TOO_LATE, "due 7.2h ago, later than catch_up 3h")
    assert [r for r, _ in reasons.values()].count(SkipReason.TOO_LATE) == 5  # 01:00 … 05:00


def test_missed_all_runs_each_slot_inside_catch_up_oldest_first() -> None:
    """missed = "all": the slots inside catch_up run oldest first; older ones are skipped as too late."""
    s = Schedule(cron="0 * * * *", missed=Missed.ALL, catch_up=timedelta(hours=3))
    d = decide("j", s, *HOURLY_DOWN)
    assert keys(d.run) == ["2027-01-10T06:00:00Z", "2027-01-10T07:00:00Z", "2027-01-10T08:00:00Z"]
    assert keys([k.slot for k in d.skip]) == [f"2027-01-10T0{h}:00:00Z" for h in range(1, 6)]
    assert {k.reason for k in d.skip} == {SkipReason.TOO_LATE}


def test_long_downtime_beyond_catch_up_runs_nothing_and_skips_all() -> None:
    """A daily job down 3 days, catch_up 6h, 20 h after its last slot: nothing runs, 3 slots skipped."""
    s = Schedule(cron="0 3 * * *", missed=Missed.LATEST, catch_up=timedelta(hours=6))
    d = decide("j", s, utc(2027, 1, 10, 4), utc(2027, 1, 13, 23))
    assert d.run == ()
    assert keys([k.slot for k in d.skip]) == ["2027-01-11T03:00:00Z", "2027-01-12T03:00:00Z",
                                              "2027-01-13T03:00:00Z"]
    assert d.cursor == utc(2027, 1, 13, 3)


def test_a_huge_gap_is_journaled_as_one_range_then_decided() -> None:
    """Past the limit of missed slots the oldest are journaled as one range and the recent ones decided."""
    s = Schedule(cron="* * * * *", missed=Missed.LATEST, catch_up=timedelta(minutes=10))
    d = decide("j", s, utc(2026, 1, 1), utc(2026, 1, 8, 0, 0, 5), limit=1000)
    assert d.run == (utc(2026, 1, 8),)
    first = d.skip[0]
    assert (first.slot, first.reason) == (utc(2026, 1, 1, 0, 1), SkipReason.TOO_LATE)
    assert first.detail == ("more than 1,000 slots from 2026-01-01T00:01:00Z to 2026-01-07T23:49:00Z came "
                            "due unseen, all later than catch_up 10m")
    assert len(d.skip) < 100  # the range row, then the last minutes one by one
    assert d.cursor == utc(2026, 1, 8)


@pytest.mark.parametrize(("text", "want"), [
    ("2027-03-28T01:00:00Z", "2027-03-28T01:00:00Z"),
    ("2027-03-28T03:00:00+02:00", "2027-03-28T01:00:00Z"),
    ("2027-03-28T01:00:00.750", "2027-03-28T01:00:00Z"),
])
def test_parse_slot_normalises_to_utc_seconds(text: str, want: str) -> None:
    """--slot accepts Z, an offset or none (UTC); the key is UTC to the second."""
    assert slot_key(parse_slot(text)) == want


def test_parse_slot_refuses_what_is_not_a_time() -> None:
    """A --slot that is not ISO-8601 is refused with the value and an example."""
    with pytest.raises(InputError) as info:
        parse_slot("tonight")
    assert str(info.value) == "--slot expects an ISO-8601 time such as 2026-03-29T01:00:00Z, got 'tonight'"


def test_missed_skip_supersedes_an_older_slot_also_on_time() -> None:
    """missed = "skip" with two minute slots on time in one tick: the newer runs, the older is superseded."""
    s = Schedule(cron="* * * * *", missed=Missed.SKIP)
    d = decide("j", s, utc(2027, 1, 10, 2, 59, 30), utc(2027, 1, 10, 3, 1))
    assert d.run == (utc(2027, 1, 10, 3, 1),)
    assert [(k.slot, k.reason) for k in d.skip] == [(utc(2027, 1, 10, 3), SkipReason.SUPERSEDED)]

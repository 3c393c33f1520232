"""The ``schedule`` key of a job file: both forms, defaults, and every error with its exact message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bulkops.errors import JobFileError
from bulkops.job.load import parse_job
from bulkops.model import GrowLimit, Missed, Schedule

BASE = """name = "j"
{top}
[target]
resource = "device"
fleet = "acme/gateway"
{target}
[action]
{action}
"""
TAG = 'type = "set_tag"\nkey = "k"\nvalue = "v"'
CRON_HELP = ('expected a cron expression "minute hour day-of-month month day-of-week" such as "0 3 * * *"'
             " (or @hourly, @daily, @weekly, @monthly, @yearly)")


def job(top: str, *, action: str = TAG, target: str = "") -> str:
    return BASE.format(top=top, action=action, target=target)


def error_of(text: str) -> str:
    with pytest.raises(JobFileError) as info:
        parse_job(text, path="job.toml")
    return str(info.value)


def test_plain_cron_string_is_utc_with_defaults() -> None:
    """schedule = "0 3 * * *" is read in UTC with missed = latest, catch_up 1h, no jitter, grow 2× or +50."""
    assert parse_job(job('schedule = "0 3 * * *"')).schedule == Schedule(
        cron="0 3 * * *", timezone="UTC", jitter=timedelta(0), missed=Missed.LATEST,
        catch_up=timedelta(hours=1), grow_limit=GrowLimit(2.0, 50))


def test_table_form_reads_every_key() -> None:
    """The inline table and the [schedule] table give the same Schedule with every key set."""
    inline = job('schedule = { cron = "0 3 * * *", timezone = "Europe/Berlin", jitter = "5m", '
                 'missed = "all", catch_up = "6h", grow_limit = { factor = 3, add = 10 } }')
    want = Schedule(cron="0 3 * * *", timezone="Europe/Berlin", jitter=timedelta(minutes=5),
                    missed=Missed.ALL, catch_up=timedelta(hours=6), grow_limit=GrowLimit(3.0, 10))
    assert parse_job(inline).schedule == want
    table = job("") + ('[schedule]\ncron = "0 3 * * *"\ntimezone = "Europe/Berlin"\njitter = "5m"\n'
                       'missed = "all"\ncatch_up = "6h"\ngrow_limit = { factor = 3, add = 10 }\n')
    assert parse_job(table).schedule == want


def test_macros_and_spacing_are_normalised() -> None:
    """@daily means 0 0 * * *; runs of spaces in an expression are one."""
    assert parse_job(job('schedule = "@daily"')).schedule == Schedule(cron="0 0 * * *")
    assert parse_job(job('schedule = " 0   3 * * MON-FRI "')).schedule == Schedule(cron="0 3 * * MON-FRI")


@pytest.mark.parametrize("cron", ["0 3 L * *", "0 3 LW * *", "0 3 * * MON#2", "0 3 * * 5L", "0 3 1 JAN *",
                                  "*/15 8-18 * * MON-FRI", "0 0,12 1,15 * *", "0 3 * * 7"])
def test_cron_features_are_accepted(cron: str) -> None:
    """Names, last day (L), last weekday (LW), nth and last weekday of the month, lists, ranges, steps."""
    assert parse_job(job(f'schedule = "{cron}"')).schedule == Schedule(cron=cron)


def test_no_schedule_is_none() -> None:
    """A job without the key has no schedule."""
    assert parse_job(job("")).schedule is None


def test_scheduled_delete_with_expect_max_is_accepted() -> None:
    """A scheduled delete bounded by expect.max validates."""
    text = job('schedule = "0 3 * * *"', action='type = "delete"', target="expect = { max = 10 }")
    assert parse_job(text).schedule == Schedule(cron="0 3 * * *")


CASES = [
    ("not-a-string", "schedule = 5",
     f"job.toml: [schedule] {CRON_HELP} or a table with cron, timezone, jitter, missed, catch_up, "
     "grow_limit; got integer 5"),
    ("fields", 'schedule = "0 3 * *"',
     f"job.toml: [schedule] {CRON_HELP}, got string '0 3 * *': 4 fields instead of 5"),
    ("seconds-field", 'schedule = "0 0 3 * * *"',
     f"job.toml: [schedule] {CRON_HELP}, got string '0 0 3 * * *': 6 fields instead of 5"),
    ("empty", 'schedule = ""', f"job.toml: [schedule] {CRON_HELP}, got string '': 0 fields instead of 5"),
    ("bad-hour", 'schedule = { cron = "0 25 * * *" }',
     f"job.toml: [schedule.cron] {CRON_HELP}, got string '0 25 * * *': bad hour '25' (accepted: 0-23, *, "
     "lists a,b, ranges a-b and steps */n)"),
    ("bad-dow", 'schedule = "0 3 * * FUN"',
     f"job.toml: [schedule] {CRON_HELP}, got string '0 3 * * FUN': bad day-of-week 'FUN' (accepted: 0-7 or "
     "SUN-SAT, with #N or L, *, lists a,b, ranges a-b and steps */n)"),
    ("impossible-day", 'schedule = "0 3 30 2 *"',
     f"job.toml: [schedule] {CRON_HELP}, got string '0 3 30 2 *': bad day-of-month '30' (accepted: 1-31, "
     "L or LW, *, lists a,b, ranges a-b and steps */n)"),
    ("macro", 'schedule = "@nightly"',
     f"job.toml: [schedule] {CRON_HELP}, got string '@nightly': unknown macro; did you mean '@midnight' or "
     "'@monthly'? accepted: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
    ("cron-type", "schedule = { cron = 3 }", f"job.toml: [schedule.cron] {CRON_HELP}, got integer 3"),
    ("cron-missing", 'schedule = { timezone = "UTC" }',
     f"job.toml: [schedule.cron] missing required key 'cron' in [schedule]: {CRON_HELP[9:]}"),
    ("unknown-key", 'schedule = { cron = "0 3 * * *", timezon = "UTC" }',
     "job.toml: [schedule.timezon] unknown key 'timezon' in [schedule]; did you mean 'timezone'? accepted: "
     "cron, timezone, jitter, missed, catch_up, grow_limit"),
    ("timezone", 'schedule = { cron = "0 3 * * *", timezone = "Berlin" }',
     'job.toml: [schedule.timezone] expected an IANA time zone name such as "Europe/Berlin", '
     "\"America/New_York\" or \"UTC\", got string 'Berlin'; did you mean 'Europe/Berlin'?"),
    ("timezone-case", 'schedule = { cron = "0 3 * * *", timezone = "europe/berlin" }',
     'job.toml: [schedule.timezone] expected an IANA time zone name such as "Europe/Berlin", '
     "\"America/New_York\" or \"UTC\", got string 'europe/berlin'; time zone names are case-sensitive: write "
     "'Europe/Berlin'"),
    ("timezone-path", 'schedule = { cron = "0 3 * * *", timezone = "../../etc/passwd" }',
     'job.toml: [schedule.timezone] expected an IANA time zone name such as "Europe/Berlin", '
     "\"America/New_York\" or \"UTC\", got string '../../etc/passwd'"),
    ("missed", 'schedule = { cron = "0 3 * * *", missed = "last" }',
     "job.toml: [schedule.missed] unknown policy 'last'; did you mean 'latest'? accepted: skip, latest, all"),
    ("catch-up-short", 'schedule = { cron = "0 3 * * *", catch_up = "30s" }',
     "job.toml: [schedule.catch_up] expected at least 1m (a slot up to 1m late is always on time), "
     "got '30s'"),
    ("catch-up-type", 'schedule = { cron = "0 3 * * *", catch_up = 6 }',
     'job.toml: [schedule.catch_up] expected a duration such as "90d", "12h", "30m" or "2w" '
     "(units: w, d, h, m, s), got integer 6"),
    ("jitter-gap", 'schedule = { cron = "*/10 * * * *", jitter = "10m" }',
     "job.toml: [schedule.jitter] expected less than the 10m between two slots of '*/10 * * * *', got '10m'"),
    ("jitter-huge", 'schedule = { cron = "0 3 1 1 *", jitter = "2d" }',
     'job.toml: [schedule.jitter] expected a duration such as "90d", "12h", "30m" or "2w" '
     "(units: w, d, h, m, s) of at most 24h, got '2d'"),
    ("grow-type", 'schedule = { cron = "0 3 * * *", grow_limit = 2 }',
     "job.toml: [schedule.grow_limit] expected a table such as { factor = 2, add = 50 }, got integer 2"),
    ("grow-factor", 'schedule = { cron = "0 3 * * *", grow_limit = { factor = 0.5 } }',
     "job.toml: [schedule.grow_limit.factor] expected a number from 1 to 1000, got float 0.5"),
    ("grow-add", 'schedule = { cron = "0 3 * * *", grow_limit = { add = -1 } }',
     "job.toml: [schedule.grow_limit.add] expected an integer from 0 to 1000000, got integer -1"),
    ("grow-key", 'schedule = { cron = "0 3 * * *", grow_limit = { times = 2 } }',
     "job.toml: [schedule.grow_limit.times] unknown key 'times' in [schedule.grow_limit]; "
     "accepted: factor, add"),
]


@pytest.mark.parametrize(("text", "message"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_schedule_errors(text: str, message: str) -> None:
    """Each malformed schedule is refused naming the key, the value and what is accepted."""
    assert error_of(job(text)) == message


@pytest.mark.parametrize("action", ['type = "delete"', 'type = "remove_tag"\nkey = "k"',
                                    'type = "remove_env"\nname = "LOG_LEVEL"'])
def test_scheduled_removal_needs_expect_max(action: str) -> None:
    """A scheduled job that removes rows is refused without expect.max, naming the action."""
    kind = action.split('"')[1]
    assert error_of(job('schedule = "0 3 * * *"', action=action)) == (
        f"job.toml: [target.expect] a scheduled {kind} runs with nobody to confirm it: set expect.max "
        "(e.g. expect = { max = 100 }) to bound how many targets one run may remove")

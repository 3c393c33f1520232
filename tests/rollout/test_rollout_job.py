"""The [rollout] table: every key read into a Rollout, every bad value refused with the key and what is
accepted, and the table carried through the plan file unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bulkops.apply.tally import Tally
from bulkops.errors import JobFileError
from bulkops.job.load import parse_job
from bulkops.job.rollout import rollout_from_json, rollout_to_json
from bulkops.journal.journal import Outcomes
from bulkops.model import (
    AbortRule,
    Action,
    ActionType,
    Approve,
    OnAbort,
    OrderKind,
    Outcome,
    Plan,
    RateForm,
    Rollout,
    RolloutOrder,
    StageSize,
)
from bulkops.plan.file import read_plan, write_plan

BASE = '''name = "j"
[target]
resource = "device"
fleet = "acme/gateway"
[action]
type = "pin"
release = "2.0.0"
[rollout]
'''
FULL = BASE + '''stages = ["5", "10%", "50%", "100%"]
order = "tag:ring=canary"
wait = "2m"
gate = "is_online eq true and overall_status eq 'operational'"
gate_timeout = "15m"
poll_every = "30s"
abort = { failure_rate = "5%", failures = 20, min_attempted = 20 }
approve = "manual"
on_abort = "undo"
stop_switch = "BULKOPS_STOP"
'''


def test_every_key_is_read() -> None:
    """The issue's example table becomes exactly this Rollout."""
    assert parse_job(FULL).rollout == Rollout(
        stages=(StageSize(count=5), StageSize(share=0.1), StageSize(share=0.5), StageSize(share=1.0)),
        order=RolloutOrder(OrderKind.TAG, key="ring", value="canary"), wait=120.0,
        gate="is_online eq true and overall_status eq 'operational'", gate_timeout=900.0, poll_every=30.0,
        abort=AbortRule(0.05, 20, 20), approve=Approve.MANUAL, on_abort=OnAbort.UNDO,
        stop_switch="BULKOPS_STOP")


def test_defaults_rate_form_and_numbers() -> None:
    """Only stages or rate is required; counts may be integers, times plain seconds, wait zero."""
    assert parse_job(BASE + 'stages = [3, "100%"]\n').rollout == Rollout(
        stages=(StageSize(count=3), StageSize(share=1.0)))
    got = parse_job(BASE + "rate = { start_per_minute = 5, growth = 2.0, grow_after = 20, "
                           "max_per_minute = 500 }\nwait = 0\npoll_every = 0.5\ngate_timeout = 3\n"
                           'order = "device_name"\ngate = "none"\n')
    assert got.rollout == Rollout(rate=RateForm(5, 2.0, 20, 500),
                                  order=RolloutOrder(OrderKind.FIELD, field="device_name"),
                                  wait=0.0, poll_every=0.5, gate_timeout=3.0, gate="none")
    assert parse_job(BASE + 'rate = { start_per_minute = 7 }\nwait = "0s"\n').rollout == Rollout(
        rate=RateForm(7, 1.0, 7, None), wait=0.0)
    assert parse_job(BASE + 'stages = ["12.5%", "100%"]\n').rollout == Rollout(
        stages=(StageSize(share=0.125), StageSize(share=1.0)))


STAGES = 'a cumulative count such as "50" or a share such as "10%" (above 0, at most 100%)'
ORDER = '"random", "tag:KEY=VALUE" (those first, then random) or a field name such as "device_name"'


@pytest.mark.parametrize(("body", "message"), [
    ("", "[rollout] missing key 'stages' (cumulative counts or shares, e.g. [\"5\", \"10%\", \"100%\"]) or "
         "'rate' (e.g. { start_per_minute = 5, growth = 2.0 })"),
    ('stages = ["100%"]\nrate = { start_per_minute = 1 }\n',
     "[rollout.rate] give either stages or rate, not both"),
    ('stagez = ["100%"]\n',
     "[rollout.stagez] unknown key 'stagez' in [rollout]; did you mean 'stages'? accepted: stages, rate, "
     "order, wait, gate, gate_timeout, poll_every, abort, approve, on_abort, stop_switch"),
    ('stages = "100%"\n',
     f"[rollout.stages] expected an array of stage sizes, each {STAGES}, got string '100%'"),
    ("stages = []\n", '[rollout.stages] expected at least one stage; the last one is "100%"'),
    ('stages = ["5", "10 %", "100%"]\n', f"[rollout.stages[1]] expected {STAGES}, got string '10 %'"),
    ("stages = [" + ", ".join(str(n) for n in range(1, 101)) + ', "100%"]\n',
     "[rollout.stages] expected at most 100 stages, got 101"),
    ('stages = [0, "100%"]\n', f"[rollout.stages[0]] expected {STAGES}, got integer 0"),
    ('stages = ["0%", "100%"]\n', f"[rollout.stages[0]] expected {STAGES}, got string '0%'"),
    ('stages = ["150%"]\n', f"[rollout.stages[0]] expected {STAGES}, got string '150%'"),
    ('stages = [true, "100%"]\n', f"[rollout.stages[0]] expected {STAGES}, got boolean true"),
    ('stages = ["50%", "10%", "100%"]\n',
     "[rollout.stages[1]] stages are cumulative and must grow: '10%' does not come after '50%'"),
    ('stages = ["20", "10", "100%"]\n',
     "[rollout.stages[1]] stages are cumulative and must grow: '10' does not come after '20'"),
    ('stages = ["5", "50%"]\n',
     '[rollout.stages[1]] the last stage must be "100%" (every target), got \'50%\''),
    ("rate = { growth = 2.0 }\n",
     "[rollout.rate.start_per_minute] missing required key 'start_per_minute' in [rollout.rate]"),
    ("rate = { start_per_minute = 0 }\n",
     "[rollout.rate.start_per_minute] expected an integer between 1 and 1000000, got 0"),
    ("rate = { start_per_minute = 5, growth = 0.5 }\n",
     "[rollout.rate.growth] expected a number from 1.0 (a constant rate) to 10, got float 0.5"),
    ("rate = { start_per_minute = 5, max_per_minute = 2 }\n",
     "[rollout.rate.max_per_minute] max_per_minute (2) is below start_per_minute (5)"),
    ("rate = { start_per_minute = 5, per_hour = 2 }\n",
     "[rollout.rate.per_hour] unknown key 'per_hour' in [rollout.rate]; accepted: start_per_minute, growth, "
     "grow_after, max_per_minute"),
    ('stages = ["100%"]\norder = "tag:ring"\n',
     "[rollout.order] expected tag:KEY=VALUE such as \"tag:ring=canary\", got string 'tag:ring'"),
    ('stages = ["100%"]\norder = "tag:io.balena.x=1"\n',
     "[rollout.order] invalid tag key 'io.balena.x' in 'tag:io.balena.x=1': Tag keys beginning with "
     "io.balena. are reserved."),
    ('stages = ["100%"]\norder = "devce_name"\n',
     f"[rollout.order] expected {ORDER}, got string 'devce_name': device has no field 'devce_name'; did you "
     "mean 'device_name'?"),
    ('stages = ["100%"]\nwait = "2 minutes"\n',
     '[rollout.wait] expected a duration such as "90d", "12h", "30m" or "2w" (units: w, d, h, m, s) or a '
     "number of seconds, got string '2 minutes'"),
    ('stages = ["100%"]\ngate_timeout = 0\n',
     "[rollout.gate_timeout] expected a positive number of seconds, got 0"),
    ('stages = ["100%"]\ngate_timeout = "1m"\npoll_every = "2m"\n',
     "[rollout.poll_every] poll_every (120s) is longer than gate_timeout (60s)"),
    ('stages = ["100%"]\ngate = "is_onlin eq true"\n',
     "[rollout.gate] unknown field or navigation 'is_onlin' on resource 'device'; did you mean 'is_online'? "
     "(in the filter)"),
    ('stages = ["100%"]\ngate = "is_online eq"\n',
     "[rollout.gate] filter syntax error: expected a value after 'eq' at position 12: is_online eq⟶"),
    ('stages = ["100%"]\ngate = " "\n',
     '[rollout.gate] expected "default", "none" or an OData filter on device, got an empty string'),
    ('stages = ["100%"]\nabort = { failure_rate = "5 %" }\n',
     "[rollout.abort.failure_rate] expected a share such as \"5%\" or 0.05 (0 to 100%), got string '5 %'"),
    ('stages = ["100%"]\nabort = { failures = -1 }\n',
     "[rollout.abort.failures] expected an integer between 0 and 1000000000, got -1"),
    ('stages = ["100%"]\nabort = { min_attempted = 0 }\n',
     "[rollout.abort.min_attempted] expected an integer between 1 and 1000000000, got 0"),
    ('stages = ["100%"]\nabort = { rate = "5%" }\n',
     "[rollout.abort.rate] unknown key 'rate' in [rollout.abort]; accepted: failure_rate, failures, "
     "min_attempted"),
    ('stages = ["100%"]\napprove = "yes"\n',
     "[rollout.approve] expected one of 'auto', 'manual', got string 'yes'"),
    ('stages = ["100%"]\non_abort = "rollback"\n',
     "[rollout.on_abort] expected one of 'stop', 'undo', got string 'rollback'"),
    ('stages = ["100%"]\nstop_switch = "STOP-NOW"\n',
     "[rollout.stop_switch] invalid env var name 'STOP-NOW': Environment variable names can only contain "
     "alphanumeric characters and underscores."),
    ('stages = ["100%"]\nstop_switch = "BALENA_STOP"\n',
     "[rollout.stop_switch] the stop switch is a fleet env var; 'BALENA_STOP' is a config variable name "
     '(BALENA_/RESIN_): choose another name, e.g. "BULKOPS_STOP"'),
])
def test_bad_values_name_the_key_and_what_is_accepted(body: str, message: str) -> None:
    """Each bad [rollout] value is a JobFileError naming the file, the dotted key and what is accepted."""
    with pytest.raises(JobFileError) as info:
        parse_job(BASE + body, path="job.toml")
    assert str(info.value) == f"job.toml: {message}"


def test_delete_rollouts_take_no_gate_and_no_undo() -> None:
    """A delete cannot be gated on the devices it removes, nor undone."""
    delete = BASE.replace('type = "pin"\nrelease = "2.0.0"', 'type = "delete"')
    assert parse_job(delete + 'stages = ["100%"]\ngate = "none"\n').rollout is not None
    for extra, message in [
        ('gate = "is_online eq true"\n',
         '[rollout.gate] a gate reads the devices of a stage, which a delete removes: write gate = "none"'),
        ('on_abort = "undo"\n',
         '[rollout.on_abort] deleted devices cannot be restored, so a delete cannot be undone: write '
         'on_abort = "stop"'),
    ]:
        with pytest.raises(JobFileError) as info:
            parse_job(delete + 'stages = ["100%"]\n' + extra, path="job.toml")
        assert str(info.value) == f"job.toml: {message}"


def test_rollout_survives_the_plan_file(tmp_path: Path) -> None:
    """The plan file carries the rollout and every item's stage; a plan without one reads back None."""
    rollout = parse_job(FULL).rollout
    assert rollout is not None
    assert rollout_from_json(rollout_to_json(rollout)) == rollout
    rate = Rollout(rate=RateForm(5, 1.5, 10, 100))
    assert rollout_from_json(rollout_to_json(rate)) == rate
    plan = Plan(job_name="j", job_path="", job_fingerprint="", api_url="http://127.0.0.1:1",
                created_at=datetime(2026, 1, 1, tzinfo=UTC), target_resource="device", compiled_filter="",
                action=Action(ActionType.PIN, release="2.0.0"), items=(), population=0, rollout=rollout)
    write_plan(plan, tmp_path / "p.json")
    assert read_plan(tmp_path / "p.json").rollout == rollout
    write_plan(Plan(**{**{f: getattr(plan, f) for f in Plan.__dataclass_fields__}, "rollout": None}),
               tmp_path / "q.json")
    assert read_plan(tmp_path / "q.json").rollout is None


def test_abort_rule_arithmetic() -> None:
    """The rule trips when failures > max(failures, failure_rate x attempted) once min_attempted is
    reached; the default trips at the first failure."""
    default = Tally(AbortRule())
    assert default.crossed() is None
    default.count([Outcomes(0, Outcome.APPLIED)])
    assert default.crossed() is None
    default.count([Outcomes(1, Outcome.FAILED)])
    assert default.crossed() == "failures 1 > max(0, 0% of 2 attempted)"
    rule = Tally(AbortRule(failure_rate=0.05, failures=2, min_attempted=20), attempted=19, failures=10)
    assert rule.crossed() is None  # not enough attempted yet
    rule.attempted = 100
    assert (rule.allowed(), rule.crossed()) == (5, "failures 10 > max(2, 5% of 100 attempted)")
    rule.failures = 5
    assert rule.crossed() is None
    drifted = Tally(AbortRule())
    drifted.count([Outcomes(0, Outcome.DRIFTED), Outcomes(1, Outcome.NOOP),
                   Outcomes(2, Outcome.NOT_ATTEMPTED)])
    assert (drifted.attempted, drifted.failures) == (2, 0)

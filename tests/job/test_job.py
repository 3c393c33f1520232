"""Job files that load: what each key becomes in the Job, and the rules on values and names."""

from __future__ import annotations

import hashlib
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from bulkops.errors import JobFileError
from bulkops.job.load import load_job, parse_job, read_job, read_job_text, release_kind
from bulkops.model import ActionType, ApplyOptions, Expect, Rollout, Schedule, StageSize

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def env_job(value: str, name: str = "LOG_LEVEL", kind: str = "set_env") -> str:
    return (
        f'name = "j"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n'
        f'[action]\ntype = "{kind}"\nname = "{name}"\nvalue = {value}\n'
    )


def target_job(target: str, action: str = 'type = "delete"') -> str:
    return f'name = "j"\n[target]\nresource = "device"\n{target}\n[action]\n{action}\n'


@pytest.mark.parametrize("raw", ['"0123"', '"1.10"', '"no"', '"true"', '""', "'it\"s'", '"%&#+ ünï 🚀"'])
def test_quoted_values_stay_strings(raw: str) -> None:
    """Quoted env var values are kept exactly as written, never reinterpreted."""
    job = parse_job(env_job(raw))
    assert job.action.value == tomllib.loads(f"v = {raw}")["v"]
    assert isinstance(job.action.value, str)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("123", 'expected a string, got integer 123; env var values are strings: write value = "123"'),
        ("1.10", 'expected a string, got float 1.1; env var values are strings: write value = "1.10"'),
        ("true", 'expected a string, got boolean true; env var values are strings: write value = "true"'),
        ("0x1F", 'expected a string, got integer 31; env var values are strings: write value = "0x1F"'),
        ("1979-05-27", 'expected a string, got date 1979-05-27; env var values are strings: write value ='
                       ' "1979-05-27"'),
        ('["a"]', "expected a string, got array"),
        ("{ a = 1 }", "expected a string, got table"),
    ],
)
def test_unquoted_values_are_refused_with_the_quoted_spelling(raw: str, shown: str) -> None:
    """A non-string env var value is refused, and the hint repeats the user's own spelling quoted."""
    with pytest.raises(JobFileError) as info:
        parse_job(env_job(raw), path="j.toml")
    assert str(info.value) == f"j.toml: [action.value] {shown}"


def test_tag_value_must_be_a_string() -> None:
    """Tag values follow the same rule as env var values."""
    text = target_job('fleet = "a/b"', 'type = "set_tag"\nkey = "ring"\nvalue = 1_234')
    with pytest.raises(JobFileError) as info:
        parse_job(text, path="j.toml")
    assert str(info.value) == (
        'j.toml: [action.value] expected a string, got integer 1234; tag values are strings: write value ='
        ' "1_234"'
    )


@pytest.mark.parametrize(
    ("prefix", "routed"), [("BALENA_", ActionType.SET_CONFIG), ("RESIN_", ActionType.SET_CONFIG)]
)
def test_config_names_are_routed_to_set_config(prefix: str, routed: ActionType) -> None:
    """set_env with a BALENA_/RESIN_ name becomes set_config, and a note says so for the preview."""
    loaded = read_job_text(env_job('"600000"', name=f"{prefix}SUPERVISOR_POLL_INTERVAL"))
    assert loaded.job.action.type is routed
    assert loaded.job.action.name == f"{prefix}SUPERVISOR_POLL_INTERVAL"
    assert loaded.notes == (
        f"set_env {prefix}SUPERVISOR_POLL_INTERVAL runs as set_config: names starting with BALENA_ or RESIN_"
        " are config variables (device_config_variable)",
    )


def test_remove_env_of_config_name_is_routed_on_fleets() -> None:
    """remove_env of a RESIN_ name on a fleet target becomes remove_config on the fleet's config vars."""
    text = (
        'name = "j"\n[target]\nresource = "fleet"\nfleet = "a/b"\n[action]\ntype = "remove_env"\nname ='
        ' "RESIN_X"\n'
    )
    loaded = read_job_text(text)
    assert loaded.job.target.resource == "application"
    assert loaded.job.action.type is ActionType.REMOVE_CONFIG
    assert loaded.notes == (
        "remove_env RESIN_X runs as remove_config: names starting with BALENA_ or RESIN_ are config variables"
        " (application_config_variable)",
    )


def test_plain_env_name_has_no_note() -> None:
    """An ordinary env var name is not routed and leaves no note."""
    loaded = read_job_text(env_job('"debug"'))
    assert loaded.job.action.type is ActionType.SET_ENV
    assert loaded.notes == ()


def test_lower_case_balena_prefix_is_an_env_var() -> None:
    """Routing is by the exact upper-case prefix, as balena's rule is."""
    assert parse_job(env_job('"1"', name="balena_thing")).action.type is ActionType.SET_ENV


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_offline_for_durations(text: str, span: timedelta) -> None:
    """offline_for accepts a number with a unit (w, d, h, m, s), or a sum of them."""
    job = parse_job(target_job(f'offline_for = "{text}"'))
    assert job.target.offline_for == span
    assert job.target.fleets == ()


@pytest.mark.parametrize("text", ["90", "d90", "90D", "1.5d", "-1d", "90d ", "999999999w"])
def test_offline_for_refuses_other_spellings(text: str) -> None:
    """Anything but <digits><unit>… (or past 100 years) is refused rather than guessed."""
    with pytest.raises(JobFileError) as info:
        parse_job(target_job(f'offline_for = "{text}"'), path="j.toml")
    assert info.value.key == "target.offline_for"


@pytest.mark.parametrize(
    ("inline", "expect"),
    [
        ("{ min = 1, max = 500 }", Expect(min=1, max=500)),
        ('{ max_share = "10%" }', Expect(max_share=0.1)),
        ('{ max_share = "12.5%" }', Expect(max_share=0.125)),
        ("{ max_share = 0.1 }", Expect(max_share=0.1)),
        ("{ max_share = 1 }", Expect(max_share=1.0)),
        ("{ min = 0, max = 0 }", Expect(min=0, max=0)),
        ("{}", Expect()),
    ],
)
def test_expect_forms(inline: str, expect: Expect) -> None:
    """expect takes min, max and max_share as a percentage string or a fraction."""
    assert parse_job(target_job(f'fleet = "a/b"\nexpect = {inline}')).target.expect == expect


def test_expect_as_a_table() -> None:
    """expect may also be written as its own [target.expect] table."""
    text = (
        'name = "j"\n[target]\nresource = "device"\nfleet = "a/b"\n[target.expect]\nmax ='
        ' 3\n[action]\ntype = "delete"\n'
    )
    assert parse_job(text).target.expect == Expect(max=3)


def test_allowlist_admits_its_fleets() -> None:
    """Target fleets and a move destination inside allow_fleets pass, and the list is kept for plan/apply."""
    text = (
        'name = "j"\nallow_fleets = ["acme/gateway", "acme/gateway-next"]\n[target]\nresource = "device"\n'
        'fleet = "acme/gateway"\n[action]\ntype = "move"\nto_fleet = "acme/gateway-next"\n'
    )
    job = parse_job(text)
    assert job.allow_fleets == ("acme/gateway", "acme/gateway-next")
    assert job.action.to_fleet == "acme/gateway-next"


def test_allowlist_with_filter_only_target() -> None:
    """A filter-only target is allowed with an allowlist: the planner checks each row's fleet."""
    job = parse_job('allow_fleets = ["a/b"]\n' + target_job("filter = \"is_online eq false\""))
    assert job.allow_fleets == ("a/b",)
    assert job.target.fleets == ()


def test_fleet_alias_and_fleets_list() -> None:
    """resource = "fleet" is the application resource; fleets keeps its order."""
    text = (
        'name = "j"\n[target]\nresource = "fleet"\nfleets = ["c/d", "a/b"]\n[action]\ntype ='
        ' "pin"\nrelease = "2.0.0"\n'
    )
    job = parse_job(text)
    assert job.target.resource == "application"
    assert job.target.fleets == ("c/d", "a/b")


@pytest.mark.parametrize(
    ("ref", "kind"),
    [("1.5.0", "semver"), ("2.0.0-rc.1+build.5", "semver"), ("a1b2c3d", "commit"), ("0" * 40, "commit")],
)
def test_pin_release_forms(ref: str, kind: str) -> None:
    """pin takes a semver or a commit in one key, and release_kind tells the planner which."""
    job = parse_job(target_job('fleet = "a/b"', f'type = "pin"\nrelease = "{ref}"'))
    assert job.action.release == ref
    assert release_kind(ref) == kind


def test_patch_fields_are_typed_and_clear_sets_null() -> None:
    """patch converts date-times to UTC text, keeps typed values, and maps clear to None."""
    action = (
        'type = "patch"\nfields = { note = "x", is_locked_until__date = 2026-01-01T02:00:00+02:00, cpu_temp'
        ' = 3,'
        ' is_online = false, update_status = "done" }\nclear = ["local_id"]'
    )
    job = parse_job(target_job('fleet = "a/b"', action))
    assert dict(job.action.fields) == {
        "note": "x",
        "is_locked_until__date": "2026-01-01T00:00:00.000Z",
        "cpu_temp": 3,
        "is_online": False,
        "update_status": "done",
        "local_id": None,
    }


PATCH_ERRORS = [
    ("{}", "[action] patch needs at least one field: fields = { note = \"...\" } or clear = [\"note\"]"),
    ('{ nots = "x" }', "[action.fields.nots] unknown field 'nots' on resource 'device'; did you mean"
                       " 'note'?"),
    ('{ overall_status = "x" }',
     "[action.fields.overall_status] field 'overall_status' on resource 'device' is read-only (set by the"
     " API)"),
    ("{ id = 5 }", "[action.fields.id] field 'id' on resource 'device' is read-only (set by the API)"),
    ("{ is_running__release = 5 }",
     "[action.fields.is_running__release] field 'is_running__release' references another resource by id;"
     " patch does not set references"),
    ("{ belongs_to__application = 5 }",
     "[action.fields.belongs_to__application] field 'belongs_to__application' is not patched directly: use"
     ' type = "move" with to_fleet'),
    ("{ is_pinned_on__release = 5 }",
     "[action.fields.is_pinned_on__release] field 'is_pinned_on__release' is not patched directly: use"
     ' type = "pin" or type = "unpin"'),
    ('{ uuid = "x" }',
     "[action.fields.uuid] field 'uuid' is unique per device: one value cannot be written to many rows"),
    ('{ is_online = "yes" }',
     "[action.fields.is_online] expected a boolean (true or false) for boolean field 'is_online', got"
     " string 'yes'"),
    ("{ cpu_temp = true }", "[action.fields.cpu_temp] expected an integer for integer field 'cpu_temp', got"
                            " boolean true"),
    ("{ cpu_temp = 1.5 }", "[action.fields.cpu_temp] expected an integer for integer field 'cpu_temp', got"
                           " float 1.5"),
    ("{ note = 5 }", "[action.fields.note] expected a string for text field 'note', got integer 5"),
    ('{ update_status = "bogus" }',
     "[action.fields.update_status] expected one of rejected, downloading, downloaded, applying changes,"
     " aborted,"
     " done, got string 'bogus'"),
    (f'{{ status = "{"s" * 51}" }}', "[action.fields.status] expected at most 50 characters, got 51"),
    ('{ device_name = "a\\nb" }', "[action.fields.device_name] device names cannot contain line breaks"),
    ("{ is_locked_until__date = 2026-01-01T00:00:00 }",
     "[action.fields.is_locked_until__date] expected a date-time with a UTC offset, e.g."
     " 2026-01-31T00:00:00Z,"
     " got a date-time without an offset"),
    ('{ is_locked_until__date = "2026-01-01" }',
     "[action.fields.is_locked_until__date] expected a date-time with a UTC offset, e.g."
     " 2026-01-31T00:00:00Z for"
     " datetime field 'is_locked_until__date', got string '2026-01-01'"),
]


@pytest.mark.parametrize(("fields", "message"), PATCH_ERRORS)
def test_patch_field_errors(fields: str, message: str) -> None:
    """Each patch field is checked against the v7 model: exists, writable, of the right type."""
    with pytest.raises(JobFileError) as info:
        parse_job(target_job('fleet = "a/b"', f'type = "patch"\nfields = {fields}'), path="j.toml")
    assert str(info.value) == f"j.toml: {message}"


@pytest.mark.parametrize(
    ("clear", "message"),
    [
        ('["device_name"]', "[action.clear[0]] field 'device_name' on resource 'device' cannot be null"),
        ('["note", "note"]', "[action.clear[1]] field 'note' is listed twice; clear it or set it, not both"),
        ('"note"', "[action.clear] expected an array of strings, got string 'note'"),
    ],
)
def test_patch_clear_errors(clear: str, message: str) -> None:
    """clear names nullable writable fields, each once, and not also set in fields."""
    with pytest.raises(JobFileError) as info:
        parse_job(target_job('fleet = "a/b"', f'type = "patch"\nclear = {clear}'), path="j.toml")
    assert str(info.value) == f"j.toml: {message}"


def test_patch_both_set_and_cleared() -> None:
    """A field both set and cleared is refused."""
    action = 'type = "patch"\nfields = { note = "x" }\nclear = ["note"]'
    with pytest.raises(JobFileError) as info:
        parse_job(target_job('fleet = "a/b"', action), path="j.toml")
    assert str(info.value) == (
        "j.toml: [action.clear[0]] field 'note' is set in fields; clear it or set it,"
        " not both"
    )


def test_patch_on_fleets_checks_application_fields() -> None:
    """A fleet patch is checked against the application resource's fields."""
    text = (
        'name = "j"\n[target]\nresource = "fleet"\nfleet = "a/b"\n[action]\ntype = "patch"\nfields = {'
        ' is_archived = true }\n'
    )
    assert dict(parse_job(text).action.fields) == {"is_archived": True}
    with pytest.raises(JobFileError) as info:
        parse_job(text.replace("is_archived", "slug"), path="j.toml")
    assert str(info.value) == (
        "j.toml: [action.fields.slug] field 'slug' on resource 'application' is"
        " read-only (set by the API)"
    )


def test_options_defaults_and_values() -> None:
    """[options] fills ApplyOptions; durations take units or seconds; absent keys keep the defaults."""
    text = env_job('"x"') + (
        '[options]\nbatch_size = 50\nmax_retry_after = "5m"\nrequest_timeout = 12.5\nmax_plan_age = "2h"\n'
        "confirm_threshold = 0\n"
    )
    options = parse_job(text).options
    assert options == ApplyOptions(
        batch_size=50, max_retry_after=300.0, request_timeout=12.5, max_plan_age=timedelta(hours=2),
        confirm_threshold=0,
    )
    assert parse_job(env_job('"x"')).options == ApplyOptions()


def test_rollout_and_schedule_tables_parsed() -> None:
    """[rollout] parses to a Rollout and [schedule] to a Schedule; allow_reserved changes nothing."""
    text = env_job('"x"') + '[rollout]\nstages = ["5%", "100%"]\n[schedule]\ncron = "0 3 * * *"\n'
    job = read_job_text(text, allow_reserved=True).job
    assert job.rollout == Rollout(stages=(StageSize(share=0.05), StageSize(share=1.0)))
    assert job.schedule == Schedule(cron="0 3 * * *")
    assert parse_job(env_job('"x"')).rollout is None


def test_fingerprint_is_sha256_of_file_bytes(tmp_path: Path) -> None:
    """load_job records the path and the sha256 of the file's exact bytes."""
    data = env_job('"debug"').encode()
    path = tmp_path / "j.toml"
    path.write_bytes(data)
    job = load_job(path)
    assert job.fingerprint == hashlib.sha256(data).hexdigest()
    assert job.path == str(path)
    assert parse_job(data.decode()).fingerprint == job.fingerprint


def test_missing_file(tmp_path: Path) -> None:
    """A file that cannot be read is a JobFileError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(JobFileError) as info:
        load_job(path)
    assert str(info.value) == f"{path}: cannot read the job file: No such file or directory"


def test_non_utf8_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are refused with the offset of the first bad byte."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "j\xff"\n')
    with pytest.raises(JobFileError) as info:
        load_job(path)
    assert str(info.value) == f"{path}: not UTF-8 text: byte 9 cannot be decoded"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte order mark at the start of the file is skipped."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + env_job('"x"').encode())
    assert load_job(path).name == "j"


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.toml")), ids=lambda p: p.name)
def test_example_jobs_validate(path: Path) -> None:
    """Every example in jobs/ loads, and its name is its file name."""
    job = read_job(path).job
    assert job.name == path.stem
    assert job.description


def test_example_jobs_cover_every_use() -> None:
    """jobs/ holds the ten documented examples, one per use case."""
    names = {p.stem for p in JOBS.glob("*.toml")}
    assert names >= {
        "debug-logging-on-canaries", "log-level-fleetwide", "remove-debug-flag", "tag-canaries",
        "drop-ring-tags",
        "migrate-gateways", "pin-canaries", "cleanup-offline", "note-patch", "supervisor-poll",
    }
    kinds = {load_job(JOBS / f"{n}.toml").action.type for n in names}
    assert kinds >= {
        ActionType.SET_ENV, ActionType.REMOVE_ENV, ActionType.SET_TAG, ActionType.REMOVE_TAG, ActionType.MOVE,
        ActionType.PIN, ActionType.DELETE, ActionType.PATCH, ActionType.SET_CONFIG,
    }

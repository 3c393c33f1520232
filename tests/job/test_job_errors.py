"""Every job-file validation error, with its exact message (file, dotted key, what is accepted)."""

from __future__ import annotations

import pytest

from bulkops.errors import ExitCode, JobFileError
from bulkops.job.load import parse_job

BASE = """name = "j"
[target]
resource = "device"
fleet = "acme/gateway"
[action]
type = "set_env"
name = "LOG_LEVEL"
value = "debug"
"""


def job(
    target: str = 'resource = "device"\nfleet = "a/b"', action: str = 'type = "delete"', top: str = ""
) -> str:
    return f'name = "j"\n{top}\n[target]\n{target}\n[action]\n{action}\n'


def error_of(text: str) -> JobFileError:
    with pytest.raises(JobFileError) as info:
        parse_job(text, path="job.toml")
    return info.value


ACCEPTED_TYPES = (
    "patch, delete, set_env, remove_env, set_config, remove_config, set_tag, remove_tag, move, pin, unpin"
)
SLUG_HELP = "expected a fleet slug '<organization handle>/<fleet name>' in lower case, e.g. 'acme/gateway'"
DURATION = 'expected a duration such as "90d", "12h", "30m" or "2w" (units: w, d, h, m, s)'

CASES: list[tuple[str, str, str]] = [
    # --- TOML itself ---
    ("syntax", 'name = "j"\n[target\n',
     "job.toml: TOML syntax error at line 2, column 8: Expected ']' at the end of a table declaration"),
    ("syntax-eof", 'name = """j', "job.toml: TOML syntax error at the end of the file: Unterminated string"),
    ("duplicate-key", 'name = "a"\nname = "b"\n',
     "job.toml: TOML syntax error at line 2, column 11: Cannot overwrite a value"),
    ("too-deep", "a = " + "[" * 5000 + "]" * 5000,
     "job.toml: TOML syntax error: arrays or tables nested too deeply"),
    ("huge-int", "a = " + "1" * 5000,
     "job.toml: TOML value not accepted: Exceeds the limit (4300 digits) for integer string conversion:"
     " value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
    # --- unknown keys, at every level ---
    ("unknown-top", 'nmae = "x"\n' + BASE,
     "job.toml: [nmae] unknown key 'nmae' at the top level; did you mean 'name'? accepted: name, description,"
     " allow_fleets, target, action, options, rollout, schedule"),
    ("unknown-target", BASE.replace("fleet =", "fleeet ="),
     "job.toml: [target.fleeet] unknown key 'fleeet' in [target]; did you mean 'fleet' or 'fleets'? accepted:"
     " resource, fleet, fleets, filter, offline_for, expect"),
    ("unknown-target-far", job('resource = "device"\nfleet = "a/b"\nzzz = 1'),
     "job.toml: [target.zzz] unknown key 'zzz' in [target]; accepted: resource, fleet, fleets, filter,"
     " offline_for, expect"),
    ("unknown-action", BASE + 'nmae = "x"\n',
     "job.toml: [action.nmae] unknown key 'nmae' in [action]; did you mean 'name'? accepted for action type"
     " 'set_env': type, name, value"),
    ("unknown-expect", job('resource = "device"\nfleet = "a/b"\nexpect = { mn = 1 }'),
     "job.toml: [target.expect.mn] unknown key 'mn' in [target.expect]; did you mean 'min'? accepted: min,"
     " max, max_share"),
    ("unknown-option", BASE + "[options]\nbatchsize = 5\n",
     "job.toml: [options.batchsize] unknown key 'batchsize' in [options]; did you mean 'batch_size'?"
     " accepted:"
     " batch_size, max_retry_after, max_attempts, max_retry_time, request_timeout, max_concurrency,"
     " max_plan_age, confirm_threshold"),
    # --- missing keys and wrong types ---
    ("missing-name", BASE.replace('name = "j"\n', ""),
     "job.toml: [name] missing required key 'name' at the top level"),
    ("missing-target", 'name = "j"\n[action]\ntype = "delete"\n', "job.toml: [target] missing required"
                                                                  " table [target]"),
    ("missing-action", 'name = "j"\n[target]\nresource = "device"\nfleet = "a/b"\n',
     "job.toml: [action] missing required table [action]"),
    ("missing-resource", job('fleet = "a/b"'), "job.toml: [target.resource] missing required key 'resource'"
                                               " in [target]"),
    ("missing-type", job(action='name = "X"'), "job.toml: [action.type] missing required key 'type' in"
                                               " [action]"),
    ("missing-value", job(action='type = "set_env"\nname = "X"'),
     "job.toml: [action.value] missing required key 'value' in [action]"),
    ("target-not-table", 'name = "j"\ntarget = 5\n[action]\ntype = "delete"\n',
     "job.toml: [target] expected a table, got integer 5"),
    ("name-type", BASE.replace('name = "j"', "name = 5"), "job.toml: [name] expected a string, got integer"
                                                          " 5"),
    ("name-chars", BASE.replace('name = "j"', 'name = "my job!"'),
     "job.toml: [name] expected 1-100 letters, digits, '.', '_' or '-' (starting with a letter or digit),"
     " e.g. name = \"debug-logging-on-canaries\", got string 'my job!'"),
    ("description-type", 'description = ["x"]\n' + BASE, "job.toml: [description] expected a string, got"
                                                         " array"),
    # --- target ---
    ("resource-unknown", BASE.replace('"device"', '"devices"'),
     "job.toml: [target.resource] unknown resource 'devices'; did you mean 'device'? accepted: device,"
     " application (alias: fleet)"),
    ("resource-not-target", BASE.replace('"device"', '"release"'),
     "job.toml: [target.resource] resource 'release' cannot be a job target; accepted: device, application"
     " (alias: fleet)"),
    ("slug-upper", BASE.replace('"acme/gateway"', '"Acme/Gateway"'),
     f"job.toml: [target.fleet] {SLUG_HELP}, got string 'Acme/Gateway'; slugs are lower case: write"
     " 'acme/gateway'"),
    ("slug-shape", BASE.replace('"acme/gateway"', '"gateway"'), f"job.toml: [target.fleet] {SLUG_HELP}, got"
                                                                " string 'gateway'"),
    ("fleet-and-fleets", job('resource = "device"\nfleet = "a/b"\nfleets = ["c/d"]'),
     "job.toml: [target.fleets] give either fleet or fleets, not both"),
    ("fleets-twice", job('resource = "device"\nfleets = ["a/b", "a/b"]'),
     "job.toml: [target.fleets[1]] fleet 'a/b' is listed twice"),
    ("fleets-item-type", job('resource = "device"\nfleets = ["a/b", 3]'),
     "job.toml: [target.fleets[1]] expected a string, got integer 3"),
    ("fleets-empty", job('resource = "device"\nfleets = []'), "job.toml: [target.fleets] expected at least"
                                                              " one fleet slug"),
    ("no-selector", job('resource = "device"'),
     "job.toml: [target] no selector: give fleet, fleets, filter or offline_for (a job never targets"
     " everything"
     " by default)"),
    ("offline-text", job('resource = "device"\noffline_for = "90 days"'),
     f"job.toml: [target.offline_for] {DURATION}, got string '90 days'"),
    ("offline-number", job('resource = "device"\noffline_for = 90'),
     f"job.toml: [target.offline_for] {DURATION}, got integer 90"),
    ("offline-zero", job('resource = "device"\noffline_for = "0d"'),
     "job.toml: [target.offline_for] expected a duration above zero, got '0d'"),
    ("offline-fleet", job('resource = "fleet"\noffline_for = "90d"', 'type = "pin"\nrelease = "1.5.0"'),
     "job.toml: [target.offline_for] offline_for applies to devices only"),
    ("expect-order", job('resource = "device"\nfleet = "a/b"\nexpect = { min = 5, max = 1 }'),
     "job.toml: [target.expect.min] min (5) is above max (1)"),
    ("expect-negative", job('resource = "device"\nfleet = "a/b"\nexpect = { min = -1 }'),
     "job.toml: [target.expect.min] expected an integer at least 0, got -1"),
    ("expect-bool", job('resource = "device"\nfleet = "a/b"\nexpect = { max = true }'),
     "job.toml: [target.expect.max] expected an integer, got boolean true"),
    ("expect-share-over", job('resource = "device"\nfleet = "a/b"\nexpect = { max_share = "110%" }'),
     "job.toml: [target.expect.max_share] expected a share such as \"10%\" or 0.1 (above 0, at most 100%),"
     " got string '110%'"),
    ("expect-share-zero", job('resource = "device"\nfleet = "a/b"\nexpect = { max_share = 0 }'),
     "job.toml: [target.expect.max_share] expected a share such as \"10%\" or 0.1 (above 0, at most 100%),"
     " got integer 0"),
    ("expect-not-table", job('resource = "device"\nfleet = "a/b"\nexpect = 5'),
     "job.toml: [target.expect] expected a table, got integer 5"),
    # --- action: type and keys ---
    ("type-typo", BASE.replace('"set_env"', '"set_envs"'),
     f"job.toml: [action.type] unknown action type 'set_envs'; did you mean 'set_env'? accepted:"
     f" {ACCEPTED_TYPES}"),
    ("type-unknown", BASE.replace('"set_env"', '"frobnicate"'),
     f"job.toml: [action.type] unknown action type 'frobnicate'; accepted: {ACCEPTED_TYPES}"),
    ("key-of-other-type", BASE.replace('"set_env"', '"remove_env"'),
     "job.toml: [action.value] 'value' does not apply to action type 'remove_env' (it belongs to set_env,"
     " set_config, set_tag); accepted for remove_env: type, name"),
    ("key-for-delete", job(action='type = "delete"\nto_fleet = "a/c"'),
     "job.toml: [action.to_fleet] 'to_fleet' does not apply to action type 'delete' (it belongs to move);"
     " accepted for delete: type"),
    ("move-fleet", job('resource = "fleet"\nfleet = "a/b"', 'type = "move"\nto_fleet = "c/d"'),
     "job.toml: [action.type] action type 'move' applies to devices only"),
    ("unpin-fleet", job('resource = "fleet"\nfleet = "a/b"', 'type = "unpin"'),
     "job.toml: [action.type] action type 'unpin' applies to devices only; to make fleets follow their latest"
     " release, patch should_track_latest_release = true"),
    ("delete-fleet", job('resource = "application"\nfleet = "a/b"', 'type = "delete"'),
     "job.toml: [action.type] deleting fleets is not supported: it would delete every device and release in"
     " them"),
    ("move-slug", job(action='type = "move"\nto_fleet = "Other"'),
     f"job.toml: [action.to_fleet] {SLUG_HELP}, got string 'Other'"),
    ("pin-release", job(action='type = "pin"\nrelease = "v1.5"'),
     "job.toml: [action.release] expected a release semver such as \"1.5.0\" or a commit (7-40 lower-case hex"
     " characters), got string 'v1.5'"),
    # --- env vars, config vars, tags ---
    ("env-name-chars", BASE.replace('"LOG_LEVEL"', '"LOG-LEVEL"'),
     "job.toml: [action.name] invalid env var name 'LOG-LEVEL': Environment variable names can only contain"
     " alphanumeric characters and underscores."),
    ("env-name-digit", BASE.replace('"LOG_LEVEL"', '"1LOG"'),
     "job.toml: [action.name] invalid env var name '1LOG': Environment variable names can only contain"
     " alphanumeric characters and underscores."),
    ("env-name-empty", BASE.replace('"LOG_LEVEL"', '""'), "job.toml: [action.name] env var names cannot be"
                                                          " empty"),
    ("env-name-reserved", BASE.replace('"LOG_LEVEL"', '"USER"'),
     "job.toml: [action.name] invalid env var name 'USER': Environment variables RESIN, BALENA, USER are"
     " reserved"),
    ("env-name-long", BASE.replace('"LOG_LEVEL"', '"' + "A" * 256 + '"'),
     "job.toml: [action.name] env var names are at most 255 characters, got 256"),
    ("config-without-prefix", BASE.replace('"set_env"', '"set_config"'),
     "job.toml: [action.name] config variable names start with BALENA_ or RESIN_, got 'LOG_LEVEL'; for an"
     " environment variable write type = \"set_env\""),
    ("config-name-chars", BASE.replace('"LOG_LEVEL"', '"BALENA_A-B"'),
     "job.toml: [action.name] invalid config variable name 'BALENA_A-B': Configuration variable names can"
     " only"
     " contain alphanumeric characters and underscores."),
    ("value-line-break", BASE.replace('"debug"', '"a\\nb"'),
     "job.toml: [action.value] values cannot contain line breaks (CR or LF)"),
    ("value-carriage-return", BASE.replace('"debug"', '"a\\rb"'),
     "job.toml: [action.value] values cannot contain line breaks (CR or LF)"),
    ("value-long", BASE.replace('"debug"', '"' + "x" * 100_001 + '"'),
     "job.toml: [action.value] values are at most 100,000 characters, got 100,001"),
    ("tag-space", job(action='type = "set_tag"\nkey = "a b"\nvalue = "x"'),
     "job.toml: [action.key] invalid tag key 'a b': Tag keys cannot contain whitespace."),
    ("tag-reserved", job(action='type = "set_tag"\nkey = "io.balena.x"\nvalue = "x"'),
     "job.toml: [action.key] invalid tag key 'io.balena.x': Tag keys beginning with io.balena. are"
     " reserved."),
    ("tag-reserved-resin", job(action='type = "remove_tag"\nkey = "io.resin.x"'),
     "job.toml: [action.key] invalid tag key 'io.resin.x': Tag keys beginning with io.resin. are reserved."),
    ("tag-long", job(action=f'type = "set_tag"\nkey = "{"k" * 101}"\nvalue = "x"'),
     "job.toml: [action.key] tag keys are 1-100 characters, got 101"),
    ("tag-empty", job(action='type = "remove_tag"\nkey = ""'), "job.toml: [action.key] tag keys are 1-100"
                                                               " characters, got 0"),
    ("tag-value-long", job(action=f'type = "set_tag"\nkey = "k"\nvalue = "{"v" * 10_001}"'),
     "job.toml: [action.value] device tag values are at most 10,000 characters, got 10,001"),
    ("fleet-tag-value-long", job('resource = "fleet"\nfleet = "a/b"', f'type = "set_tag"\nkey = "k"\nvalue'
                                                                      f' = "{"v" * 1001}"'),
     "job.toml: [action.value] application tag values are at most 1,000 characters, got 1,001"),
    # --- allowlist and reserved tables ---
    ("allowlist-target", 'allow_fleets = ["acme/sensor"]\n' + BASE,
     "job.toml: [target.fleet] fleet 'acme/gateway' is not in allow_fleets (acme/sensor)"),
    ("allowlist-fleets", job('resource = "device"\nfleets = ["a/b", "c/d"]', top='allow_fleets = ["a/b"]'),
     "job.toml: [target.fleets] fleet 'c/d' is not in allow_fleets (a/b)"),
    ("allowlist-move", job(action='type = "move"\nto_fleet = "a/other"', top='allow_fleets = ["a/b"]'),
     "job.toml: [action.to_fleet] fleet 'a/other' is not in allow_fleets (a/b)"),
    ("allowlist-empty", "allow_fleets = []\n" + BASE,
     "job.toml: [allow_fleets] expected at least one fleet slug (leave the key out to allow any fleet)"),
    ("allowlist-slug", 'allow_fleets = ["ACME/gateway"]\n' + BASE,
     f"job.toml: [allow_fleets[0]] {SLUG_HELP}, got string 'ACME/gateway'; slugs are lower case: write"
     " 'acme/gateway'"),
    ("rollout", BASE + "[rollout]\nstages = [1]\n",
     'job.toml: [rollout.stages[0]] the last stage must be "100%" (every target), got \'1\''),
    ("rollout-not-table", "rollout = 5\n" + BASE, "job.toml: [rollout] expected a table, got integer 5"),
    ("schedule-not-table", "schedule = 5\n" + BASE,
     "job.toml: [schedule] expected a cron expression \"minute hour day-of-month month day-of-week\" such as"
     " \"0 3 * * *\" (or @hourly, @daily, @weekly, @monthly, @yearly) or a table with cron, timezone,"
     " jitter, missed, catch_up, grow_limit; got integer 5"),
    # --- options ---
    ("option-range", BASE + "[options]\nbatch_size = 0\n",
     "job.toml: [options.batch_size] expected an integer between 1 and 1000, got 0"),
    ("option-type", BASE + '[options]\nmax_attempts = "6"\n',
     "job.toml: [options.max_attempts] expected an integer, got string '6'"),
    ("option-duration", BASE + '[options]\nmax_retry_after = "5 minutes"\n',
     f"job.toml: [options.max_retry_after] {DURATION} or a number of seconds, got string '5 minutes'"),
    ("option-negative", BASE + "[options]\nrequest_timeout = -1\n",
     "job.toml: [options.request_timeout] expected a positive number of seconds, got -1"),
    ("options-not-table", BASE.replace('name = "j"', 'name = "j"\noptions = "fast"'),
     "job.toml: [options] expected a table, got string 'fast'"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error_message(text: str, message: str) -> None:
    """Each malformed job file is refused with exactly this message."""
    err = error_of(text)
    assert str(err) == message
    assert err.path == "job.toml"
    assert err.exit_code is ExitCode.INVALID_INPUT


def test_error_carries_dotted_key() -> None:
    """The error's ``key`` attribute is the dotted key at fault, ``detail`` the message without the place."""
    err = error_of(BASE.replace('"debug"', "123"))
    assert err.key == "action.value"
    assert err.detail == 'expected a string, got integer 123; env var values are strings: write value = "123"'


def test_syntax_error_has_no_key() -> None:
    """A TOML syntax error names the file and the position, and no key."""
    err = error_of("name = \n")
    assert err.key is None
    assert str(err) == "job.toml: TOML syntax error at line 1, column 8: Invalid value"

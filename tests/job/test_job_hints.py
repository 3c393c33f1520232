"""Job-file errors that help: a missing key names the near-miss found instead, an unquoted value is told
to be quoted, and the new keys (service variables, listed targets) are refused precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.errors import JobFileError
from bulkops.job.load import parse_job, read_job

U1, U2 = "a" * 32, "b" * 32


def job(target: str = 'resource = "device"\nfleet = "acme/gateway"', action: str = 'type = "delete"') -> str:
    return f'name = "j"\n[target]\n{target}\n[action]\n{action}\n'


def error_of(text: str, path: str = "job.toml") -> str:
    with pytest.raises(JobFileError) as info:
        parse_job(text, path=path)
    return str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    (job(action='tpye = "set_env"\nname = "A"\nvalue = "1"'),
     "job.toml: [action.type] missing required key 'type' in [action]; found 'tpye' — did you mean 'type'?"),
    (job(action='type = "set_env"\nname = "A"\nvaleu = "1"'),
     "job.toml: [action.valeu] unknown key 'valeu' in [action]; did you mean 'value'? accepted for action"
     " type 'set_env': type, name, value"),
    ('name = "j"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n[actoin]\ntype = "delete"\n',
     "job.toml: [actoin] unknown key 'actoin' at the top level; did you mean 'action'? accepted: name,"
     " description, allow_fleets, target, action, options, rollout, schedule"),
], ids=["missing-type-found-typo", "unknown-value-typo", "missing-table-typo"])
def test_missing_key_names_what_was_found(text: str, message: str) -> None:
    """A required key that is missing is reported beside the near-miss key the file has instead."""
    assert error_of(text) == message


@pytest.mark.parametrize(("line", "message"), [
    ("value = no", 'TOML syntax error at line 8, column 9: Invalid value; quote it: value = "no"'),
    ("value = 0123", "TOML syntax error at line 8, column 10: Expected newline or end of document after a"
                     ' statement; quote it: value = "0123"'),
    ("value = 08:00  # at eight", "TOML syntax error at line 8, column 10: Expected newline or end of"
                                  ' document after a statement; quote it: value = "08:00"'),
    ('value = a"b', 'TOML syntax error at line 8, column 9: Invalid value; quote it: value = "a\\"b"'),
    ('value = "a" b', "TOML syntax error at line 8, column 13: Expected newline or end of document after a"
                      " statement"),
], ids=["bare-word", "leading-zero", "time-like", "embedded-quote", "not-a-bare-value"])
def test_unquoted_value_is_told_to_quote_it(line: str, message: str) -> None:
    """An unquoted value that is no TOML value gets the quoted spelling; other syntax errors do not."""
    text = job(action=f'type = "set_env"\nname = "A"\n{line}')
    assert error_of(text) == f"job.toml: {message}"


def test_quote_hint_inside_an_inline_table() -> None:
    """A bare word inside an inline table is quoted under its own key."""
    text = job(action='type = "patch"\nfields = { note = hello }')
    assert error_of(text) == ('job.toml: TOML syntax error at line 7, column 19: Invalid value; quote it:'
                              ' note = "hello"')


@pytest.mark.parametrize(("action", "message"), [
    ('type = "set_service_env"\nservice = "main"\nname = "BALENA_X"\nvalue = "1"',
     "[action.name] invalid env var name 'BALENA_X': Environment variables beginning with RESIN_, BALENA_ are"
     ' reserved. (a service has no config variables: set BALENA_/RESIN_ names on the device with type ='
     ' "set_config")'),
    ('type = "set_service_env"\nservice = "main"\nname = "9X"\nvalue = "1"',
     "[action.name] invalid env var name '9X': Environment variable names can only contain alphanumeric"
     " characters and underscores."),
    ('type = "set_service_env"\nservice = "main"\nname = "X"\nvalue = 1',
     '[action.value] expected a string, got integer 1; env var values are strings: write value = "1"'),
    ('type = "set_service_env"\nname = "X"\nvalue = "1"',
     "[action.service] missing required key 'service' in [action]"),
    ('type = "set_service_env"\nservice = "my service"\nname = "X"\nvalue = "1"',
     "[action.service] expected a service name of 1-63 characters without spaces, as in the fleet's"
     " docker-compose.yml (e.g. \"main\"), got string 'my service'"),
    ('type = "remove_service_env"\nservice = "main"\nname = "X"\nvalue = "1"',
     "[action.value] 'value' does not apply to action type 'remove_service_env' (it belongs to set_env,"
     " set_config, set_tag, set_service_env); accepted for remove_service_env: type, service, name"),
], ids=["config-prefix", "bad-name", "unquoted", "no-service", "service-space", "remove-with-value"])
def test_service_variable_rules(action: str, message: str) -> None:
    """Device service variables follow the env var rules of the v7 model, with no routing to config vars."""
    assert error_of(job(action=action)) == f"job.toml: {message}"


def test_service_variable_on_fleets_is_refused() -> None:
    """set_service_env is a device action."""
    text = job('resource = "fleet"\nfleet = "acme/gateway"',
               'type = "set_service_env"\nservice = "main"\nname = "X"\nvalue = "1"')
    assert error_of(text) == "job.toml: [action.type] action type 'set_service_env' applies to devices only"


def test_service_variable_job_parses() -> None:
    """A valid service variable job carries the service in its action."""
    text = job(action='type = "set_service_env"\nservice = "main"\nname = "X"\nvalue = "1"')
    action = parse_job(text).action
    assert (action.type.value, action.service, action.name, action.value) == (
        "set_service_env", "main", "X", "1")


@pytest.mark.parametrize(("target", "message"), [
    (f'resource = "device"\nuuids = ["{U1}", "{U1.upper()}"]',
     f"[target.uuids[1]] expected a device uuid (32 lower-case hex characters, or 62 for old devices), got"
     f" string '{U1.upper()}'; uuids are lower case: write '{U1}'"),
    ('resource = "device"\nuuids = ["de1b372"]',
     "[target.uuids[0]] expected a device uuid (32 lower-case hex characters, or 62 for old devices), got"
     " string 'de1b372'; give the full uuid (a short uuid is only a prefix)"),
    (f'resource = "device"\nuuids = ["{U1}", "{U2}", "{U1}"]',
     f"[target.uuids[2]] uuid '{U1}' is listed twice (also at uuids[0])"),
    ('resource = "device"\nuuids = []', "[target.uuids] expected at least one uuid"),
    ('resource = "device"\nids = [3, true]',
     "[target.ids[1]] expected a positive integer id, got boolean true"),
    ('resource = "device"\nids = [0]', "[target.ids[0]] expected a positive integer id, got integer 0"),
    (f'resource = "device"\nids = [1]\nuuids = ["{U1}"]',
     "[target.ids] give one of uuids, uuids_file or ids, not uuids and ids"),
    (f'resource = "fleet"\nuuids = ["{U1}"]',
     "[target.uuids] uuids lists devices; for fleets use ids = [...] or fleets = [...]"),
    ('resource = "device"\nuuids = "x"', "[target.uuids] expected an array of device uuids, got string 'x'"),
], ids=["upper-case", "short", "twice", "empty", "bool-id", "zero-id", "two-lists", "fleet-uuids",
        "not-array"])
def test_listed_target_errors(target: str, message: str) -> None:
    """uuids and ids are checked entry by entry, with the entry's index."""
    assert error_of(job(target)) == f"job.toml: {message}"


def test_uuids_file_is_read_relative_to_the_job(tmp_path: Path) -> None:
    """uuids_file is one uuid per line (blank lines and # comments skipped), relative to the job file."""
    (tmp_path / "list.txt").write_text(f"# canaries\n{U1}\n\n{U2}  # the second one\n")
    path = tmp_path / "job.toml"
    path.write_text(job('resource = "device"\nuuids_file = "list.txt"'))
    target = read_job(path).job.target
    assert (target.uuids, target.uuids_file) == ((U1, U2), "list.txt")


@pytest.mark.parametrize(("content", "message"), [
    (f"{U1}\nnot-a-uuid\n", "line 2: expected a device uuid (32 lower-case hex characters, or 62 for old"
                            " devices), got string 'not-a-uuid'"),
    (f"{U1}\n{U2}\n{U1}\n", f"line 3: uuid '{U1}' is listed twice (also on line 1)"),
    ("# nothing\n\n", "lists no uuid (one per line; # starts a comment)"),
], ids=["bad-line", "twice", "empty"])
def test_uuids_file_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    """A bad uuids_file entry is reported with the file and its line number."""
    (tmp_path / "list.txt").write_text(content)
    path = tmp_path / "job.toml"
    path.write_text(job('resource = "device"\nuuids_file = "list.txt"'))
    with pytest.raises(JobFileError) as info:
        read_job(path)
    assert str(info.value) == f"{path}: [target.uuids_file] {tmp_path / 'list.txt'} {message}"


def test_missing_uuids_file(tmp_path: Path) -> None:
    """A uuids_file that cannot be read names the path looked at."""
    path = tmp_path / "job.toml"
    path.write_text(job('resource = "device"\nuuids_file = "nope.txt"'))
    with pytest.raises(JobFileError) as info:
        read_job(path)
    assert str(info.value) == (f"{path}: [target.uuids_file] cannot read {tmp_path / 'nope.txt'}: No such"
                               " file or directory")

"""The job's $filter: parsed by bulkops.odata, then every name checked against the v7 model."""

from __future__ import annotations

import pytest

from bulkops.errors import FilterSyntaxError, JobFileError, UnknownFieldError
from bulkops.job.load import parse_job
from bulkops.odata.check import check_filter, lookup_resource
from bulkops.odata.parser import parse


def job_with_filter(text: str, resource: str = "device") -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'name = "j"\n[target]\nresource = "{resource}"\nfilter = "{escaped}"\n[action]\ntype ='
        ' "set_tag"\nkey = "k"\nvalue = "v"\n'
    )


GOOD = [
    ("device", "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"),
    ("device", "belongs_to__application/slug eq 'acme/gateway'"),
    ("device", "device_tag/any(t: t/device/any(d: d/device_name eq t/value))"),
    ("device", "device_environment_variable/any(v: v/name eq 'LOG_LEVEL') and not(is_online)"),
    ("device", "device_tag/$count gt 1"),
    ("device", "device_tag/all(t: t/tag_key ne 'io.example.x') and "
               "service_install/any(s: s/installs__service/"
               "service_name eq 'main')"),
    ("device", "device_tag/$count($filter=tag_key eq 'ring') eq 1"),
    ("device", "startswith(device_name,'gw') and last_connectivity_event lt now()"),
    ("device", "id in (1, 2, 3) or note eq null"),
    ("device", "device__has__tag_key/any(t: t/tag_key eq 'x')"),
    ("device", "is_running__release/any(r: r/semver_major eq 1)"),
    ("application", "organization/handle eq 'acme' and owns__device/any(d: d/is_online)"),
    ("device_tag", "device/belongs_to__application/slug eq 'a/b'"),
]


@pytest.mark.parametrize(("resource", "text"), GOOD)
def test_known_names_pass(resource: str, text: str) -> None:
    """Fields, navigations, aliases, lambdas (nested, with outer variables) and $count resolve."""
    check_filter(parse(text), resource)


BAD = [
    ("devce_name eq 'x'",
     "unknown field or navigation 'devce_name' on resource 'device'; did you mean 'device_name' or"
     " 'device_tag'"
     " or 'device__installs__image'?"),
    ("device_tag/any(t:t/tag_kye eq 'x')",
     "unknown field or navigation 'tag_kye' on resource 'device_tag'; did you mean 'tag_key'?"),
    ("device_tag/any(t:t/device/any(d: d/colour eq t/value))",
     "unknown field or navigation 'colour' on resource 'device'"),
    ("device_tag/any(t:tag_key eq 'x')",
     "unknown field or navigation 'tag_key' on resource 'device'"),
    ("note/any(t:t/x eq 1)", "any() needs a navigation, but 'note' is a field of resource 'device'"),
    ("note/x eq 1", "'note' on resource 'device' is a field, not a navigation: it has no 'x'"),
    ("device_tag/any(t: t/any(u: u/value eq 'x'))", "any() needs a navigation, got the lambda variable 't'"),
    ("belongs_to__application/slg eq 'a/b'",
     "unknown field or navigation 'slg' on resource 'application'; did you mean 'slug'?"),
    ("device_tag/$count($filter=tag_kee eq 'x') gt 0",
     "unknown field or navigation 'tag_kee' on resource 'device_tag'; did you mean 'tag_key'?"),
    ("is_online/$count gt 0", "$count needs a navigation, but 'is_online' is a field of resource 'device'"),
    ("tolower(devicename) eq 'x'", "unknown field or navigation 'devicename' on resource 'device'; did you"
                                   " mean"
     " 'device_name' or 'device_tag' or 'device__installs__image'?"),
    ("nope in (1, 2)", "unknown field or navigation 'nope' on resource 'device'; did you mean 'note'?"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_unknown_names_are_reported(text: str, message: str) -> None:
    """The first unknown name raises UnknownFieldError naming it, its resource and close matches."""
    with pytest.raises(UnknownFieldError) as info:
        check_filter(parse(text), "device")
    assert str(info.value) == message


def test_lambda_variable_leaves_scope() -> None:
    """A lambda variable is not visible after its lambda closes."""
    with pytest.raises(UnknownFieldError) as info:
        check_filter(parse("device_tag/any(t: t/value eq 'x') and t/value eq 'y'"), "device")
    assert str(info.value) == "unknown field or navigation 't' on resource 'device'"


def test_unknown_resource() -> None:
    """Looking up a resource that is not in the model names it and suggests close names."""
    with pytest.raises(UnknownFieldError) as info:
        lookup_resource("devise")
    assert str(info.value) == "unknown resource 'devise'; did you mean 'device' or 'device_tag'?"


def test_unknown_name_in_job_names_file_and_key() -> None:
    """In a job, an unknown filter name is a JobFileError on target.filter, caused by UnknownFieldError."""
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter("device_tag/any(t:t/tag_kye eq 'x')"), path="job.toml")
    assert str(info.value) == (
        "job.toml: [target.filter] unknown field or navigation 'tag_kye' on resource 'device_tag'; did you"
        " mean"
        " 'tag_key'? (in the filter)"
    )
    assert isinstance(info.value.__cause__, UnknownFieldError)


def test_filter_is_checked_on_the_target_resource() -> None:
    """A fleet target's filter is checked against the application resource."""
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter("device_name eq 'x'", resource="fleet"), path="job.toml")
    assert str(info.value).startswith(
        "job.toml: [target.filter] unknown field or navigation 'device_name' on resource 'application'"
    )


@pytest.mark.parametrize("text", ["device_name eq 'x", "device_name eq", "(is_online", "a eq 1 1", "in (1)"])
def test_syntax_error_names_file_key_and_position(text: str) -> None:
    """A filter that does not parse is a JobFileError on target.filter with the parser's position."""
    with pytest.raises(FilterSyntaxError) as direct:
        parse(text)
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter(text), path="job.toml")
    assert str(info.value) == f"job.toml: [target.filter] filter syntax error: {direct.value}"
    cause = info.value.__cause__
    assert isinstance(cause, FilterSyntaxError)
    assert cause.position == direct.value.position


def test_empty_and_oversized_filters() -> None:
    """An empty filter or one past 8,000 characters is refused before parsing."""
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter("  "), path="job.toml")
    assert str(info.value) == (
        "job.toml: [target.filter] expected an OData filter, got an empty string (leave the key out)"
    )
    big = " or ".join(["is_online"] * 1000)
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter(big), path="job.toml")
    assert str(info.value) == f"job.toml: [target.filter] expected at most 8000 characters, got {len(big)}"


def test_deeply_nested_filter_is_refused_cleanly() -> None:
    """Thousands of nested parentheses end in a JobFileError, not a RecursionError."""
    text = "(" * 3000 + "is_online" + ")" * 3000
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter(text), path="job.toml")
    assert info.value.key == "target.filter"

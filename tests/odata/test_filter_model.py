"""A parsed $filter checked against the v7 model beyond its names: the cardinality of each navigation,
the type of each literal, the values an enumerated field takes."""

from __future__ import annotations

import pytest

from bulkops import v7
from bulkops.errors import FilterModelError, InputError
from bulkops.odata.check import check_filter
from bulkops.odata.parser import parse

ONE_DEVICE_MANY_TAGS = "'device_tag' on resource 'device' is a collection (a device has many device_tag rows)"
THROUGH = ": a path through it needs any() or all() (balena answers each device once per matching row)"
STATUSES = ("'inactive', 'post-provisioning', 'configuring', 'disconnected', 'updating', "
            "'reduced-functionality' or 'operational'")

REFUSED = [
    # a path through a to-many navigation, or a collection compared as a value
    ("device", "device_tag/tag_key eq 'ring'",
     f"{ONE_DEVICE_MANY_TAGS}{THROUGH}; did you mean device_tag/any(t:t/tag_key eq 'ring')?"),
    ("device", "device_tag/value in ('a', 'b')",
     f"{ONE_DEVICE_MANY_TAGS}{THROUGH}; did you mean device_tag/any(t:t/value in ('a','b'))?"),
    ("device", "startswith(device_environment_variable/name, 'X')",
     "'device_environment_variable' on resource 'device' is a collection (a device has many "
     "device_environment_variable rows): a path through it needs any() or all() (balena answers each device "
     "once per matching row); did you mean device_environment_variable/any(v:v/name …)?"),
    ("application", "organization/handle eq 'acme' and owns__device/device_name eq 'gw-1'",
     "'owns__device' on resource 'application' is a collection (an application has many device rows): a path "
     "through it needs any() or all() (balena answers each application once per matching row); did you mean "
     "owns__device/any(d:d/device_name eq 'gw-1')?"),
    ("device", "belongs_to__application/any(a:a/owns__device/is_online eq true)",
     "'owns__device' on resource 'application' is a collection (an application has many device rows): a path "
     "through it needs any() or all() (balena answers each application once per matching row); did you mean "
     "a/owns__device/any(d:d/is_online eq true)?"),
    ("application", "owns__device/device_tag/any(t:t/tag_key eq 'ring')",
     "'owns__device' on resource 'application' is a collection (an application has many device rows): a path "
     "through it needs any() or all() (balena answers each application once per matching row); did you mean "
     "owns__device/any(d:d/device_tag …)?"),
    ("device", "device_tag eq null",
     f"{ONE_DEVICE_MANY_TAGS}: compare its rows with any() or all(), or count them with device_tag/$count"),
    # literal types
    ("device", "is_online eq 1",
     "'is_online' on resource 'device' is a boolean (compare it with true or false), got the number 1"),
    ("device", "is_online ne 'true'",
     "'is_online' on resource 'device' is a boolean (compare it with true or false), got the string 'true'"),
    ("device", "id eq 'abc'",
     "'id' on resource 'device' is an integer (compare it with a number such as 5), got the string 'abc'"),
    ("device", "memory_usage gt 1.5",
     "'memory_usage' on resource 'device' is an integer (compare it with a number such as 5), got the number "
     "1.5"),
    ("device", "id in (1, 2, '3')",
     "'id' on resource 'device' is an integer (compare it with a number such as 5), got the string '3'"),
    ("device", "device_name eq 5",
     "'device_name' on resource 'device' is text (compare it with a quoted string such as 'x'), got the "
     "number 5"),
    ("device", "5 eq device_name",
     "'device_name' on resource 'device' is text (compare it with a quoted string such as 'x'), got the "
     "number 5"),
    ("device", "belongs_to__application eq 'acme/gateway'",
     "'belongs_to__application' on resource 'device' is a link to application (compare it with an "
     "application id such as 5, or go through it: belongs_to__application/<field> eq …), got the string "
     "'acme/gateway'"),
    ("device", "created_at gt 5",
     "'created_at' on resource 'device' is a date and time (compare it with an ISO-8601 string such as "
     "'2024-01-01T00:00:00Z' or datetime'2024-01-01T00:00:00Z'), got the number 5"),
    ("device", "last_connectivity_event lt 'last tuesday'",
     "'last_connectivity_event' on resource 'device' is a date and time (compare it with an ISO-8601 string "
     "such as '2024-01-01T00:00:00Z' or datetime'2024-01-01T00:00:00Z'), got the string 'last tuesday'"),
    ("device", "device_tag/any(t:t/device/is_online eq 0)",
     "'is_online' on resource 'device' is a boolean (compare it with true or false), got the number 0"),
    ("device", "device_tag/$count gt 'x'",
     "device_tag/$count is a number of rows (compare it with an integer such as 0), got the string 'x'"),
    ("device", "device_tag/$count($filter=value eq 3) gt 0",
     "'value' on resource 'device_tag' is text (compare it with a quoted string such as 'x'), got the "
     "number 3"),
    # enumerated values
    ("device", "overall_status eq 'offline'",
     f"'overall_status' on resource 'device' never takes the value 'offline' (it takes {STATUSES}; "
     "'offline' is the /v6 value); did you mean 'disconnected'?"),
    ("device", "overall_status in ('operational', 'idle')",
     f"'overall_status' on resource 'device' never takes the value 'idle' (it takes {STATUSES}; 'idle' is "
     "the /v6 value); did you mean 'operational' or 'reduced-functionality'?"),
    ("device", "api_heartbeat_state eq 'Online'",
     "'api_heartbeat_state' on resource 'device' never takes the value 'Online' (it takes 'online', "
     "'offline', 'timeout' or 'unknown'); did you mean 'online'?"),
    ("device", "api_heartbeat_state ne 'disconnected'",
     "'api_heartbeat_state' on resource 'device' never takes the value 'disconnected' (it takes 'online', "
     "'offline', 'timeout' or 'unknown')"),
    ("device", "is_running__release/status eq 'succeeded'",
     "'status' on resource 'release' never takes the value 'succeeded' (it takes 'running', 'success', "
     "'failed', 'error', 'cancelled' or 'interrupted'); did you mean 'success'?"),
]


@pytest.mark.parametrize(("resource", "text", "message"), REFUSED)
def test_filters_that_do_not_fit_the_model_are_refused(resource: str, text: str, message: str) -> None:
    """A path through a collection, a literal of the wrong type, a value never taken: FilterModelError."""
    with pytest.raises(FilterModelError) as info:
        check_filter(parse(text), resource)
    assert str(info.value) == message
    assert isinstance(info.value, InputError)


ACCEPTED = [
    ("device", "overall_status eq 'disconnected' or overall_status in ('operational', 'updating')"),
    ("device", "is_online eq false and is_online ne null"),
    ("device", "created_at gt '2024-01-01T00:00:00Z' and created_at lt datetime'2025-01-01T00:00:00Z'"),
    ("device", "last_connectivity_event lt '2024-06-01' and modified_at ge date'2024-01-01'"),
    ("device", "last_connectivity_event lt now() sub duration'P90D'"),
    ("device", "belongs_to__application eq 2 and is_pinned_on__release eq null"),
    ("device", "belongs_to__application/any(a:a/slug eq 'acme/gateway')"),
    ("device", "device_tag/any(t:t/tag_key eq 'ring') and device_tag/all(t:t/value ne 'x')"),
    ("device", "device_tag/$count gt 1 and device_tag/$count($filter=tag_key eq 'ring') eq 1"),
    ("device", "id in (1, 2, 3) and memory_usage ge 0 and cpu_temp lt -5"),
    ("device", "api_heartbeat_state in ('online', 'timeout') and update_status ne 'aborted'"),
    ("device", "note eq null and is_web_accessible eq false and device_name eq note"),
    ("device_tag", "device/belongs_to__application/slug eq 'a/b' and value eq ''"),
    ("application", "is_of__class eq 'fleet' and owns__device/any(d:d/overall_status eq 'configuring')"),
    ("image_install", "status eq 'Downloading' and download_progress lt 100"),
]


@pytest.mark.parametrize(("resource", "text"), ACCEPTED)
def test_filters_that_fit_the_model_pass(resource: str, text: str) -> None:
    """Literals of the field's type, values the field takes, collections under any/all/$count: accepted."""
    check_filter(parse(text), resource)


def test_overall_status_lists_the_v7_values() -> None:
    """device.overall_status is enumerated with its v7 values, and knows the /v6 names it replaced."""
    field = v7.field_of("device", "overall_status")
    assert field.enum == ("inactive", "post-provisioning", "configuring", "disconnected", "updating",
                          "reduced-functionality", "operational")
    assert v7.FORMER_VALUES[("device", "overall_status")] == {
        "offline": ("disconnected",), "idle": ("operational", "reduced-functionality")}

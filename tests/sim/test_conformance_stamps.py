"""Conformance: the connectivity stamp a PATCH may set (observed facts, "Releases, pins and what a device
should run": ``PATCH device(N) {"last_connectivity_event": …}`` is 200, stored as given)."""

from __future__ import annotations

from tests.sim.conftest import Api
from tests.sim.test_conformance_writes import assert_empty_200, new_device


def test_patch_sets_last_connectivity_event_as_given(api: Api) -> None:
    """PATCH of ``last_connectivity_event`` alone is 200 and the value is stored as given."""
    device = new_device(api)
    stamp = {"last_connectivity_event": "2025-06-01T00:00:00.000Z"}
    answer = api.request("PATCH", f"/v7/device({device})", stamp)
    assert_empty_200(answer)
    got = api.request("GET", f"/v7/device({device})?$select=last_connectivity_event").d
    assert got == [{"last_connectivity_event": "2025-06-01T00:00:00.000Z"}]


def test_patch_of_a_stamp_that_is_not_a_date_is_400(api: Api) -> None:
    """A stamp that is not a date is refused like any wrongly typed value ("PATCH": 400, empty body)."""
    device = new_device(api)
    answer = api.request("PATCH", f"/v7/device({device})", {"last_connectivity_event": "yesterday"})
    assert (answer.status, answer.body) == (400, b"")


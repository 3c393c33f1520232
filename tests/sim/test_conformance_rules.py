"""Conformance: balena's write rules and hooks (model reference §3): variable and tag rules, device
hooks, fleet moves, pins and fleet targets, computed fields, cascades and release deletion."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.sim.conftest import Api

_names = itertools.count(1)


def new_device(api: Api, app: int = 1, **fields: Any) -> int:
    return api.db.insert(
        "device",
        {
            "belongs_to__application": app,
            "device_name": f"r-{next(_names)}",
            "is_of__device_type": api.data.rpi4,
            **fields,
        },
    )


def one(api: Api, sql: str, *params: Any) -> Any:
    return api.rows(sql, *params)[0][0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("POLL", "Configuration variables must be part of one of the following namespaces: RESIN_, BALENA_"),
        (
            "BALENA-X",
            "Configuration variable names can only contain alphanumeric characters and underscores.",
        ),
        ("BALENA", "Configuration variables RESIN, BALENA, USER are reserved"),
    ],
)
def test_config_var_name_rules(api: Api, name: str, message: str) -> None:
    """Config var names must be RESIN_/BALENA_ and well formed: 400 with balena's messages."""
    answer = api.request("POST", "/v7/device_config_variable", {"device": 2, "name": name, "value": "1"})
    assert (answer.status, answer.json()) == (400, message)


def test_config_var_accepts_reserved_prefix(api: Api) -> None:
    """A BALENA_ name is accepted as a config var."""
    answer = api.request(
        "POST", "/v7/device_config_variable", {"device": 2, "name": "BALENA_HOST_X", "value": "1"}
    )
    assert answer.status == 201


@pytest.mark.parametrize("resource", ["device_environment_variable", "device_config_variable"])
def test_values_with_line_breaks_are_refused(api: Api, resource: str) -> None:
    """A CR or LF in a variable value: 400 "Variable values cannot contain line break characters"."""
    name = "BALENA_NL" if "config" in resource else "NL"
    answer = api.request("POST", f"/v7/{resource}", {"device": 2, "name": name, "value": "a\r\nb"})
    assert (answer.status, answer.json()) == (400, "Variable values cannot contain line break characters")


def test_patch_checks_var_names_too(api: Api) -> None:
    """PATCH of an env var name to a reserved one: 400."""
    answer = api.request(
        "PATCH", "/v7/device_environment_variable(device=1,name='DEV_VAR_1')", {"name": "BALENA_Y"}
    )
    assert (answer.status, answer.json()) == (
        400,
        "Environment variables beginning with RESIN_, BALENA_ are reserved.",
    )


def test_value_length_limit(api: Api) -> None:
    """An env var value over 100,000 characters: 400 with the length rule."""
    answer = api.request(
        "POST", "/v7/device_environment_variable", {"device": 2, "name": "BIG", "value": "x" * 100_001}
    )
    assert (answer.status, answer.json()) == (
        400,
        "It is necessary that each device environment variable has a "
        "value that has a Length (Type) that is less than or equal to 100000.",
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("has space", "Tag keys cannot contain whitespace."),
        ("io.balena.x", "Tag keys beginning with io.balena. are reserved."),
        ("io.resin.x", "Tag keys beginning with io.resin. are reserved."),
    ],
)
def test_tag_key_rules(api: Api, key: str, message: str) -> None:
    """Tag keys: no whitespace, no io.resin./io.balena. prefix: 400 with balena's messages."""
    answer = api.request("POST", "/v7/device_tag", {"device": 2, "tag_key": key, "value": "1"})
    assert (answer.status, answer.json()) == (400, message)


def test_device_name_and_uuid_rules(api: Api) -> None:
    """A newline in device_name and a malformed uuid on POST: 400 with balena's messages."""
    answer = api.request("PATCH", "/v7/device(2)", {"device_name": "a\nb"})
    assert (answer.status, answer.json()) == (400, "Device name cannot contain any newline characters.")
    answer = api.request(
        "POST", "/v7/device", {"belongs_to__application": 1, "is_of__device_type": 1, "uuid": "NOT-HEX"}
    )
    assert (answer.status, answer.json()) == (
        400,
        "Device UUID must be a 32 or 62 character long lower case hex string.",
    )


def test_post_device_generates_uuid_name_and_actor(api: Api) -> None:
    """POST device without uuid/name: generated (32 lower-case hex; a name), with an actor."""
    body = api.request("POST", "/v7/device", {"belongs_to__application": 1, "is_of__device_type": 1}).json()
    assert len(body["uuid"]) == 32 and body["uuid"] == body["uuid"].lower()
    assert body["device_name"] and body["actor"]["__id"] > 0


def test_device_hooks_stamp_events(api: Api) -> None:
    """is_connected_to_vpn sets is_online and stamps both events; update_status stamps its event."""
    dev = new_device(api)
    assert (
        api.request(
            "PATCH", f"/v7/device({dev})", {"is_connected_to_vpn": True, "update_status": "downloading"}
        ).status
        == 200
    )
    row = api.get(
        f"/v7/device({dev})?$select=is_online,last_vpn_event,last_connectivity_event,last_update_status_event"
    ).d[0]
    assert row["is_online"] is True and all(row[k] for k in row)


def test_fleet_move_clears_pin_and_old_service_installs(api: Api) -> None:
    """Moving a device clears its pin (unless sent), deletes old-fleet service installs and their vars,
    keeps its env vars and tags."""
    dev = new_device(api, is_pinned_on__release=api.data.releases["a2"])
    si = api.db.insert("service_install", {"device": dev, "installs__service": api.data.service})
    api.db.insert("device_service_environment_variable", {"service_install": si, "name": "S", "value": "1"})
    api.db.insert("device_environment_variable", {"device": dev, "name": "KEEP", "value": "1"})
    assert api.request("PATCH", f"/v7/device({dev})", {"belongs_to__application": 2}).status == 200
    assert one(api, "SELECT is_pinned_on__release FROM device WHERE id = ?", dev) is None
    assert api.rows("SELECT id FROM service_install WHERE device = ?", dev) == []
    assert api.rows("SELECT id FROM device_service_environment_variable WHERE service_install = ?", si) == []
    assert api.rows("SELECT name FROM device_environment_variable WHERE device = ?", dev) == [("KEEP",)]


def test_joining_a_fleet_installs_its_services(api: Api) -> None:
    """A device created in, or moved to, a fleet gets a service install per service of that fleet."""
    created = api.request(
        "POST", "/v7/device", {"belongs_to__application": 1, "is_of__device_type": 1}
    ).json()
    moved = new_device(api, app=2)
    assert api.request("PATCH", f"/v7/device({moved})", {"belongs_to__application": 1}).status == 200
    for dev in (created["id"], moved):
        assert api.rows("SELECT installs__service FROM service_install WHERE device = ?", dev) == [
            (api.data.service,)
        ]


def test_fleet_move_with_pin_in_the_same_patch(api: Api) -> None:
    """A move that also sends a pin to a release of the new fleet keeps that pin."""
    dev = new_device(api)
    body = {"belongs_to__application": 2, "is_pinned_on__release": api.data.releases["b1"]}
    assert api.request("PATCH", f"/v7/device({dev})", body).status == 200
    assert one(api, "SELECT is_pinned_on__release FROM device WHERE id = ?", dev) == api.data.releases["b1"]


@pytest.mark.parametrize("release", ["a3", "b1"])
def test_pin_must_be_a_successful_release_of_the_fleet(api: Api, release: str) -> None:
    """Pinning to a failed release or to another fleet's release: 400; nothing changes."""
    dev = new_device(api)
    answer = api.request("PATCH", f"/v7/device({dev})", {"is_pinned_on__release": api.data.releases[release]})
    assert answer.status == 400 and isinstance(answer.json(), str)
    assert one(api, "SELECT is_pinned_on__release FROM device WHERE id = ?", dev) is None


def test_should_be_running_release_is_pin_else_fleet_target(api: Api) -> None:
    """device.should_be_running__release = the pin if set, else the fleet's target; read-only."""
    free = new_device(api)
    pinned = new_device(api, is_pinned_on__release=api.data.releases["a2"])
    rows = api.get(
        f"/v7/device?$select=id,should_be_running__release&$filter=id in ({free},{pinned})&$orderby=id asc"
    ).d
    assert [r["should_be_running__release"] for r in rows] == [
        {"__id": api.data.releases["a1"]},
        {"__id": api.data.releases["a2"]},
    ]
    by_target = api.get(
        f"/v7/device?$select=id&$filter=id in ({free},{pinned}) and should_be_running__release/"
        "any(r:r/id eq " + str(api.data.releases["a2"]) + ")"
    ).d
    assert by_target == [{"id": pinned}]


def test_overall_status_is_computed(api: Api) -> None:
    """overall_status: disconnected when offline, updating when downloading, else operational."""
    off = new_device(api, is_online=False, api_heartbeat_state="offline")
    busy = new_device(
        api, is_online=True, api_heartbeat_state="online", status="Downloading", download_progress=40
    )
    fine = new_device(api, is_online=True, api_heartbeat_state="online")
    rows = api.get(
        f"/v7/device?$select=overall_status,overall_progress&$filter=id in ({off},{busy},{fine})"
        "&$orderby=id asc"
    ).d
    assert rows == [
        {"overall_status": "disconnected", "overall_progress": None},
        {"overall_status": "updating", "overall_progress": 40},
        {"overall_status": "operational", "overall_progress": None},
    ]


def test_fleet_target_rule(api: Api) -> None:
    """A fleet target must be a successful release of that fleet: 400 otherwise."""
    assert (
        api.request(
            "PATCH", "/v7/application(2)", {"should_be_running__release": api.data.releases["a1"]}
        ).status
        == 400
    )
    assert (
        api.request(
            "PATCH", "/v7/application(2)", {"should_be_running__release": api.data.releases["b1"]}
        ).status
        == 200
    )


def test_release_in_use_cannot_be_deleted(api: Api) -> None:
    """Deleting a fleet's target release, or a pinned one: 400 with balena's messages."""
    answer = api.request("DELETE", f"/v7/release({api.data.releases['a1']})")
    assert (answer.status, answer.json()) == (
        400,
        "Unable to delete release 1.0.0 because it is the fleet's target release.",
    )
    new_device(api, is_pinned_on__release=api.data.releases["a2"])
    answer = api.request("DELETE", f"/v7/release({api.data.releases['a2']})")
    assert (answer.status, answer.json()) == (
        400,
        "Unable to delete a release because device(s) are pinned to it.",
    )


def test_application_slug_follows_its_name(api: Api) -> None:
    """Renaming a fleet regenerates its slug."""
    app = api.db.insert("application", {"app_name": "renamed-from", "organization": api.data.org_a})
    assert api.request("PATCH", f"/v7/application({app})", {"app_name": "renamed-to"}).status == 200
    assert api.get(f"/v7/application({app})?$select=slug").d == [{"slug": "org_a/renamed-to"}]


def test_delete_application_cascades(api: Api) -> None:
    """Deleting a fleet deletes its devices (and their rows), vars, tags, releases and services."""
    app = api.db.insert("application", {"app_name": "doomed", "organization": api.data.org_a})
    dev = new_device(api, app=app)
    api.db.insert("device_tag", {"device": dev, "tag_key": "x", "value": ""})
    api.db.insert("application_environment_variable", {"application": app, "name": "X", "value": ""})
    rel = api.db.insert("release", {"belongs_to__application": app, "commit": "d" * 40, "status": "success"})
    api.db.conn.execute("UPDATE application SET should_be_running__release = ? WHERE id = ?", (rel, app))
    assert api.request("DELETE", f"/v7/application({app})").status == 200
    for table, column in (
        ("device", "belongs_to__application"),
        ("application_environment_variable", "application"),
        ("release", "belongs_to__application"),
    ):
        assert api.rows(f"SELECT id FROM {table} WHERE {column} = ?", app) == []
    assert api.rows("SELECT id FROM device_tag WHERE device = ?", dev) == []


def test_unused_release_is_deleted_with_its_tags(api: Api) -> None:
    """A release nobody runs is deleted with its tags."""
    rel = api.db.insert("release", {"belongs_to__application": 2, "commit": "e" * 40, "status": "failed"})
    api.db.insert("release_tag", {"release": rel, "tag_key": "k", "value": "v"})
    assert api.request("DELETE", f"/v7/release({rel})").status == 200
    assert api.rows("SELECT id FROM release_tag WHERE release = ?", rel) == []


def test_pin_to_another_organizations_release_is_a_rule_violation(api: Api) -> None:
    """Pinning to a release the caller cannot see fails the pin rule (400), not a permission check."""
    dev = new_device(api)
    answer = api.request("PATCH", f"/v7/device({dev})", {"is_pinned_on__release": api.data.releases["g1"]})
    assert answer.status == 400 and answer.json().startswith("It is necessary that each device")


def test_pin_to_missing_release_is_a_broken_link(api: Api) -> None:
    """Pinning to a release that does not exist: 409 "Data is referenced by release."."""
    answer = api.request("PATCH", "/v7/device(2)", {"is_pinned_on__release": 999999})
    assert (answer.status, answer.json()) == (409, "Data is referenced by release.")


def test_delete_application_that_does_not_exist_is_404(api: Api) -> None:
    """A DELETE addressed to one fleet id that matches nothing: 404."""
    assert api.request("DELETE", "/v7/application(99999)").status == 404


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("created_at gt now() sub duration'P1D'", 20),
        ("created_at lt now() add duration'PT1H'", 20),
        ("last_connectivity_event lt now() sub duration'P3650D'", 0),
        ("date(last_connectivity_event) eq date'2026-01-15'", 3),
        ("hour(last_connectivity_event) eq 12 and minute(last_connectivity_event) eq 0", 20),
        ("last_connectivity_event add duration'P1D' gt datetime'2026-09-16T00:00:00Z'", 2),
    ],
)
def test_date_arithmetic_and_functions(api: Api, flt: str, expected: int) -> None:
    """now(), duration arithmetic and date functions compare datetimes as balena does."""
    answer = api.get(f"/v7/device/$count?$filter=id le 20 and ({flt})", token="carol-key-0123456789")
    assert answer.json() == {"d": expected}

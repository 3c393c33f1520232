"""Conformance: PATCH, PUT, DELETE and POST (observed facts, "PATCH", "DELETE", "POST")."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.sim.conftest import BOB, Api

_names = itertools.count(1)


def new_device(api: Api, app: int = 2, **fields: Any) -> int:
    """A fresh device of fleet-beta (alice's) for one test."""
    return api.db.insert(
        "device",
        {
            "belongs_to__application": app,
            "device_name": f"w-{next(_names)}",
            "is_of__device_type": api.data.rpi4,
            **fields,
        },
    )


def note(api: Api, device: int) -> Any:
    return api.rows("SELECT note FROM device WHERE id = ?", device)[0][0]


def assert_empty_200(answer: Any) -> None:
    assert (answer.status, answer.body) == (200, b"")


# --- PATCH --------------------------------------------------------------------------------------


def test_patch_by_id_uuid_composite_key_and_filter(api: Api) -> None:
    """PATCH by id, by uuid='…', by a composite key and on a filtered collection: 200, empty body."""
    a, b, c = new_device(api), new_device(api, uuid="c" * 32), new_device(api)
    assert_empty_200(api.request("PATCH", f"/v7/device({a})", {"note": "by id"}))
    assert_empty_200(api.request("PATCH", f"/v7/device(uuid='{'c' * 32}')", {"note": "by uuid"}))
    assert_empty_200(api.request("PATCH", f"/v7/device?$filter=id in ({c})", {"note": "by filter"}))
    api.db.insert("device_tag", {"device": a, "tag_key": "k", "value": "old"})
    assert_empty_200(api.request("PATCH", f"/v7/device_tag(device={a},tag_key='k')", {"value": "new"}))
    assert (note(api, a), note(api, b), note(api, c)) == ("by id", "by uuid", "by filter")
    assert api.rows("SELECT value FROM device_tag WHERE device = ?", a) == [("new",)]


def test_patch_with_lambda_and_startswith_filters(api: Api) -> None:
    """A collection PATCH whose $filter uses a lambda or startswith changes exactly the matches."""
    a, b = new_device(api), new_device(api)
    api.db.insert("device_tag", {"device": a, "tag_key": "wave", "value": "1"})
    assert_empty_200(
        api.request(
            "PATCH",
            f"/v7/device?$filter=id in ({a},{b}) and device_tag/any(t:t/tag_key eq 'wave')",
            {"note": "waved"},
        )
    )
    assert (note(api, a), note(api, b)) == ("waved", None)


def test_patch_without_filter_updates_every_visible_row(api: Api) -> None:
    """PATCH on a bare collection updates every row the key may see (and only those)."""
    assert_empty_200(api.request("PATCH", "/v7/device", {"note": "bob was here"}, token=BOB))
    rows = dict(api.rows("SELECT id, note FROM device WHERE id IN (1, 17, 18, 19, 20)"))
    assert rows[17] == rows[18] == rows[19] == rows[20] == "bob was here"
    assert rows[1] != "bob was here"


def test_patch_matching_nothing_is_200(api: Api) -> None:
    """A filter that matches nothing, and device(99999), answer 200 with an empty body."""
    assert_empty_200(api.request("PATCH", "/v7/device?$filter=id eq 99999", {"note": "x"}))
    assert_empty_200(api.request("PATCH", "/v7/device(99999)", {"note": "x"}))


def test_patch_top_limits_rows_and_select_if_match_are_ignored(api: Api) -> None:
    """$top=1 on a collection PATCH changes one row; $select and If-Match are ignored."""
    a, b = new_device(api), new_device(api)
    answer = api.request(
        "PATCH",
        f"/v7/device?$filter=id in ({a},{b})&$orderby=id asc&$top=1&$select=id",
        {"note": "first"},
        headers={"If-Match": '"nope"'},
    )
    assert_empty_200(answer)
    assert (note(api, a), note(api, b)) == ("first", None)


def test_patch_empty_body(api: Api) -> None:
    """PATCH {}: 400 "No fields to update"."""
    answer = api.request("PATCH", "/v7/device(1)", {})
    assert (answer.status, answer.json()) == (400, "No fields to update")


def test_patch_unknown_field_is_500(api: Api) -> None:
    """An unknown field: 500, empty body."""
    answer = api.request("PATCH", "/v7/device(1)", {"no_such_field": 1})
    assert (answer.status, answer.body) == (500, b"")


@pytest.mark.parametrize("body", [{"note": 5}, {"is_online": "yes"}, {"belongs_to__application": "x"}])
def test_patch_wrong_type_is_400(api: Api, body: dict[str, Any]) -> None:
    """A wrong value type: 400, empty body."""
    answer = api.request("PATCH", "/v7/device(1)", body)
    assert (answer.status, answer.body) == (400, b"")


def test_patch_link_to_missing_fleet(api: Api) -> None:
    """Moving to a fleet that does not exist (or is not visible): 404 with balena's message."""
    for app in (999999, api.data.gamma):
        answer = api.request("PATCH", "/v7/device(1)", {"belongs_to__application": app})
        assert (answer.status, answer.json()) == (
            404,
            "Application doesn't exist or you have no access to it.",
        )


def test_patch_duplicate_unique_value(api: Api) -> None:
    """A duplicate uuid: 409 "\\"uuid\\" must be unique."."""
    a = new_device(api)
    answer = api.request("PATCH", f"/v7/device({a})", {"uuid": api.data.uuids[1]})
    assert (answer.status, answer.json()) == (409, '"uuid" must be unique.')


def test_patch_malformed_json_is_an_html_400(api: Api) -> None:
    """Malformed JSON: 400 with an HTML page."""
    answer = api.request(
        "PATCH", "/v7/device(1)", raw_body=b'{"note": ', headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.body.startswith(b"<!DOCTYPE html>")


def test_patch_body_over_512_kb_is_413(api: Api) -> None:
    """A body over 512 kB: 413."""
    answer = api.request("PATCH", "/v7/device(1)", {"note": "x" * (513 * 1024)})
    assert answer.status == 413


def test_put_replaces_the_row_with_a_new_id(api: Api) -> None:
    """PUT on a key replaces the row: same key, new values, a new id."""
    a = new_device(api)
    old = api.db.insert("device_tag", {"device": a, "tag_key": "p", "value": "1"})
    assert_empty_200(api.request("PUT", f"/v7/device_tag(device={a},tag_key='p')", {"value": "2"}))
    assert api.rows("SELECT id, value FROM device_tag WHERE device = ?", a) != [(old, "1")]
    assert [r[1] for r in api.rows("SELECT id, value FROM device_tag WHERE device = ?", a)] == ["2"]
    assert api.rows("SELECT id FROM device_tag WHERE device = ?", a)[0][0] != old


def test_partial_rights_write_only_visible_rows(api: Api) -> None:
    """PATCH/DELETE on id in (mine, theirs): 200, only the rows the key may write change — silently."""
    mine = new_device(api)
    theirs = new_device(api, app=api.data.gamma)
    assert_empty_200(api.request("PATCH", f"/v7/device?$filter=id in ({mine},{theirs})", {"note": "alice"}))
    assert (note(api, mine), note(api, theirs)) == ("alice", None)
    assert_empty_200(api.request("DELETE", f"/v7/device?$filter=id in ({mine},{theirs})"))
    assert [r[0] for r in api.rows(f"SELECT id FROM device WHERE id IN ({mine},{theirs})")] == [theirs]


# --- DELETE -------------------------------------------------------------------------------------


def test_delete_single_composite_and_filtered(api: Api) -> None:
    """DELETE by key, composite key and filtered collection: 200, empty body; missing targets too."""
    a, b = new_device(api), new_device(api)
    api.db.insert("device_tag", {"device": a, "tag_key": "gone", "value": ""})
    assert_empty_200(api.request("DELETE", f"/v7/device_tag(device={a},tag_key='gone')"))
    assert_empty_200(api.request("DELETE", f"/v7/device({a})"))
    assert_empty_200(api.request("DELETE", f"/v7/device?$filter=id in ({b})"))
    assert_empty_200(api.request("DELETE", "/v7/device(99999)"))
    assert api.rows(f"SELECT id FROM device WHERE id IN ({a},{b})") == []


def test_delete_device_cascades(api: Api) -> None:
    """Deleting a device deletes its tags, env vars, config vars, service installs and their vars."""
    a = new_device(api, app=api.data.alpha)
    api.db.insert("device_tag", {"device": a, "tag_key": "t", "value": ""})
    api.db.insert("device_environment_variable", {"device": a, "name": "E", "value": ""})
    api.db.insert("device_config_variable", {"device": a, "name": "BALENA_X", "value": ""})
    si = api.db.insert("service_install", {"device": a, "installs__service": api.data.service})
    api.db.insert("device_service_environment_variable", {"service_install": si, "name": "S", "value": ""})
    assert_empty_200(api.request("DELETE", f"/v7/device({a})"))
    for table, column, value in (
        ("device_tag", "device", a),
        ("device_environment_variable", "device", a),
        ("device_config_variable", "device", a),
        ("service_install", "device", a),
        ("device_service_environment_variable", "service_install", si),
    ):
        assert api.rows(f"SELECT id FROM {table} WHERE {column} = ?", value) == [], table


# --- POST ---------------------------------------------------------------------------------------


def test_post_ignores_unknown_fields(api: Api) -> None:
    """POST: 201; unknown extra fields are ignored."""
    a = new_device(api)
    answer = api.request(
        "POST",
        "/v7/device_environment_variable",
        {"device": a, "name": "NEW_VAR", "value": "1", "bogus": True},
    )
    assert answer.status == 201 and answer.json()["name"] == "NEW_VAR"


@pytest.mark.parametrize(
    ("resource", "body", "message"),
    [
        (
            "device_environment_variable",
            {"device": 1, "name": "DEV_VAR_1", "value": "x"},
            '"device" and "name" must be unique.',
        ),
        (
            "device_tag",
            {"device": 1, "tag_key": "ring", "value": "x"},
            '"device" and "tag_key" must be unique.',
        ),
        (
            "application_environment_variable",
            {"application": 1, "name": "APP_VAR", "value": "x"},
            '"application" and "name" must be unique.',
        ),
        (
            "device",
            {"belongs_to__application": 1, "is_of__device_type": 1, "uuid": "01" + "ab" * 15},
            '"uuid" must be unique.',
        ),
    ],
)
def test_post_duplicates_are_409(api: Api, resource: str, body: dict[str, Any], message: str) -> None:
    """Duplicates of a unique key: 409 with balena's message."""
    answer = api.request("POST", f"/v7/{resource}", body)
    assert (answer.status, answer.json()) == (409, message)


def test_post_missing_required_field_is_500(api: Api) -> None:
    """A missing required field: 500, empty body."""
    answer = api.request("POST", "/v7/device_environment_variable", {"device": 1, "name": "NO_VALUE"})
    assert (answer.status, answer.body) == (500, b"")


@pytest.mark.parametrize(
    "body",
    [
        {"device": "one", "name": "A", "value": "1"},
        {"device": 1, "name": 5, "value": "1"},
        [{"device": 1, "name": "A", "value": "1"}],
    ],
)
def test_post_wrong_types_or_array_is_400(api: Api, body: Any) -> None:
    """Wrong types or an array body: 400, empty body."""
    answer = api.request("POST", "/v7/device_environment_variable", body)
    assert (answer.status, answer.body) == (400, b"")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("BAD-NAME", "Environment variable names can only contain alphanumeric characters and underscores."),
        ("1ABC", "Environment variable names can only contain alphanumeric characters and underscores."),
        ("BALENA_X", "Environment variables beginning with RESIN_, BALENA_ are reserved."),
        ("RESIN_X", "Environment variables beginning with RESIN_, BALENA_ are reserved."),
        ("USER", "Environment variables RESIN, BALENA, USER are reserved"),
    ],
)
def test_post_bad_env_var_names(api: Api, name: str, message: str) -> None:
    """Env var name rules: 400 with balena's messages."""
    answer = api.request("POST", "/v7/device_environment_variable", {"device": 1, "name": name, "value": "1"})
    assert (answer.status, answer.json()) == (400, message)


def test_post_missing_parent_is_409(api: Api) -> None:
    """A missing parent (device 999999): 409 "Data is referenced by device."."""
    answer = api.request(
        "POST", "/v7/device_environment_variable", {"device": 999999, "name": "A", "value": "1"}
    )
    assert (answer.status, answer.json()) == (409, "Data is referenced by device.")

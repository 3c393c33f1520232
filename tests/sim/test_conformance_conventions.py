"""Conformance: balena's response conventions (observed facts, "Response conventions")."""

from __future__ import annotations

import re

from tests.sim.conftest import Api

JSON = "application/json; charset=utf-8"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_collection_and_single_key_answer_d_arrays(api: Api) -> None:
    """GET on a collection and on one key: 200, JSON with charset, {"d": [...]}, no metadata."""
    many = api.get("/v7/device?$select=id&$filter=belongs_to__application eq 1")
    one = api.get("/v7/device(1)")
    assert many.status == 200 and one.status == 200
    assert many.headers["Content-Type"] == JSON and one.headers["Content-Type"] == JSON
    assert many.d == [{"id": i} for i in range(1, 13)] or sorted(r["id"] for r in many.d) == list(
        range(1, 13)
    )
    assert isinstance(one.d, list) and len(one.d) == 1 and one.d[0]["id"] == 1
    assert set(one.json()) == {"d"}
    assert not any(k.startswith(("__metadata", "@odata")) for k in one.d[0])


def test_missing_key_is_an_empty_array_not_404(api: Api) -> None:
    """device(99999) answers 200 {"d":[]}."""
    answer = api.get("/v7/device(99999)")
    assert (answer.status, answer.body) == (200, b'{"d":[]}')


def test_unexpanded_links_are_deferred_ids_or_null(api: Api) -> None:
    """A to-one link reads {"__id": n}, null when unset; actor is {"__id": n} in v7, a number in v6."""
    row = api.get("/v7/device(1)?$select=belongs_to__application,is_pinned_on__release,actor").d[0]
    actor = api.rows("SELECT actor FROM device WHERE id = 1")[0][0]
    assert row == {
        "belongs_to__application": {"__id": 1},
        "is_pinned_on__release": None,
        "actor": {"__id": actor},
    }
    v6 = api.get("/v6/device(1)?$select=actor").d[0]
    assert v6 == {"actor": actor}


def test_expand_is_always_an_array(api: Api) -> None:
    """$expand of a to-one and of a to-many navigation both give arrays."""
    row = api.get(
        "/v7/device(1)?$select=id&$expand=belongs_to__application($select=id,app_name),"
        "device_tag($select=tag_key;$orderby=tag_key asc)"
    ).d[0]
    assert row == {
        "id": 1,
        "belongs_to__application": [{"id": 1, "app_name": "fleet-alpha"}],
        "device_tag": [{"tag_key": "ring"}, {"tag_key": "site"}],
    }


def test_expand_count_is_a_number(api: Api) -> None:
    """$expand=device_tag/$count gives "device_tag": 2."""
    assert api.get("/v7/device(1)?$select=id&$expand=device_tag/$count").d == [{"id": 1, "device_tag": 2}]


def test_dates_are_iso_utc_with_milliseconds(api: Api) -> None:
    """created_at and other datetimes read like 2026-11-27T08:25:11.618Z."""
    row = api.get("/v7/device(1)?$select=created_at,modified_at,last_connectivity_event").d[0]
    assert all(ISO_MS.match(v) for v in row.values()), row
    assert row["last_connectivity_event"] == "2026-01-15T12:00:00.000Z"


def test_variable_and_tag_values_are_strings(api: Api) -> None:
    """Env var and tag values are JSON strings, also when empty or numeric-looking."""
    created = api.request("POST", "/v7/device_tag", {"device": 16, "tag_key": "empty", "value": ""})
    assert created.status == 201 and created.json()["value"] == ""
    var = api.get("/v7/device_config_variable?$select=value").d
    assert var == [{"value": "900000"}]


def test_post_answers_201_location_and_bare_entity(api: Api) -> None:
    """POST: 201, location /v7/<resource>(@id)?@id=<id>, the entity without "d"; $select ignored."""
    answer = api.request(
        "POST",
        "/v7/device_tag?$select=id",
        {"device": 15, "tag_key": "loc", "value": "x"},
        headers={"Prefer": "return=minimal"},
    )
    assert answer.status == 201
    body = answer.json()
    assert answer.headers["location"] == f"/v7/device_tag(@id)?@id={body['id']}"
    assert set(body) == {"id", "created_at", "modified_at", "device", "tag_key", "value"}
    assert body["device"] == {"__id": 15} and body["tag_key"] == "loc"


def test_writes_answer_200_empty_in_v7_and_ok_in_v6(api: Api) -> None:
    """PATCH/MERGE/DELETE: 200 with an empty body and no Content-Type; /v6 answers "OK"."""
    for method in ("PATCH", "MERGE"):
        answer = api.request(method, "/v7/device(14)", {"note": method})
        assert (answer.status, answer.body, answer.headers.get("Content-Type")) == (200, b"", None)
    v6 = api.request("PATCH", "/v6/device(14)", {"note": "six"})
    assert (v6.status, v6.body) == (200, b"OK")
    gone = api.request("DELETE", "/v7/device_tag(device=15,tag_key='loc')")
    assert (gone.status, gone.body, gone.headers.get("Content-Type")) == (200, b"", None)


def test_error_bodies_are_empty_or_a_json_string(api: Api) -> None:
    """Errors answer either nothing or a JSON string."""
    assert api.get("/v7/not_a_resource").body == b""
    answer = api.request("PATCH", "/v7/device(1)", {})
    assert (answer.status, answer.json()) == (400, "No fields to update")

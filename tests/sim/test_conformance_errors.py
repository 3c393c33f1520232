"""Conformance: errors, auth, versions and $batch (observed facts, "Errors", "Auth", "Versions", "$batch")."""

from __future__ import annotations

import http.client

import pytest

from tests.sim.conftest import BOB, CAROL, EXPIRED, Api


@pytest.mark.parametrize(
    "flt",
    [
        "id%20eq",
        "id%20eq%201%20and",
        "(id%20eq%201",
        "id%20eq%201)",
        "id%20===%201",
        "id%20in%20()",
        "id%20in%20(1,)",
    ],
)
def test_filter_syntax_errors_are_malformed_url(api: Api, flt: str) -> None:
    """A $filter syntax error: 400 "Malformed url: '<url-encoded path+query>'"."""
    target = f"/v7/device?$filter={flt}"
    answer = api.get(target)
    assert (answer.status, answer.json()) == (400, f"Malformed url: '{target}'")
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"


def test_unterminated_string_is_500(api: Api) -> None:
    """An unterminated string literal: 500, empty body."""
    answer = api.get("/v7/device?$filter=device_name%20eq%20'abc")
    assert (answer.status, answer.body) == (500, b"")


@pytest.mark.parametrize(
    "query",
    [
        "$select=nope",
        "$filter=nope eq 1",
        "$orderby=nope asc",
        "$expand=nope",
        "$filter=device_tag/any(t:t/nope eq 1)",
        "$expand=device_tag($select=nope)",
    ],
)
def test_unknown_names_are_500(api: Api, query: str) -> None:
    """An unknown field in $select, $filter, $orderby, $expand or a lambda: 500, empty body."""
    answer = api.get(f"/v7/device?{query}")
    assert (answer.status, answer.body) == (500, b"")


def test_type_mismatch(api: Api) -> None:
    """id eq 'abc' is 500; device_name eq 5 is 200 {"d":[]}."""
    assert api.get("/v7/device?$filter=id eq 'abc'").status == 500
    assert api.get("/v7/device?$filter=device_name eq 5").body == b'{"d":[]}'


def test_unknown_resource_is_401(api: Api) -> None:
    """/v7/not_a_resource: 401, empty body."""
    answer = api.get("/v7/not_a_resource")
    assert (answer.status, answer.body) == (401, b"")


@pytest.mark.parametrize(
    ("target", "status"), [("/v5/device", 404), ("/v99/device", 404), ("/v7", 404), ("/v7/", 401)]
)
def test_version_roots(api: Api, target: str, status: int) -> None:
    """/v5/…, /v99/…, /v7 without a slash: 404; /v7/: 401."""
    assert api.get(target).status == status


def test_head_is_500(api: Api) -> None:
    """HEAD: 500."""
    assert api.request("HEAD", "/v7/device(1)").status == 500


def test_request_head_over_16_kb_is_431(api: Api) -> None:
    """A PATCH with 2,000 ids in its URL works; 2,500 ids get 431."""

    def target(n: int) -> str:
        return "/v7/device?$filter=id%20in%20(" + ",".join(str(100_000 + i) for i in range(n)) + ")"

    assert api.request("PATCH", target(2000), {"note": "x"}).status == 200
    assert api.request("PATCH", target(2500), {"note": "x"}).status == 431


def test_batch_is_malformed(api: Api) -> None:
    """POST /v7/$batch: 400 "Malformed url: '/v7/$batch'"."""
    answer = api.request("POST", "/v7/$batch", {"requests": []})
    assert (answer.status, answer.json()) == (400, "Malformed url: '/v7/$batch'")


# --- auth -----------------------------------------------------------------------------------------


def test_bearer_and_apikey_parameter(api: Api) -> None:
    """A named key works as a Bearer token and as ?apikey=."""
    assert api.get("/v7/device(1)?$select=id").d == [{"id": 1}]
    assert api.get("/v7/device(1)?$select=id&apikey=alice-key-0123456789", token=None).d == [{"id": 1}]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer not-a-key",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "Basic YWxpY2U6cHc=",
        "Token alice-key-0123456789",
    ],
)
def test_bad_credentials_are_401_without_challenge(api: Api, header: str | None) -> None:
    """No header, a random token, a bad JWT, Basic or Token: 401, empty body, no WWW-Authenticate."""
    answer = api.get("/v7/device", token=None, headers={} if header is None else {"Authorization": header})
    assert (answer.status, answer.body) == (401, b"")
    assert "WWW-Authenticate" not in answer.headers


def test_anonymous_reads(api: Api) -> None:
    """Anonymous GET on application: 200 {"d":[]}; on device_type: data."""
    assert api.get("/v7/application", token=None).body == b'{"d":[]}'
    types = api.get("/v7/device_type?$select=slug&$orderby=slug asc", token=None).d
    assert types == [{"slug": "generic-amd64"}, {"slug": "raspberrypi4-64"}]


def test_users_see_only_their_organizations(api: Api) -> None:
    """Each user sees the fleets of their organizations and the rows hanging off them."""
    assert [r["id"] for r in api.get("/v7/application?$select=id&$orderby=id asc").d] == [1, 2]
    assert [r["id"] for r in api.get("/v7/application?$select=id", token=BOB).d] == [3]
    assert api.get("/v7/device/$count", token=BOB).json() == {"d": 4}
    assert api.get("/v7/device_tag/$count", token=BOB).json() == {"d": 4}
    assert api.get("/v7/device(1)", token=BOB).body == b'{"d":[]}'
    assert api.get("/v7/organization?$select=handle", token=BOB).d == [{"handle": "org_b"}]


def test_writes_outside_the_scope_are_silent_no_ops(api: Api) -> None:
    """Bob's PATCH and DELETE on alice's device answer 200 and change nothing."""
    assert api.request("PATCH", "/v7/device(2)", {"note": "bob"}, token=BOB).status == 200
    assert api.request("DELETE", "/v7/device(2)", token=BOB).status == 200
    assert api.rows("SELECT note FROM device WHERE id = 2") == [("note 2",)]


def test_direct_access_and_organization_lambdas(api: Api) -> None:
    """is_directly_accessible_by__user/any(dau:true) and organization/any(o:o/handle eq …) work."""
    direct = api.get(
        "/v7/application?$select=id&$orderby=id asc&$filter=is_directly_accessible_by__user/any(dau:true)"
    ).d
    by_org = api.get(
        "/v7/application?$select=id&$filter=organization/any(o:o/handle eq 'org_a')&$orderby=id asc"
    ).d
    assert [r["id"] for r in direct] == [1, 2] and [r["id"] for r in by_org] == [1, 2]


def test_read_only_resources_refuse_writes(api: Api) -> None:
    """Users cannot write organizations or device types: 401."""
    assert api.request("PATCH", "/v7/organization(1)", {"name": "x"}).status == 401
    assert api.request("POST", "/v7/device_type", {"slug": "x", "name": "x"}).status == 401


# --- versions -------------------------------------------------------------------------------------


def test_v6_translates_device_fields(api: Api) -> None:
    """/v6 works: v7-only device fields are absent, v6-only ones read null."""
    v6 = api.get("/v6/device(1)").d[0]
    v7 = api.get("/v7/device(1)").d[0]
    for name in (
        "changed_api_heartbeat_state_on__date",
        "is_pinned_on__release",
        "should_be_managed_by__release",
    ):
        assert name in v7 and name not in v6
    for name in ("is_managed_by__device", "logs_channel", "vpn_address"):
        assert v6[name] is None and name not in v7


def test_v6_env_vars_and_tags_are_the_same(api: Api) -> None:
    """Env vars and tags read the same in v6 and v7."""
    for resource in ("device_environment_variable", "device_tag"):
        assert api.get(f"/v6/{resource}?$orderby=id asc").d == api.get(f"/v7/{resource}?$orderby=id asc").d


def test_v7_filter_on_v6_only_field_is_500(api: Api) -> None:
    """A v7 filter on a v6-only field: 500."""
    assert api.get("/v7/device?$filter=logs_channel eq null").status == 500


def test_v6_error_bodies_carry_the_status_text(api: Api) -> None:
    """Through /v6 an empty error body is filled with the status text."""
    answer = api.get("/v6/not_a_resource")
    assert (answer.status, answer.body) == (401, b"Unauthorized")


def test_raw_connection_reuse(api: Api) -> None:
    """Several requests on one keep-alive connection are answered in order."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        for i in (1, 2, 3):
            conn.request(
                "GET", f"/v7/device({i})?$select=id", headers={"Authorization": "Bearer alice-key-0123456789"}
            )
            response = conn.getresponse()
            assert response.read() == b'{"d":[{"id":%d}]}' % i
    finally:
        conn.close()


def test_v6_device_pin_is_should_be_running_release(api: Api) -> None:
    """In /v6 the device pin is called should_be_running__release, for reads and writes."""
    release = api.rows("SELECT id FROM release WHERE belongs_to__application = 1 AND status = 'success'")[1][
        0
    ]
    assert api.request("PATCH", "/v6/device(3)", {"should_be_running__release": release}).status == 200
    assert api.rows("SELECT is_pinned_on__release FROM device WHERE id = 3") == [(release,)]
    assert api.get("/v6/device(3)?$select=should_be_running__release").d == [
        {"should_be_running__release": {"__id": release}}
    ]
    assert api.request("PATCH", "/v6/device(3)", {"is_managed_by__device": 1}).status == 400


def test_member_of_every_organization_sees_every_fleet(api: Api) -> None:
    """A user in both organizations sees all fleets and devices, and can write any of them."""
    assert api.get("/v7/device/$count", token=CAROL).json() == {"d": 20}
    assert api.get("/v7/application/$count", token=CAROL).json() == {"d": 3}
    assert api.request("PATCH", "/v7/device(17)", {"note": "carol"}, token=CAROL).status == 200
    assert api.rows("SELECT note FROM device WHERE id = 17") == [("carol",)]


def test_expired_key_is_401(api: Api) -> None:
    """A key past its expiry_date: 401, empty body."""
    answer = api.get("/v7/device", token=EXPIRED)
    assert (answer.status, answer.body) == (401, b"")


def test_post_application_in_own_organization_only(api: Api) -> None:
    """POST application: slug and uuid generated in one's organization; another organization's: 401."""
    body = {"app_name": "new-fleet", "organization": 1, "is_for__device_type": 1}
    answer = api.request("POST", "/v7/application", body)
    created = answer.json()
    assert answer.status == 201 and created["slug"] == "org_a/new-fleet" and len(created["uuid"]) == 32
    assert api.request("POST", "/v7/application", {**body, "organization": 2}).status == 401

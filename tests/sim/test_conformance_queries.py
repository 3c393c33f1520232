"""Conformance: collection queries and keys (observed facts, "Collection queries" and "Keys")."""

from __future__ import annotations

import pytest

from tests.sim.conftest import Api


def ids(api: Api, query: str, resource: str = "device") -> list[int]:
    answer = api.get(f"/v7/{resource}?$select=id&$orderby=id asc&{query}")
    assert answer.status == 200, (query, answer.status, answer.body)
    return [r["id"] for r in answer.d]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("id eq 3", [3]),
        ("id ne 3 and id lt 5", [1, 2, 4]),
        ("id gt 10 and id le 12", [11, 12]),
        ("id ge 11 and id lt 13", [11, 12]),
        ("id eq 1 or id eq 2", [1, 2]),
        ("not(id le 10)", [11, 12, 13, 14, 15, 16]),
        ("not (id le 10)", [11, 12, 13, 14, 15, 16]),
        ("id in (1,3,5)", [1, 3, 5]),
        ("id in (1, 3, 5)", [1, 3, 5]),
        ("device_name in ('dev-02','dev-04')", [2, 4]),
        ("startswith(device_name,'dev-1')", [10, 11, 12, 13, 14, 15, 16]),
        ("endswith(device_name,'3')", [3, 13]),
        ("contains(device_name,'v-0')", [1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("substringof('-16',device_name)", [16]),
        ("tolower(device_name) eq 'dev-07'", [7]),
        ("toupper(device_name) eq 'DEV-07'", [7]),
        ("length(device_name) eq 6 and id eq 1", [1]),
        ("device_tag/any(t:t/tag_key eq 'site')", [1, 2]),
        ("device_tag/all(t:t/value eq 'canary')", [3]),
        ("belongs_to__application/app_name eq 'fleet-beta'", [13, 14, 15, 16]),
        ("belongs_to__application/any(a:a/slug eq 'org_a/fleet-beta')", [13, 14, 15, 16]),
        ("belongs_to__application eq 2", [13, 14, 15, 16]),
        ("note eq null and id lt 8", [1, 4, 7]),
        ("last_connectivity_event lt '2026-03-01T00:00:00Z'", [1, 2, 10, 11]),
        ("last_connectivity_event lt datetime'2026-03-01T00:00:00Z'", [1, 2, 10, 11]),
        ("device_tag/$count eq 2", [1, 2]),
        ("year(last_connectivity_event) eq 2026 and month(last_connectivity_event) eq 9", [9]),
        ("id add 1 eq 3", [2]),
        ("is_online eq true and id lt 6", [1, 3, 5]),
        ("device_environment_variable/any(v:v/name eq 'DEV_VAR_1' and v/value eq 'v4')", [5]),
        ("service_install/any(si:si/installs__service/any(s:s/service_name eq 'main'))", [1]),
        ("concat(device_name,'!') eq 'dev-01!'", [1]),
        ("indexof(device_name,'01') eq 4", [1]),
        ("trim(device_name) eq 'dev-01'", [1]),
    ],
)
def test_filter_operators_and_functions(api: Api, flt: str, expected: list[int]) -> None:
    """Every operator, function, lambda and path form in the observed list filters as balena does."""
    assert ids(api, f"$filter={flt}") == expected


def test_unquoted_datetime_is_malformed(api: Api) -> None:
    """A datetime without quotes: 400 Malformed url."""
    target = "/v7/device?$filter=created_at%20gt%202020-01-01T00:00:00Z"
    answer = api.get(target)
    assert (answer.status, answer.json()) == (400, f"Malformed url: '{target}'")


def test_expand_with_nested_options(api: Api) -> None:
    """$expand=nav($select;$filter;$orderby;$expand) works."""
    row = api.get(
        "/v7/application(1)?$select=id&$expand=owns__device($select=id;$filter=id lt 4;"
        "$orderby=id desc;$expand=device_tag($select=value;$filter=tag_key eq 'ring'))"
    ).d[0]
    assert row == {
        "id": 1,
        "owns__device": [
            {"id": 3, "device_tag": [{"value": "canary"}]},
            {"id": 2, "device_tag": [{"value": "canary"}]},
            {"id": 1, "device_tag": [{"value": "canary"}]},
        ],
    }


def test_expand_top_skip_per_parent(api: Api) -> None:
    """$top/$skip inside $expand apply to each parent's rows."""
    rows = api.get(
        "/v7/application?$select=id&$orderby=id asc&$expand=owns__device($select=id;$orderby=id asc;"
        "$top=2;$skip=1)"
    ).d
    assert rows == [
        {"id": 1, "owns__device": [{"id": 2}, {"id": 3}]},
        {"id": 2, "owns__device": [{"id": 14}, {"id": 15}]},
    ]


def test_expand_count_option_is_malformed(api: Api) -> None:
    """$expand=nav($count) is 400."""
    assert api.get("/v7/device?$expand=device_tag($count)").status == 400


def test_orderby_directions_and_default_descending(api: Api) -> None:
    """asc/desc, several keys and nav/field work; no direction sorts DESCENDING."""
    assert ids(api, "$filter=id le 3")[:3] == [1, 2, 3]
    bare = api.get("/v7/device?$select=id&$filter=id le 3&$orderby=id").d
    assert [r["id"] for r in bare] == [3, 2, 1]
    multi = api.get(
        "/v7/device?$select=id&$filter=id in (1,2,13,14)&$orderby=belongs_to__application desc,id asc"
    ).d
    assert [r["id"] for r in multi] == [13, 14, 1, 2]
    nav = api.get(
        "/v7/device?$select=id&$filter=id in (1,13)&$orderby=belongs_to__application/app_name desc"
    ).d
    assert [r["id"] for r in nav] == [13, 1]


def test_orderby_puts_nulls_last_ascending(api: Api) -> None:
    """Nulls sort last ascending and first descending, as in PostgreSQL."""
    up = api.get("/v7/device?$select=id&$filter=id le 4&$orderby=note asc,id asc").d
    down = api.get("/v7/device?$select=id&$filter=id le 4&$orderby=note desc,id asc").d
    assert [r["id"] for r in up] == [2, 3, 1, 4]
    assert [r["id"] for r in down] == [1, 4, 3, 2]


def test_top_and_skip(api: Api) -> None:
    """$top/$skip page; $top=0 gives {"d":[]}."""
    assert ids(api, "$top=3&$skip=2") == [3, 4, 5]
    assert api.get("/v7/device?$top=0").body == b'{"d":[]}'


@pytest.mark.parametrize("option", ["$top=-1", "$top=abc", "$skip=abc", "$search=dev", "$foo=1"])
def test_bad_paging_and_unknown_options_are_malformed(api: Api, option: str) -> None:
    """$top=-1, $top=abc, $skip=abc, $search, an unknown $ option: 400 Malformed url."""
    target = f"/v7/device?{option}"
    answer = api.get(target)
    assert (answer.status, answer.json()) == (400, f"Malformed url: '{target}'")


def test_count_path_with_filter(api: Api) -> None:
    """/v7/device/$count gives {"d": n} and takes $filter; device(5)/$count is 400."""
    assert api.get("/v7/device/$count").body == b'{"d":16}'
    assert api.get("/v7/device/$count?$filter=belongs_to__application eq 2").json() == {"d": 4}
    assert api.get("/v7/device(5)/$count").status == 400


def test_ignored_options_and_parameters(api: Api) -> None:
    """$count=true, $inlinecount=allpages, $format=json and unknown plain parameters are ignored."""
    plain = ids(api, "$filter=id lt 3")
    assert ids(api, "$filter=id lt 3&$count=true&$inlinecount=allpages&$format=json&foo=bar") == plain


def test_and_or_share_one_precedence_left_to_right(api: Api) -> None:
    """`a or b and c` groups as `(a or b) and c`."""
    assert ids(api, "$filter=id eq 1 or id eq 2 and id eq 2") == [2]
    assert ids(api, "$filter=id eq 1 or (id eq 2 and id eq 2)") == [1, 2]


def test_ne_matches_nulls(api: Api) -> None:
    """note ne 'note 2' also returns rows whose note is null."""
    assert ids(api, "$filter=id le 4 and note ne 'note 2'") == [1, 3, 4]


def test_plus_and_percent_escapes_are_decoded(api: Api) -> None:
    """'+' in the query is a space and %XX is decoded before the filter is parsed."""
    assert ids(api, "$filter=device_name+eq+%27dev-03%27") == [3]
    assert ids(api, "$filter=device_name%20eq%20'dev-03'") == [3]


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "device(5)",
        "device(id=5)",
        "device('5')",
        "device(uuid='05ababababababababababababababab')",
        "device(@id)?@id=5",
    ],
)
def test_device_key_forms(api: Api, key: str) -> None:
    """Numeric, id=, quoted, uuid alternate key and parameter alias all address device 5."""
    answer = api.get(f"/v7/{key}")
    assert answer.status == 200 and [r["id"] for r in answer.d] == [5]


@pytest.mark.parametrize(
    "key", ["device_tag(device=1,tag_key='site')", "device_tag(tag_key='site',device=1)"]
)
def test_composite_key_either_order(api: Api, key: str) -> None:
    """device_tag(device=…,tag_key=…) works in either order."""
    rows = api.get(f"/v7/{key}?$select=device,tag_key,value").d
    assert rows == [{"device": {"__id": 1}, "tag_key": "site", "value": "lab"}]


def test_other_alternate_keys(api: Api) -> None:
    """Env var (device, name) and application slug alternate keys."""
    var = api.get("/v7/device_environment_variable(device=1,name='DEV_VAR_1')?$select=value").d
    app = api.get("/v7/application(slug='org_a/fleet-alpha')?$select=id").d
    assert var == [{"value": "v0"}] and app == [{"id": 1}]


def test_non_unique_key_is_500(api: Api) -> None:
    """device(device_name='x') (not a unique field): 500, empty body."""
    answer = api.get("/v7/device(device_name='x')")
    assert (answer.status, answer.body) == (500, b"")


def test_bad_key_is_malformed(api: Api) -> None:
    """device(abc): 400 Malformed url."""
    answer = api.get("/v7/device(abc)")
    assert (answer.status, answer.json()) == (400, "Malformed url: '/v7/device(abc)'")


def test_navigation_after_key_is_500(api: Api) -> None:
    """device(5)/device_tag: 500, empty body."""
    answer = api.get("/v7/device(5)/device_tag")
    assert (answer.status, answer.body) == (500, b"")


def test_expand_of_computed_link_and_filtered_count(api: Api) -> None:
    """$expand follows the computed should_be_running__release; nav/$count takes a $filter."""
    row = api.get(
        "/v7/device(1)?$select=id&$expand=should_be_running__release($select=commit),"
        "device_tag/$count($filter=tag_key eq 'site')"
    ).d[0]
    assert row == {"id": 1, "should_be_running__release": [{"commit": "a1" * 8}], "device_tag": 1}


def test_deeply_nested_filter_is_answered(api: Api) -> None:
    """A pathologically nested filter gets an answer (400 or 500), never a dropped connection."""
    answer = api.get("/v7/device?$filter=" + "not(" * 2000 + "id eq 1" + ")" * 2000)
    assert answer.status in (400, 500)

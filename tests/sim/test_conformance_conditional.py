"""Conformance: what a compare-and-set write needs (observed facts, "Releases, pins and what a device should
run"): the connectivity stamp a PATCH may set, and the filters such writes carry — an OR chain of
``(id eq N and value eq 'v')`` terms (150 terms: 200, only the rows still matching change), a child
row's write guarded through ``device/any(d:…)``, a device DELETE guarded by ``is_online eq false and
last_connectivity_event lt …``, a device PATCH guarded by a ``device_tag/any(…)`` lambda."""

from __future__ import annotations

from tests.sim.conftest import Api
from tests.sim.test_conformance_writes import assert_empty_200, new_device

OLD = "2025-06-01T00:00:00.000Z"


def test_patch_sets_last_connectivity_event_as_given(api: Api) -> None:
    """PATCH of ``last_connectivity_event`` alone is 200 and the value is stored as given."""
    device = new_device(api)
    assert_empty_200(api.request("PATCH", f"/v7/device({device})", {"last_connectivity_event": OLD}))
    got = api.request("GET", f"/v7/device({device})?$select=last_connectivity_event").d
    assert got == [{"last_connectivity_event": OLD}]


def test_patch_of_a_stamp_that_is_not_a_date_is_400(api: Api) -> None:
    """A stamp that is not a date is refused like any wrongly typed value ("PATCH": 400, empty body)."""
    device = new_device(api)
    answer = api.request("PATCH", f"/v7/device({device})", {"last_connectivity_event": "yesterday"})
    assert (answer.status, answer.body) == (400, b"")


def test_or_chain_of_150_guarded_terms_changes_only_matching_rows(api: Api) -> None:
    """A PATCH whose filter ORs 150 ``(id eq N and value eq 'v')`` terms: 200; a row whose value is no
    longer the one its term names is not changed."""
    devices = [new_device(api) for _ in range(150)]
    rows = [api.db.insert("device_environment_variable", {"device": d, "name": "CAS", "value": f"v{d}"})
            for d in devices]
    api.db.conn.execute("UPDATE device_environment_variable SET value='theirs' WHERE id=?", (rows[7],))
    terms = " or ".join(f"(id eq {r} and value eq 'v{d}')" for r, d in zip(rows, devices, strict=True))
    target = f"/v7/device_environment_variable?$filter={terms}"
    assert_empty_200(api.request("PATCH", target, {"value": "new"}))
    got = dict(api.rows("SELECT id, value FROM device_environment_variable WHERE name='CAS'"))
    assert got == {r: ("theirs" if r == rows[7] else "new") for r in rows}


def test_child_write_guarded_through_its_owner(api: Api) -> None:
    """A child row's PATCH guarded by ``device/any(d:d/belongs_to__application eq …)`` changes only the
    rows whose device still matches."""
    here, moved = new_device(api), new_device(api)
    ids = [api.db.insert("device_environment_variable", {"device": d, "name": "OWN", "value": "a"})
           for d in (here, moved)]
    api.db.conn.execute("UPDATE device SET belongs_to__application=? WHERE id=?", (api.data.alpha, moved))
    filt = f"id in ({ids[0]},{ids[1]}) and device/any(d:d/belongs_to__application eq {api.data.beta})"
    assert_empty_200(api.request("PATCH", f"/v7/device_environment_variable?$filter={filt}", {"value": "b"}))
    assert api.rows("SELECT value FROM device_environment_variable WHERE name='OWN' ORDER BY id") == [
        ("b",), ("a",)]


def test_delete_guarded_by_offline_cut_off(api: Api) -> None:
    """A device DELETE guarded by ``is_online eq false and last_connectivity_event lt …`` leaves a device
    that came back online."""
    gone, back = new_device(api), new_device(api)
    for d in (gone, back):
        api.db.conn.execute("UPDATE device SET is_online=0, last_connectivity_event=? WHERE id=?", (OLD, d))
    assert_empty_200(api.request("PATCH", f"/v7/device({back})", {"is_online": True}))
    filt = (f"id in ({gone},{back}) and is_online eq false and "
            "last_connectivity_event lt datetime'2025-09-01T00:00:00.000Z'")
    assert_empty_200(api.request("DELETE", f"/v7/device?$filter={filt}"))
    assert api.rows(f"SELECT id FROM device WHERE id IN ({gone},{back})") == [(back,)]


def test_patch_guarded_by_a_tag_lambda(api: Api) -> None:
    """A device PATCH guarded by ``device_tag/any(…)`` changes only the devices with that tag."""
    tagged, plain = new_device(api), new_device(api)
    api.db.insert("device_tag", {"device": tagged, "tag_key": "ring", "value": "stable"})
    filt = (f"id in ({tagged},{plain}) and "
            "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'stable')")
    assert_empty_200(api.request("PATCH", f"/v7/device?$filter={filt}", {"note": "guarded"}))
    assert api.rows(f"SELECT id, note FROM device WHERE id IN ({tagged},{plain}) ORDER BY id") == [
        (tagged, "guarded"), (plain, None)]

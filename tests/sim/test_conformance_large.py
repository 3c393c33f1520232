"""Conformance on a 100,000-device table: keyset pages and a PATCH on a 200-id list are exact.

Speed is measured by bench/sim_speed.py, side by side, not asserted here."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import orjson
import pytest

from tests.sim.conftest import ALICE, Api

DEVICES = 100_000


@pytest.fixture(scope="module")
def big(api: Api) -> Iterator[Api]:
    """The module's API with 100,000 more devices in fleet-alpha."""
    rows = (
        {
            "belongs_to__application": api.data.alpha,
            "device_name": f"bulk-{i}",
            "is_of__device_type": api.data.rpi4,
        }
        for i in range(DEVICES)
    )
    api.db.insert_many("device", rows)
    yield api


def send(conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
    conn.request(method, target.replace(" ", "%20"), body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    assert response.status == 200
    return data


def test_keyset_pages_cover_the_table_in_order(big: Api) -> None:
    """$filter=id gt N&$orderby=id asc&$top=1000 returns the next 1,000 ids in ascending order."""
    conn = http.client.HTTPConnection("127.0.0.1", big.port, timeout=30)
    last = 0
    for _ in range(5):
        page = orjson.loads(send(
            conn, "GET", f"/v7/device?$select=id&$filter=id gt {last}&$orderby=id asc&$top=1000"))["d"]
        ids = [row["id"] for row in page]
        assert len(ids) == 1000
        assert ids == sorted(ids) and ids[0] > last
        last = ids[-1]
    tail = orjson.loads(send(conn, "GET", f"/v7/device?$select=id&$filter=id gt {last + 200_000}"
                             "&$orderby=id asc&$top=1000"))["d"]
    conn.close()
    assert tail == []


def test_patch_on_200_ids_changes_exactly_those(big: Api) -> None:
    """PATCH device?$filter=id in (…200 ids…) changes those 200 rows and no other."""
    ids = [50_000 + i * 97 for i in range(200)]
    conn = http.client.HTTPConnection("127.0.0.1", big.port, timeout=30)
    target = "/v7/device?$filter=id in (" + ",".join(map(str, ids)) + ")"
    assert send(conn, "PATCH", target, b'{"note": "batch 9"}') == b""
    conn.close()
    changed = big.rows(
        f"SELECT COUNT(*) FROM device WHERE note = 'batch 9' AND id IN ({','.join(map(str, ids))})"
    )
    assert changed == [(200,)]
    assert big.rows("SELECT COUNT(*) FROM device WHERE note = 'batch 9'") == [(200,)]

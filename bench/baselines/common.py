"""What the baseline clients share: one HTTP call with the usual 429 handling, the fleet listing, and the
per-device steps of each task, written the way balena's CLI and SDK do them.

Per device:

* ``set_env`` — style ``read-then-write`` (default): GET the device's variable by name; absent → POST,
  another value → PATCH by id, the same value → nothing. Style ``sdk-upsert``: what the SDK's
  ``envVar.set`` does — POST, and on ``409`` PATCH by the composite key (no read, no equality check).
* ``move`` — PATCH ``device(<id>)`` with the new fleet.
* ``remove_tag`` — DELETE ``device_tag(device=<id>,tag_key='<key>')`` for every device of the fleet.
* ``read`` (planning only) — the fleet-wide reads a script needs before it can decide anything:
  every device of the fleet and every variable of that name in it, each in one unpaged GET.

On ``429`` a request sleeps its own ``Retry-After`` (``0`` allowed, as received) and is sent again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

STYLES = ("read-then-write", "sdk-upsert")


@dataclass(slots=True)
class Counters:
    requests: int = 0
    throttled: int = 0
    errors: int = 0
    devices: int = 0
    rows: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def q(text: str) -> str:
    """Percent-encode an OData query value (spaces as %20, quotes and parentheses kept)."""
    return quote(text, safe="()',=$/:@*")


class Api:
    """One keep-alive session; ``call`` retries 429s after ``Retry-After`` and returns (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, counters: Counters) -> None:
        self.session = session
        self.root = api_url.rstrip("/") + "/v7/"
        self.counters = counters

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        while True:
            self.counters.requests += 1
            async with self.session.request(method, self.root + path, data=data, headers=headers) as r:
                raw = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After", "0")
            self.counters.statuses[status] = self.counters.statuses.get(status, 0) + 1
            if status == 429:
                self.counters.throttled += 1
                await asyncio.sleep(float(retry_after or 0))
                continue
            if status >= 400:
                self.counters.errors += 1
            return status, (orjson.loads(raw) if raw else None)

    async def rows(self, path: str, *, count: bool = True) -> list[dict[str, Any]]:
        status, body = await self.call("GET", path)
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"GET {path} answered {status}")
        rows: list[dict[str, Any]] = body["d"]
        if count:
            self.counters.rows += len(rows)
        return rows


async def fleet_id(api: Api, slug: str) -> int:
    rows = await api.rows(f"application?$select=id&$filter={q(f'slug eq {slug!r}')}", count=False)
    return int(rows[0]["id"])


async def list_devices(api: Api, task: Mapping[str, str]) -> tuple[list[int], dict[str, int]]:
    """The devices the task is about, in one unpaged GET (as the SDK lists a fleet's devices)."""
    ctx = {"fleet": await fleet_id(api, task["fleet"])}
    filt = f"belongs_to__application eq {ctx['fleet']}"
    if task["kind"] == "move":
        ctx["to_fleet"] = await fleet_id(api, task["to_fleet"])
        filt += (
            f" and device_tag/any(t:t/tag_key eq '{task['tag_key']}' and t/value eq '{task['tag_value']}')"
        )
    devices = await api.rows(f"device?$select=id,uuid&$filter={q(filt)}&$orderby=id%20asc")
    return [int(d["id"]) for d in devices], ctx


async def set_env(api: Api, device: int, name: str, value: str, style: str) -> None:
    resource = "device_environment_variable"
    key = f"{resource}(device={device},name='{name}')"
    if style == "sdk-upsert":
        status, _ = await api.call("POST", resource, {"device": device, "name": name, "value": value})
        if status == 409:
            await api.call("PATCH", key, {"value": value})
        return
    filt = q(f"device eq {device} and name eq '{name}'")
    rows = await api.rows(f"{resource}?$select=id,value&$filter={filt}")
    if not rows:
        status, _ = await api.call("POST", resource, {"device": device, "name": name, "value": value})
        if status == 409:  # created meanwhile: write it by its key
            await api.call("PATCH", key, {"value": value})
    elif rows[0]["value"] != value:
        await api.call("PATCH", f"{resource}({rows[0]['id']})", {"value": value})


async def do_device(
    api: Api, task: Mapping[str, str], ctx: Mapping[str, int], device: int, style: str
) -> None:
    kind = task["kind"]
    if kind == "set_env":
        await set_env(api, device, task["name"], task["value"], style)
    elif kind == "move":
        await api.call("PATCH", f"device({device})", {"belongs_to__application": ctx["to_fleet"]})
    elif kind == "remove_tag":
        await api.call("DELETE", f"device_tag(device={device},tag_key='{task['tag_key']}')")
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    api.counters.devices += 1


async def read_all(api: Api, task: Mapping[str, str]) -> None:
    """Planning only: every device of the fleet and every variable of the name there, unpaged."""
    fleet = await fleet_id(api, task["fleet"])
    await api.rows(f"device?$select=id,uuid&$filter={q(f'belongs_to__application eq {fleet}')}")
    filt = f"name eq '{task['name']}' and device/belongs_to__application eq {fleet}"
    await api.rows(f"device_environment_variable?$select=id,device,value&$filter={q(filt)}")


def session(api_key: str, connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=aiohttp.ClientTimeout(total=60),
    )


def report(counters: Counters, elapsed: float) -> None:
    """The client's own view, as one JSON line on stdout (the harness trusts the server's log more)."""
    out = {
        "requests": counters.requests,
        "throttled": counters.throttled,
        "errors": counters.errors,
        "devices": counters.devices,
        "rows": counters.rows,
        "elapsed": round(elapsed, 3),
        "statuses": {str(k): v for k, v in sorted(counters.statuses.items())},
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()

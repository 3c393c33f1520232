"""What the baseline scripts share: one HTTP call with the usual 429 handling, the listing that decides
what to send, and the per-device request of each task.

Both scripts first read the fleet once — ``set_env``: its devices and its variables of that name (two
unpaged GETs); ``move``: its devices with the tag; ``remove_tag``: its tags of that key — and then send
one request per device that is not yet as wanted:

* ``set_env`` — absent → POST (on ``409``, created meanwhile, PATCH by the natural key); another value →
  PATCH the variable by id; already the value → nothing.
* ``move`` — PATCH ``device(<id>)`` with the new fleet.
* ``remove_tag`` — DELETE ``device_tag(device=<id>,tag_key='<key>')`` per tagged device.

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

Step = tuple[str, int, int]  # (method, device id, row id: the variable to PATCH, else 0)


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


async def list_work(api: Api, task: Mapping[str, str]) -> tuple[list[Step], dict[str, int]]:
    """What to send, from one listing of the fleet (two for ``set_env``: its devices and its variables),
    as a script written with care does it: nothing is sent for a device already as wanted."""
    ctx = {"fleet": await fleet_id(api, task["fleet"])}
    fleet = ctx["fleet"]
    kind = task["kind"]
    if kind == "set_env":
        devices = await api.rows(f"device?$select=id&$filter={q(f'belongs_to__application eq {fleet}')}")
        filt = f"name eq '{task['name']}' and device/belongs_to__application eq {fleet}"
        rows = await api.rows(f"device_environment_variable?$select=id,device,value&$filter={q(filt)}")
        current = {int(r["device"]["__id"]): (int(r["id"]), str(r["value"])) for r in rows}
        steps: list[Step] = []
        for d in devices:
            device = int(d["id"])
            row = current.get(device)
            if row is None:
                steps.append(("POST", device, 0))
            elif row[1] != task["value"]:
                steps.append(("PATCH", device, row[0]))
        return steps, ctx
    if kind == "move":
        ctx["to_fleet"] = await fleet_id(api, task["to_fleet"])
        filt = (
            f"belongs_to__application eq {fleet} and device_tag/any(t:t/tag_key eq '{task['tag_key']}' "
            f"and t/value eq '{task['tag_value']}')"
        )
        devices = await api.rows(f"device?$select=id&$filter={q(filt)}&$orderby=id%20asc")
        return [("PATCH", int(d["id"]), 0) for d in devices], ctx
    if kind == "remove_tag":
        filt = f"tag_key eq '{task['tag_key']}' and device/belongs_to__application eq {fleet}"
        tags = await api.rows(f"device_tag?$select=device&$filter={q(filt)}&$orderby=device%20asc")
        return [("DELETE", int(t["device"]["__id"]), 0) for t in tags], ctx
    raise ValueError(f"unknown task kind {kind!r}; accepted: set_env, move, remove_tag")


async def do_step(api: Api, task: Mapping[str, str], ctx: Mapping[str, int], step: Step) -> None:
    """One device's one request (a POST that meets a 409, created meanwhile, is written by its key)."""
    method, device, row = step
    kind = task["kind"]
    if kind == "set_env" and method == "POST":
        resource = "device_environment_variable"
        body = {"device": device, "name": task["name"], "value": task["value"]}
        status, _ = await api.call("POST", resource, body)
        if status == 409:
            await api.call(
                "PATCH", f"{resource}(device={device},name='{task['name']}')", {"value": task["value"]}
            )
    elif kind == "set_env":
        await api.call("PATCH", f"device_environment_variable({row})", {"value": task["value"]})
    elif kind == "move":
        await api.call("PATCH", f"device({device})", {"belongs_to__application": ctx["to_fleet"]})
    else:
        await api.call("DELETE", f"device_tag(device={device},tag_key='{task['tag_key']}')")
    api.counters.devices += 1


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

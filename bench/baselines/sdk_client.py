"""The "sdk" baseline: balena's own Python SDK (``balena-sdk`` from PyPI), used as its documentation shows.

    BALENA_API_KEY=... python -m bench.baselines.sdk_client --api-url URL --task '{"kind": ...}' \
        --data-dir DIR

Pointed at the simulator through its settings file: both of the SDK's settings providers derive
``api_endpoint`` from ``balena_host`` and drop one passed in the constructor, so the only way to aim it
elsewhere is ``balena.cfg`` in its ``data_directory`` (``write_settings``). Retries on ``429`` are on:
``retry_rate_limited_request`` is written as ``true``, which the file provider reads as the boolean
``True``; the string ``'True'`` (what ``settings.set(..., True)`` stores) would leave the SDK's
``is True`` check false and every 429 an exception. The client checks both settings before it starts.
The token comes from ``BALENA_API_KEY`` (the SDK's fallback when no token is stored), so it is never
written to the settings file.

Per task, kind to the SDK where it has a choice (one listing of the fleet first, nothing sent for a
device that is already as wanted):

* ``set_env`` — list the fleet's devices and its ``NAME`` variables once, then
  ``models.device.env_var.set(id, NAME, VALUE)`` for every device without that value (the SDK's upsert:
  a POST, and on ``409`` a PATCH by the natural key).
* ``move`` — list the fleet's ``key=value`` tags once, then ``models.device.move(ids, fleet)`` with all
  ids in one call (the SDK reads them in chunks of 200 and PATCHes ``id in (…)`` per chunk).
* ``remove_tag`` — list the fleet's ``key`` tags once, then ``models.device.tags.remove(id, key)`` per
  tagged device (the SDK has no batched tag removal).

It prints its own counters as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import configparser
import json
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS_FILE = "balena.cfg"


def write_settings(data_dir: Path, api_url: str) -> Path:
    """``balena.cfg`` with every key the SDK's file provider insists on (it rewrites a file that lacks
    one with balenaCloud's defaults), the simulator as ``api_endpoint`` and retries on ``429`` on."""
    root = api_url.rstrip("/") + "/"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = configparser.ConfigParser()
    cfg["Settings"] = {
        "balena_host": "127.0.0.1",
        "api_version": "v7",
        "device_actions_endpoint_version": "v1",
        "api_endpoint": root,
        "pine_endpoint": root + "v7/",
        "builder_url": root,
        "data_directory": str(data_dir),
        "cache_directory": str(data_dir / "cache"),
        "image_cache_time": str(7 * 24 * 3600 * 1000),
        "token_refresh_interval": str(3600 * 1000),
        "timeout": str(30 * 1000),
        "request_limit_interval": "60",
        "retry_rate_limited_request": "true",  # read back as the boolean True; 'True' would not be
    }
    path = data_dir / SETTINGS_FILE
    with path.open("w") as out:
        cfg.write(out)
    return path


def open_sdk(data_dir: Path, api_url: str) -> Any:
    """A ``Balena`` instance on ``data_dir``'s settings, checked to talk to ``api_url`` with retries on."""
    from balena import Balena  # noqa: PLC0415 - imported only where the optional SDK is needed

    write_settings(data_dir, api_url)
    sdk = Balena({"data_directory": str(data_dir)})
    endpoint = sdk.settings.get("api_endpoint")
    retry = sdk.settings.get("retry_rate_limited_request")
    if endpoint != api_url.rstrip("/") + "/" or retry is not True:
        raise SystemExit(
            f"sdk settings not applied: api_endpoint={endpoint!r}, retry_rate_limited_request={retry!r} "
            f"(wanted {api_url.rstrip('/') + '/'!r} and True)"
        )
    return sdk


def run_task(sdk: Any, task: dict[str, str]) -> dict[str, int]:
    """Do the task with the SDK's documented calls; returns what it did."""
    device, fleet = sdk.models.device, task["fleet"]
    kind = task["kind"]
    if kind == "set_env":
        devices = device.get_all_by_application(fleet, {"$select": ["id"]})
        rows = device.env_var.get_all_by_application(
            fleet, {"$select": ["device", "value"], "$filter": {"name": task["name"]}}
        )
        current = {r["device"]["__id"]: r["value"] for r in rows}
        todo = [d["id"] for d in devices if current.get(d["id"]) != task["value"]]
        for device_id in todo:
            device.env_var.set(device_id, task["name"], task["value"])
        return {"devices": len(todo), "rows": len(devices) + len(rows)}
    if kind == "move":
        tags = device.tags.get_all_by_application(
            fleet,
            {"$select": ["device"], "$filter": {"tag_key": task["tag_key"], "value": task["tag_value"]}},
        )
        ids = sorted(t["device"]["__id"] for t in tags)
        if ids:
            device.move(ids, task["to_fleet"])
        return {"devices": len(ids), "rows": len(tags)}
    if kind == "remove_tag":
        tags = device.tags.get_all_by_application(
            fleet, {"$select": ["device"], "$filter": {"tag_key": task["tag_key"]}}
        )
        ids = sorted(t["device"]["__id"] for t in tags)
        for device_id in ids:
            device.tags.remove(device_id, task["tag_key"])
        return {"devices": len(ids), "rows": len(tags)}
    raise ValueError(f"unknown task kind {kind!r}; accepted: set_env, move, remove_tag")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--task", required=True, help="the task as JSON (bench.scenarios.Task)")
    parser.add_argument("--data-dir", required=True, help="the SDK's data_directory (balena.cfg goes there)")
    args = parser.parse_args()
    started = time.monotonic()
    sdk = open_sdk(Path(args.data_dir), args.api_url)
    done = run_task(sdk, json.loads(args.task))
    out = {**done, "elapsed": round(time.monotonic() - started, 3)}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    cli()

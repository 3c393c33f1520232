"""The "loop" baseline: one device at a time, the way the balena CLI and SDK do fleet-wide changes.

    BALENA_API_KEY=... python -m bench.loop_client --api-url URL --task '{"kind": "set_env", ...}'

It lists the fleet's devices in one GET, then handles each device in turn over one keep-alive
connection (see ``bench/baseline.py`` for the per-device steps); a ``429`` sleeps ``Retry-After`` and
sends the same request again. At the end it prints its own counters as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.baselines.common import STYLES, Api, Counters, do_device, list_devices, read_all, report, session


async def main(api_url: str, api_key: str, task: dict[str, str], style: str) -> Counters:
    counters = Counters()
    async with session(api_key, connections=1) as http:
        api = Api(http, api_url, counters)
        if task["kind"] == "read":
            await read_all(api, task)
            return counters
        devices, ctx = await list_devices(api, task)
        for device in devices:
            await do_device(api, task, ctx, device, style)
    return counters


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--task", required=True, help="the task as JSON (bench.scenarios.Task)")
    parser.add_argument("--style", choices=STYLES, default=STYLES[0], help="set_env per device")
    args = parser.parse_args()
    started = time.monotonic()
    counters = asyncio.run(
        main(args.api_url, os.environ["BALENA_API_KEY"], json.loads(args.task), args.style)
    )
    report(counters, time.monotonic() - started)


if __name__ == "__main__":
    cli()

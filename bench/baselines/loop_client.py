"""The "loop" baseline: one device at a time over one keep-alive connection, after one listing.

    BALENA_API_KEY=... python -m bench.baselines.loop_client --api-url URL --task '{"kind": "set_env", ...}'

It reads the fleet once (``bench/baselines/common.py``), then sends each device's request in turn; a
``429`` sleeps ``Retry-After`` and sends the same request again. At the end it prints its own counters
as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.baselines.common import Api, Counters, do_step, list_work, report, session


async def main(api_url: str, api_key: str, task: dict[str, str]) -> Counters:
    counters = Counters()
    async with session(api_key, connections=1) as http:
        api = Api(http, api_url, counters)
        steps, ctx = await list_work(api, task)
        for step in steps:
            await do_step(api, task, ctx, step)
    return counters


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--task", required=True, help="the task as JSON (bench.scenarios.Task)")
    args = parser.parse_args()
    started = time.monotonic()
    counters = asyncio.run(main(args.api_url, os.environ["BALENA_API_KEY"], json.loads(args.task)))
    report(counters, time.monotonic() - started)


if __name__ == "__main__":
    cli()

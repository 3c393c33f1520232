"""The "async-fixed" baseline: a typical aiohttp script with a fixed concurrency of 16.

    BALENA_API_KEY=... python -m bench.baselines.async_fixed --api-url URL --task '{"kind": "set_env", ...}'

It reads the fleet once, as the loop does (``bench/baselines/common.py``), then 16 workers take devices
from a queue; each request that gets ``429`` sleeps its own ``Retry-After`` and is sent again — the
workers do not coordinate. At the end it prints its own counters as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.baselines.common import Api, Counters, Step, do_step, list_work, report, session

WORKERS = 16


async def main(api_url: str, api_key: str, task: dict[str, str], workers: int) -> Counters:
    counters = Counters()
    async with session(api_key, connections=workers) as http:
        api = Api(http, api_url, counters)
        steps, ctx = await list_work(api, task)
        queue: asyncio.Queue[Step] = asyncio.Queue()
        for step in steps:
            queue.put_nowait(step)

        async def worker() -> None:
            while not queue.empty():
                await do_step(api, task, ctx, queue.get_nowait())

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())
    return counters


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--task", required=True, help="the task as JSON (bench.scenarios.Task)")
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    started = time.monotonic()
    counters = asyncio.run(
        main(args.api_url, os.environ["BALENA_API_KEY"], json.loads(args.task), args.workers)
    )
    report(counters, time.monotonic() - started)


if __name__ == "__main__":
    cli()

"""How fast is ``bulkops sim``? One keep-alive client against 100,000 seeded devices, no rate limit.

    .venv/bin/python bench/sim_speed.py [--devices 100000] [--requests 2000] [--profile FILE]

The simulator runs in its own process (``python -m bulkops.sim``), as it does for a user; with
``--profile FILE`` that process runs under cProfile and writes its statistics to FILE on exit.
Targets: >= 1,500 simple GETs/s, a PATCH on 200 ids < 20 ms, paging no slower at the end of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def start_server(devices: int, profile: str | None) -> tuple[subprocess.Popen[str], str, str]:
    runner = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    cmd = [
        *runner,
        "-m",
        "bulkops.sim",
        "--port",
        "0",
        "--seed-demo",
        str(devices),
        "--rate-limit",
        "none",
        "--converge-delay",
        "3600",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip().split("=", 1)[1]
    key = proc.stdout.readline().strip().split("=", 1)[1]
    return proc, url, key


async def timed_gets(http: aiohttp.ClientSession, url: str, ids: list[int], tasks: int) -> float:
    """Requests per second for GET device(id)?$select=id,note spread over ``tasks`` tasks."""
    chunks = [ids[i::tasks] for i in range(tasks)]

    async def worker(chunk: list[int]) -> None:
        for device in chunk:
            async with http.get(f"{url}/v7/device({device})?$select=id,note") as r:
                assert r.status == 200, r.status
                await r.read()

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in chunks))
    return len(ids) / (time.perf_counter() - start)


async def timed_patches(http: aiohttp.ClientSession, url: str, ids: list[int], rounds: int) -> list[float]:
    """Milliseconds per PATCH device?$filter=id in (200 ids)."""
    rng = random.Random(1)
    out = []
    for n in range(rounds):
        chosen = rng.sample(ids, 200)
        query = f"$filter=id in ({','.join(map(str, chosen))})"
        start = time.perf_counter()
        async with http.patch(f"{url}/v7/device?{query}", json={"note": f"bench {n}"}) as r:
            assert r.status == 200, r.status
            await r.read()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def timed_pages(http: aiohttp.ClientSession, url: str, after_ids: list[int]) -> list[float]:
    """Milliseconds per keyset page of 1,000 rows starting after each id."""
    out = []
    for after in after_ids:
        query = f"$select=id,device_name&$orderby=id asc&$top=1000&$filter=id gt {after}"
        start = time.perf_counter()
        async with http.get(f"{url}/v7/device?{query}") as r:
            assert r.status == 200, r.status
            rows = (await r.json())["d"]
        out.append((time.perf_counter() - start) * 1000)
        assert rows, "empty page"
    return out


async def bench(url: str, key: str, requests: int) -> list[tuple[str, str, str]]:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        async with http.get(f"{url}/v7/device?$select=id&$orderby=id asc") as r:
            ids = [row["id"] for row in (await r.json())["d"]]
        rng = random.Random(0)
        sample = [rng.choice(ids) for _ in range(requests)]
        await timed_gets(http, url, sample[:100], 1)  # warm up
        seq = await timed_gets(http, url, sample, 1)
        conc = await timed_gets(http, url, sample, 4)
        patches = await timed_patches(http, url, ids, 30)
        first, last = ids[0] - 1, ids[-1001] if len(ids) > 2000 else ids[0]
        head = await timed_pages(http, url, [first] * 10)
        tail = await timed_pages(http, url, [last] * 10)
    return [
        ("GET device(id)?$select=id,note, 1 task", f"{seq:,.0f} req/s", ">= 1,500 req/s"),
        ("same, 4 concurrent tasks", f"{conc:,.0f} req/s", ">= 1,500 req/s"),
        (
            "PATCH device?$filter=id in (200 ids)",
            f"{statistics.median(patches):.1f} ms median ({max(patches):.1f} max)",
            "< 20 ms",
        ),
        ("keyset page of 1,000 rows, table start", f"{statistics.median(head):.1f} ms median", ""),
        ("keyset page of 1,000 rows, table end", f"{statistics.median(tail):.1f} ms median", "not slower"),
        ("visible devices (demo key)", f"{len(ids):,}", ""),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile the simulator into FILE")
    args = parser.parse_args()
    started = time.perf_counter()
    proc, url, key = start_server(args.devices, args.profile)
    ready = time.perf_counter() - started
    try:
        rows = asyncio.run(bench(url, key, args.requests))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    rows.insert(0, (f"start + seed {args.devices:,} devices", f"{ready:.1f} s", "a few seconds"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<28}  target")
    for name, result, target in rows:
        print(f"{name:<{width}}  {result:<28}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

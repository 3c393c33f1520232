"""What a staged rollout costs the API, measured against the simulator (not a timed test):

* gate polling: GET requests per poll per 200 devices of a stage, from the simulator's request log,
  with and without a stop switch (one more GET per poll);
* the abort overshoot: writes that still go out after the abort rule trips mid-stage, against
  ``max_concurrency`` — creates (one POST per target) and batched PATCHes, every write failing with 503
  after a 20 ms delay so that the workers really have requests in flight when the rule trips.

    .venv/bin/python -m bench.rollout_costs [--devices 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bulkops import log, make_plan, new_run, open_client, parse_job
from bulkops.apply.rollout import apply_rollout
from bulkops.journal.gates import GateStore
from bulkops.model import RunState
from bulkops.sim.server import SimConfig, SimServer

GATE_SELECT = "should_be_running__release"


def _job(action: str, rollout: str, options: str, filt: str = "is_online eq true") -> str:
    return "\n".join(['name = "bench-rollout"', "[target]", 'resource = "device"', 'fleet = "acme/gateway"',
                      f'filter = "{filt}"', "[action]", action, "[rollout]", rollout, "[options]",
                      options]) + "\n"


async def _run(sim: SimServer, text: str) -> tuple[Any, Path]:
    job = parse_job(text)
    async with open_client(sim.url, sim.api_key, job.options) as client:
        plan = await make_plan(job, client, api_url=sim.url)
        journal = new_run(plan)
        summary = await apply_rollout(plan, client, journal, new_run=new_run)
        journal.close()
    return summary, journal.path


def gate_cost(devices: int, *, switch: bool) -> dict[str, Any]:
    sim = SimServer(SimConfig(seed_demo=devices, tick_interval=0.1, converge_delay=0.3)).start_in_thread()
    try:
        rollout = ('stages = ["10%", "100%"]\nwait = 0.2\npoll_every = 0.25\ngate_timeout = 60'
                   + ('\nstop_switch = "BULKOPS_STOP"' if switch else ""))
        start = len(sim.request_log.entries())
        text = _job('type = "pin"\nrelease = "2.0.0"', rollout, "batch_size = 200")
        summary, path = anyio.run(_run, sim, text)
        assert summary.state is RunState.DONE, summary.message
        log = sim.request_log.entries()[start:]
        store = GateStore.existing(path)
        assert store is not None
        stages = store.stages()
        store.close()
        gate_gets = sum(1 for e in log if e.method == "GET" and GATE_SELECT in e.url)
        switch_path = "/application_environment_variable?"
        switch_gets = sum(1 for e in log if e.method == "GET" and switch_path in e.url)
        polls = sum(s.polls for s in stages)
        device_polls = sum(s.targets * s.polls for s in stages)
        return {
            "devices_seeded": devices, "stop_switch": switch,
            "stages": [{"targets": s.targets, "polls": s.polls} for s in stages],
            "gate_gets": gate_gets,
            "expected_gets": sum(math.ceil(s.targets / 200) * s.polls for s in stages),
            "switch_gets": switch_gets, "polls": polls, "stage_count": len(stages),
            "gets_per_200_devices_per_poll": round(gate_gets / (device_polls / 200), 3),
        }
    finally:
        sim.stop()


def overshoot(devices: int, *, concurrency: int, creates: bool) -> dict[str, Any]:
    method = "POST" if creates else "PATCH"
    sim = SimServer(SimConfig(seed_demo=devices, tick_interval=3600, converge_delay=3600,
                              faults=f"503=1,latency=20ms,methods={method}")).start_in_thread()
    try:
        trip_at = 3 * concurrency if creates else 1  # failures counted when the rule trips
        if creates:
            action, options = 'type = "set_env"\nname = "BENCH_FLAG"\nvalue = "on"', ""
            rule = f"abort = {{ failures = {trip_at - 1}, min_attempted = 1 }}"
        else:
            action, options = 'type = "pin"\nrelease = "2.0.0"', "batch_size = 10\n"
            rule = "abort = { failures = 0, min_attempted = 1 }"
        text = _job(action, f'stages = ["100%"]\ngate = "none"\n{rule}',
                    f"{options}max_concurrency = {concurrency}\nmax_attempts = 1", filt="id gt 0")
        started = time.monotonic()
        summary, _ = anyio.run(_run, sim, text)
        writes = [e for e in sim.request_log.entries() if e.method == method]
        assert summary.state is RunState.ABORTED, summary.message
        tripped = trip_at if creates else 1  # requests answered when the rule tripped
        return {
            "write": method, "max_concurrency": concurrency, "writes": len(writes),
            "writes_when_tripped": tripped, "after_trip": len(writes) - tripped,
            "within_concurrency": len(writes) - tripped <= concurrency,
            "not_attempted": summary.counts["not_attempted"], "seconds": round(time.monotonic() - started, 2),
        }
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000, help="demo devices to seed (default 10000)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    log.setup(0)
    with tempfile.TemporaryDirectory() as home:
        os.environ["BULKOPS_HOME"] = home
        gates = [gate_cost(args.devices, switch=s) for s in (False, True)]
        over = [overshoot(min(args.devices, 4000), concurrency=c, creates=cr)
                for cr in (True, False) for c in (4, 16, 32)]
    print("gate polling (GETs per poll per 200 devices of a stage)")
    for g in gates:
        print(f"  stop switch {'on ' if g['stop_switch'] else 'off'}  stages {g['stages']}  gate GETs "
              f"{g['gate_gets']} (ceil(n/200) x polls = {g['expected_gets']})  per 200 devices per poll "
              f"{g['gets_per_200_devices_per_poll']}  switch GETs {g['switch_gets']} for {g['polls']} polls "
              f"and {g['stage_count']} stages written")
    print("abort overshoot (writes sent after the rule tripped, against max_concurrency)")
    for o in over:
        print(f"  {o['write']:<5} max_concurrency {o['max_concurrency']:>2}  writes {o['writes']:>4}  "
              f"after the trip {o['after_trip']:>2}  within {o['within_concurrency']}  "
              f"not attempted {o['not_attempted']}")
    if args.json:
        data = {"gates": gates, "overshoot": over}
        Path(args.json).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return 0 if all(o["within_concurrency"] for o in over) else 1


if __name__ == "__main__":
    sys.exit(main())

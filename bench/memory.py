"""Peak memory of ``bulkops plan`` and ``bulkops apply`` at a large number of targets.

Scenario 3's data (the ``ring`` tag on 90 % of a fleet's devices, so the plan holds every device: 90 %
deletes, 10 % no-ops) at each size, on a simulator with no rate limit — memory is the measure here,
not pacing. ``bulkops plan JOB -o PLAN`` and then ``bulkops apply PLAN --yes`` run as the user runs
them, each in its own process started by ``bench/spawn.py``, whose ``ru_maxrss`` is the peak resident
set size of that process alone.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.metrics import shown
from bench.scenarios import SCENARIOS, check, job_toml, seed
from bulkops.sim.server import SimConfig, SimServer

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SCENARIO = SCENARIOS[3]


def one_size(
    targets: int, work: Path, *, seed_value: int = 0, timeout: float = 1800.0
) -> list[dict[str, Any]]:
    """Plan and apply scenario 3 over ``targets`` devices; one result per step."""
    sim = SimServer(
        SimConfig(
            seed_demo=0, seed=seed_value, rate_limit="none", tick_interval=3600.0, converge_delay=3600.0
        )
    ).start_in_thread()
    out: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        seeded = seed(sim.db, sim.demo, SCENARIO, targets, seed=seed_value)
        seeding = time.perf_counter() - t0
        run_dir = work / f"memory-{targets}"
        run_dir.mkdir(parents=True, exist_ok=True)
        job = run_dir / "job.toml"
        job.write_text(job_toml(SCENARIO, seeded))
        plan = run_dir / "job.plan.json"
        env = {
            **os.environ,
            "BALENA_API_KEY": sim.api_key,
            "BULKOPS_HOME": str(run_dir / "home"),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("BALENA_API_URL", None)
        steps = {
            "plan": [PY, "-m", "bulkops", "plan", str(job), "-o", str(plan), "--api-url", sim.url],
            "apply": [PY, "-m", "bulkops", "apply", str(plan), "--yes", "--api-url", sim.url],
        }
        for step, cmd in steps.items():
            sim.request_log.clear()
            log = run_dir / f"{step}.log"
            child = measure.run_child(cmd, env=env, cwd=run_dir, log=log, cap=timeout)
            entries = sim.request_log.entries()
            after = check(sim.db, sim.demo, SCENARIO, seeded)
            out.append(
                {
                    "targets": targets,
                    "step": step,
                    "exit_code": child.returncode,
                    "timed_out": child.capped,
                    "wall_s": round(child.wall, 2),
                    "cpu_s": round(child.cpu, 2),
                    "peak_mb": round(child.peak_mb, 1),
                    "requests": len(entries),
                    "plan_file_mb": round(plan.stat().st_size / 2**20, 1) if plan.exists() else None,
                    "correct": after.correct if step == "apply" else None,
                    "total": after.total,
                    "seeding_s": round(seeding, 1),
                    "log": shown(log),
                }
            )
            print(
                f"bench:   memory {targets} {step}: {out[-1]['peak_mb']} MB, {out[-1]['wall_s']} s",
                file=sys.stderr,
                flush=True,
            )
            if child.returncode != 0:
                break
    finally:
        sim.stop()
    return out


def goals(rows: list[dict[str, Any]], *, ratio: float = 1.5, ceiling: float = 300.0) -> list[dict[str, Any]]:
    """Per step: peak at the largest size ≤ ``ratio`` × peak at the smallest, and under ``ceiling`` MB."""
    out: list[dict[str, Any]] = []
    for step in ("plan", "apply"):
        got = sorted(
            (r for r in rows if r["step"] == step and r["exit_code"] == 0), key=lambda r: r["targets"]
        )
        if len(got) < 2:
            continue
        small, large = got[0], got[-1]
        grown = large["peak_mb"] / small["peak_mb"]
        out.append(
            {
                "goal": f"{step}: peak at {large['targets']:,} ≤ {ratio:g}× that at {small['targets']:,}",
                "measured": f"{large['peak_mb']:.0f} MB / {small['peak_mb']:.0f} MB = {grown:.2f}×",
                "met": grown <= ratio,
            }
        )
        out.append(
            {
                "goal": f"{step}: peak at {large['targets']:,} targets < {ceiling:g} MB",
                "measured": f"{large['peak_mb']:.0f} MB",
                "met": large["peak_mb"] < ceiling,
            }
        )
    return out

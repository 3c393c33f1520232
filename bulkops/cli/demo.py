"""``make demo``: one job end to end against the embedded simulator.

Starts ``bulkops sim`` in-process with 2,000 demo devices behind a balena-like rate limit, then runs the
real CLI, step by step, as a user would: validate, plan (the preview), apply (with progress), report,
the undo's preview. Everything it writes goes to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bulkops.sim.server import SimConfig, SimServer

JOB = Path(__file__).resolve().parents[2] / "jobs" / "log-level-fleetwide.toml"
DEVICES = 2000
RATE_LIMIT = "fixed:150/10s"


def _step(title: str, argv: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)) -> str:
    print(f"\n── {title}\n$ bulkops {shlex.join(argv)}", flush=True)
    proc = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "bulkops", *argv], env=env, check=False, text=True,
        stdout=subprocess.PIPE,
    )
    print(proc.stdout, end="", flush=True)
    if proc.returncode not in ok:
        raise SystemExit(f"demo: 'bulkops {argv[0]}' exited {proc.returncode}")
    return proc.stdout


def main() -> int:
    job = str(JOB)
    sim = SimServer(SimConfig(seed_demo=DEVICES, rate_limit=RATE_LIMIT, converge_delay=2.0))
    sim.start_in_thread()
    try:
        with tempfile.TemporaryDirectory(prefix="bulkops-demo-") as home:
            print(f"bulkops demo: simulator at {sim.url} with {DEVICES} devices, rate limit {RATE_LIMIT}")
            env = dict(os.environ, BALENA_API_URL=sim.url, BALENA_API_KEY=sim.api_key, BULKOPS_HOME=home)
            plan = str(Path(home) / "fleetwide.plan.json")
            _step("1. validate the job file (no request sent)", ["validate", job], env)
            _step("2. plan: read the fleet, compute the diff, write the plan", ["plan", job, "-o", plan], env)
            _step("3. apply the plan", ["apply", plan, "--yes"], env)
            runs = _step("4. the run is journaled", ["runs"], env)
            run_id = _last_run_id(runs)
            csv_path = Path(home) / "report.csv"
            _step("5. report: every target accounted for", ["report", run_id, "--csv", str(csv_path)], env)
            print("\n".join(csv_path.read_text().splitlines()[:4]) + "\n…")
            _step("6. plan it again: everything is already in place", ["plan", job, "-o", plan], env)
            undo = str(Path(home) / "undo.plan.json")
            _step("7. undo: a new plan from the journal's before-values", ["undo", run_id, "-o", undo], env)
            _step("8. apply the undo: the fleet is back as it was", ["apply", undo, "--yes"], env)
    finally:
        sim.stop()
    print("\nbulkops demo: done.")
    return 0


def _last_run_id(runs_output: str) -> str:
    rows = [line for line in runs_output.splitlines() if line.strip() and not line.startswith("RUN")]
    ids = [row.split()[0] for row in rows]
    if not ids:
        raise SystemExit("demo: no run listed by 'bulkops runs'")
    return ids[-1]


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark harness: every case (scenario × fleet size × limit policy) × every client, each on a
fresh simulator with the same data; then start-up on its own and peak memory at large plans. Writes
``results.md`` and ``results.json`` (``results-quick.*`` with ``--quick``).

    python -m bench.run [--devices 5000,20000] [--limit 1000/10s] [--policies fixed,fixed-ceil,bucket,drop]
                        [--scenarios 1,2,3] [--clients loop,async-fixed,sdk,bulkops] [--memory 100000,1000000]
                        [--out bench] [--quick]

The simulator serves from a thread of this process (it answers well over ten times faster than the
limit admits); each client runs in its own subprocess, so its CPU time and peak memory are its own.
Requests and 429s are counted by the simulator's request log; correctness is read from its database.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from bench import measure, memory, metrics, report
from bench.limits import Limit, Policy, parse_budget
from bench.scenarios import SCENARIOS, Scenario, Seeded, check, job_toml, probe_path, seed
from bulkops.sim.server import SimConfig, SimServer

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("loop", "async-fixed", "sdk", "bulkops")
PEERS = ("loop", "async-fixed", "sdk")
PY = sys.executable
SDK_MISSING = "balena-sdk is not installed (`make bench` installs it: pip install -e '.[bench]')"


@dataclass(frozen=True, slots=True)
class Config:
    devices: tuple[int, ...] = (5000, 20_000)
    limit: str = "1000/10s"
    policies: tuple[str, ...] = tuple(p.value for p in Policy)
    scenarios: tuple[int, ...] = (1, 2, 3)
    policy_scenarios: tuple[int, ...] = (1,)  # scenarios also run under the other policies
    clients: tuple[str, ...] = CLIENTS
    memory: tuple[int, ...] = (100_000, 1_000_000)
    out: str = "bench"
    cap: float = 60.0  # seconds a baseline client may run before it is stopped and extrapolated; 0: none
    bulkops_timeout: float = 900.0
    drop_at: float = 15.0
    burst: int = 0  # token bucket size; 0: a tenth of the budget
    startup_runs: int = 3  # start-up is the median of this many runs per client
    seed: int = 0
    quick: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    scenario: Scenario
    devices: int
    limit: Limit

    @property
    def key(self) -> str:
        return f"{self.scenario.key}/{self.devices}/{self.limit.policy.value}"


def cases(cfg: Config) -> list[Case]:
    """Every scenario at every size under the fixed window; the other policies at the first size."""
    points, window = parse_budget(cfg.limit)

    def limit(policy: Policy) -> Limit:
        return Limit(policy, points, window, burst=cfg.burst, drop_at=cfg.drop_at)

    out: list[Case] = []
    if Policy.FIXED.value in cfg.policies:
        out += [Case(SCENARIOS[s], n, limit(Policy.FIXED)) for n in cfg.devices for s in cfg.scenarios]
    for name in cfg.policies:
        if name != Policy.FIXED.value:
            out += [Case(SCENARIOS[s], cfg.devices[0], limit(Policy(name))) for s in cfg.policy_scenarios]
    return out


def sdk_available() -> bool:
    return importlib.util.find_spec("balena") is not None


def command(client: str, scenario: Scenario, url: str, job: Path, run_dir: Path) -> list[str]:
    task = json.dumps(asdict(scenario.task))
    if client == "loop":
        return [PY, "-m", "bench.baselines.loop_client", "--api-url", url, "--task", task]
    if client == "async-fixed":
        return [PY, "-m", "bench.baselines.async_fixed", "--api-url", url, "--task", task]
    if client == "sdk":
        data = str(run_dir / "sdk-data")
        return [PY, "-m", "bench.baselines.sdk_client", "--api-url", url, "--task", task, "--data-dir", data]
    return [PY, "-m", "bulkops", "run", str(job), "--yes", "--api-url", url]


def _probe(url: str, key: str, path: str, times: int = 5) -> float:
    """Median milliseconds the simulator takes for ``path``: the harness checks it is not the bottleneck."""
    import urllib.request  # noqa: PLC0415 - only the probe needs it

    took = []
    for _ in range(times):
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as answer:  # loopback simulator
            answer.read()
        took.append(1000 * (time.perf_counter() - start))
    return round(sorted(took)[times // 2], 2)


def one_run(cfg: Config, case: Case, client: str, work: Path) -> dict[str, Any]:
    """A fresh simulator, the scenario's data, one client run under the case's limit, the measurements."""
    sim = SimServer(
        SimConfig(seed_demo=0, seed=cfg.seed, rate_limit="none", tick_interval=3600.0, converge_delay=3600.0)
    ).start_in_thread()
    try:
        seeded = seed(sim.db, sim.demo, case.scenario, case.devices, seed=cfg.seed)
        before = check(sim.db, sim.demo, case.scenario, seeded)
        run_dir = work / case.key.replace("/", "-") / client
        run_dir.mkdir(parents=True, exist_ok=True)
        job = run_dir / "job.toml"
        job.write_text(job_toml(case.scenario, seeded))
        env = {
            **os.environ,
            "BALENA_API_KEY": sim.api_key,
            "BULKOPS_HOME": str(run_dir / "home"),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("BALENA_API_URL", None)
        probe_ms = _probe(sim.url, sim.api_key, probe_path(sim.db, case.scenario))
        cmd = command(client, case.scenario, sim.url, job, run_dir)
        sim.rate_limiter.set_policy(case.limit.spec())  # fresh: the client's first request opens a window
        applied_at = time.time()
        sim.request_log.clear()
        cap = cfg.bulkops_timeout if client == "bulkops" else (cfg.cap or None)
        child = measure.run_child(cmd, env=env, cwd=run_dir, log=run_dir / "client.log", cap=cap)
        time.sleep(0.05)  # answers in flight when a capped client was stopped reach the log
        entries = sim.request_log.entries()
        after = check(sim.db, sim.demo, case.scenario, seeded)
    finally:
        sim.stop()
    res = metrics.collect(
        limit=case.limit,
        client=client,
        seeded=seeded,
        before=before,
        after=after,
        child=child,
        entries=entries,
        applied_at=applied_at,
        run_dir=run_dir,
    )
    res["sim_probe_ms"] = probe_ms
    res["bulkops_floor_estimate"] = seeded.floor_estimate
    return res


def startup(clients: tuple[str, ...], work: Path, times: int = 3) -> list[dict[str, Any]]:
    """Each client's fixed cost on its own: the interpreter and its imports, no request (bulkops: a
    ``validate``, which also reads a job file). Median of ``times`` runs."""
    job = work / "startup.toml"
    job.write_text(job_toml(SCENARIOS[1], Seeded(1, 1, 0, {}, {}, 0, 0)))
    cmds = {
        "loop": [PY, "-c", "import bench.baselines.loop_client"],
        "async-fixed": [PY, "-c", "import bench.baselines.async_fixed"],
        "sdk": [PY, "-c", "import bench.baselines.sdk_client, balena"],
        "bulkops": [PY, "-m", "bulkops", "validate", str(job)],
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = []
    for client in clients:
        got = [
            measure.run_child(cmds[client], env=env, cwd=work, log=work / f"startup-{client}.log", cap=60.0)
            for _ in range(times)
        ]
        ok = all(g.returncode == 0 for g in got)
        out.append(
            {
                "client": client,
                "ok": ok,
                "wall_s": round(statistics.median(g.wall for g in got), 3),
                "cpu_s": round(statistics.median(g.cpu for g in got), 3),
                "peak_mb": round(statistics.median(g.peak_mb for g in got), 1),
            }
        )
    return out


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def run(cfg: Config) -> dict[str, Any]:
    started = time.time()
    clients = cfg.clients
    skipped = {}
    if "sdk" in clients and not sdk_available():
        clients = tuple(c for c in clients if c != "sdk")
        skipped["sdk"] = SDK_MISSING
        print(f"bench: skipping the sdk client: {SDK_MISSING}", file=sys.stderr, flush=True)
    results: dict[str, Any] = {
        "config": asdict(cfg),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_before": loadavg(),
        "skipped_clients": skipped,
        "sdk_version": _sdk_version() if "sdk" in clients else None,
        "cases": [],
    }
    work = Path(cfg.out).resolve() / "out"  # job files, client logs, bulkops homes (kept for reading)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results["startup"] = startup(clients, work, times=cfg.startup_runs)
    for case in cases(cfg):
        runs = []
        for client in clients:
            print(f"bench: {case.key}, client {client} ...", file=sys.stderr, flush=True)
            res = one_run(cfg, case, client, work)
            print(f"bench:   {report.one_line(res)}", file=sys.stderr, flush=True)
            if res["correct"] < res["total"] and not res["capped"]:
                tail = Path(res["log"]).resolve().read_text(errors="replace").splitlines()[-15:]
                res["log_tail"] = tail
            runs.append(res)
        entry: dict[str, Any] = {
            "key": case.key,
            "number": case.scenario.number,
            "scenario": case.scenario.key,
            "title": case.scenario.title,
            "devices": case.devices,
            "policy": case.limit.policy.value,
            "limit": case.limit.describe(),
            "spec": case.limit.spec(),
            "floor_formula": case.limit.formula(),
            "runs": runs,
        }
        entry["ratios"] = report.ratios(runs)
        entry["goals"] = report.goals(entry)
        results["cases"].append(entry)
    results["memory"] = [row for n in cfg.memory for row in memory.one_size(n, work, seed_value=cfg.seed)]
    results["memory_goals"] = memory.goals(results["memory"])
    results["load_after"] = loadavg()
    results["total_s"] = round(time.time() - started, 1)
    return results


def _sdk_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("balena-sdk")
    except PackageNotFoundError:
        return None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(s.replace("_", "")) for s in text.split(",") if s)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--devices", help="fleet sizes, comma-separated (default 5000,20000)")
    p.add_argument("--limit", help="the budget N/W of every policy (default 1000/10s)")
    p.add_argument("--policies", help="fixed, fixed-ceil, bucket, drop (default all)")
    p.add_argument("--scenarios", help="scenarios under the fixed window (default 1,2,3)")
    p.add_argument("--policy-scenarios", help="scenarios also run under the other policies (default 1)")
    p.add_argument("--clients", help=f"default {','.join(CLIENTS)}")
    p.add_argument("--memory", help="plan/apply sizes for peak memory (default 100000,1000000; '' none)")
    p.add_argument("--out", default="bench", help="directory for the results")
    p.add_argument("--cap", type=float, help="seconds a baseline may run before it is stopped (default 60)")
    p.add_argument("--drop-at", type=float, help="seconds after the start when the drop policy halves")
    p.add_argument("--burst", type=int, help="token bucket size (default a tenth of the budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup-runs", type=int, default=3, help="runs per client for the start-up median")
    p.add_argument(
        "--quick",
        action="store_true",
        help="1,000 devices, 200/5s, baselines stopped at 10 s, drop at 7.5 s, memory at 10,000 and 100,000",
    )
    a = p.parse_args(argv)
    cfg = Config(quick=a.quick)
    if a.quick:
        cfg = replace(cfg, devices=(1000,), limit="200/5s", cap=10.0, drop_at=7.5, memory=(10_000, 100_000))
    clients = tuple(c for c in (a.clients or ",".join(cfg.clients)).split(",") if c)
    for c in clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r}; accepted: {', '.join(CLIENTS)}")
    policies = tuple(x for x in (a.policies or ",".join(cfg.policies)).split(",") if x)
    for x in policies:
        if x not in {q.value for q in Policy}:
            p.error(f"unknown policy {x!r}; accepted: {', '.join(q.value for q in Policy)}")
    scenarios = _ints(a.scenarios) if a.scenarios else cfg.scenarios
    policy_scenarios = _ints(a.policy_scenarios) if a.policy_scenarios else cfg.policy_scenarios
    for s in (*scenarios, *policy_scenarios):
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}; accepted: {', '.join(map(str, SCENARIOS))}")
    try:
        parse_budget(a.limit or cfg.limit)
    except ValueError as exc:
        p.error(str(exc))
    return replace(
        cfg,
        devices=_ints(a.devices) if a.devices else cfg.devices,
        limit=a.limit or cfg.limit,
        policies=policies,
        scenarios=scenarios,
        policy_scenarios=policy_scenarios,
        clients=clients,
        memory=_ints(a.memory) if a.memory is not None else cfg.memory,
        out=a.out,
        cap=cfg.cap if a.cap is None else a.cap,
        drop_at=cfg.drop_at if a.drop_at is None else a.drop_at,
        burst=cfg.burst if a.burst is None else a.burst,
        seed=a.seed,
        startup_runs=max(1, a.startup_runs),
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:  # same measurements; ratios, goals and markdown made again
        for name in args[1:]:
            path = Path(name)
            results = json.loads(path.read_text())
            for case in results["cases"]:
                case["ratios"] = report.ratios(case["runs"])
                case["goals"] = report.goals(case)
            results["memory_goals"] = memory.goals(results["memory"])
            path.write_text(json.dumps(results, indent=2) + "\n")
            path.with_suffix(".md").write_text(report.markdown(results))
            print(f"bench: wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
        return 0
    cfg = parse_args(args)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = run(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "results-quick" if cfg.quick else "results"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(report.markdown(results))
    print(f"bench: wrote {out / name}.md and .json in {results['total_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

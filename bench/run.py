"""The benchmark harness: every scenario × every client, each on a fresh simulator with the same data
and a balena-like fixed-window limit; writes ``results.md`` and ``results.json``.

    python -m bench.run [--devices 5000] [--limit 1000/10s] [--scenarios 1,2,3,4,5]
                        [--clients loop,async-fixed,bulkops] [--out bench/] [--quick]

The simulator serves from a thread of this process (it answers well over ten times faster than the
limit admits); each client runs in its own subprocess, so its CPU time and peak memory are its own.
Requests and 429s are counted by the simulator's request log; correctness is read from its database.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from bench import measure, metrics, report
from bench.measure import parse_limit
from bench.scenarios import SCENARIOS, Scenario, Seeded, check, job_toml, probe_path, seed
from bulkops.sim.server import SimConfig, SimServer

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("loop", "async-fixed", "bulkops")
PY = sys.executable


@dataclass(frozen=True, slots=True)
class Config:
    devices: int = 5000
    plan_devices: int = 100_000
    limit: str = "1000/10s"
    scenarios: tuple[int, ...] = (1, 2, 3, 4, 5)
    clients: tuple[str, ...] = CLIENTS
    out: str = "bench"
    cap: float = 60.0  # seconds a baseline client may run before it is stopped and extrapolated; 0: none
    bulkops_timeout: float = 600.0
    style: str = "read-then-write"
    seed: int = 0
    quick: bool = False
    bulkops_via: str = "auto"  # cli | library | auto (the CLI when it is complete)

    @property
    def points(self) -> int:
        return parse_limit(self.limit)[0]

    @property
    def window(self) -> float:
        return parse_limit(self.limit)[1]




def _put_limit(url: str, spec: str) -> None:
    req = urllib.request.Request(
        f"{url}/_sim/ratelimit",
        method="PUT",
        data=json.dumps({"spec": spec}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as answer:  # loopback admin route
        answer.read()


def command(
    client: str, scenario: Scenario, url: str, job: Path, plan_out: Path, style: str, via: str = "cli"
) -> list[str]:
    task = json.dumps(asdict(scenario.task))
    if client == "loop":
        return [PY, "-m", "bench.baselines.loop_client", "--api-url", url, "--task", task, "--style", style]
    if client == "async-fixed":
        return [PY, "-m", "bench.baselines.async_fixed", "--api-url", url, "--task", task, "--style", style]
    if via == "library":
        extra = ["--plan-only", "-o", str(plan_out)] if scenario.plan_only else []
        return [PY, "-m", "bench.bulkops_lib", str(job), "--api-url", url, *extra]
    if scenario.plan_only:
        return [PY, "-m", "bulkops", "plan", str(job), "-o", str(plan_out), "--api-url", url]
    return [PY, "-m", "bulkops", "run", str(job), "--yes", "--api-url", url]


def bulkops_via(choice: str) -> str:
    """``cli`` (``python -m bulkops run``) when the command can reach a server, else ``library``."""
    if choice != "auto":
        return choice
    return "cli" if importlib.util.find_spec("bulkops.config") is not None else "library"


def _probe(url: str, key: str, path: str, times: int = 5) -> float:
    """Median milliseconds the simulator takes for ``path``: the harness checks it is not the bottleneck."""
    took = []
    for _ in range(times):
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as answer:  # loopback simulator
            answer.read()
        took.append(1000 * (time.perf_counter() - start))
    return round(sorted(took)[times // 2], 2)


def one_run(cfg: Config, scenario: Scenario, client: str, work: Path) -> dict[str, Any]:
    """A fresh simulator, the scenario's data, one client run, the measurements."""
    n = cfg.plan_devices if scenario.plan_only else cfg.devices
    spec = f"fixed:{cfg.points}/{cfg.window:g}s"
    sim = SimServer(
        SimConfig(seed_demo=0, seed=cfg.seed, rate_limit=spec, tick_interval=3600.0, converge_delay=3600.0)
    ).start_in_thread()
    try:
        seeded = seed(sim.db, sim.demo, scenario, n, seed=cfg.seed)
        before = check(sim.db, sim.demo, scenario, seeded)
        run_dir = work / f"s{scenario.number}-{client}"
        run_dir.mkdir(parents=True, exist_ok=True)
        job = run_dir / "job.toml"
        job.write_text(job_toml(scenario, seeded))
        plan_out = run_dir / "job.plan.json"
        env = {
            **os.environ,
            "BALENA_API_KEY": sim.api_key,
            "BULKOPS_HOME": str(run_dir / "home"),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("BALENA_API_URL", None)
        probe_ms = _probe(sim.url, sim.api_key, probe_path(sim.db, scenario))
        sim.rate_limiter.set_policy(spec)  # fresh windows: the client's first request opens the first one
        sim.request_log.clear()
        threshold = math.ceil(seeded.floor_estimate / 2)
        drop: dict[str, float] = {}
        allowed_before = sim.rate_limiter.statistics().allowed  # the probe's requests

        def tick(elapsed: float) -> None:
            if (
                scenario.halve_limit
                and not drop
                and sim.rate_limiter.statistics().allowed - allowed_before >= threshold
            ):
                _put_limit(sim.url, f"fixed:{max(1, cfg.points // 2)}/{cfg.window:g}s")
                drop["at"] = time.time()

        cap = cfg.bulkops_timeout if client == "bulkops" else (cfg.cap or None)
        cmd = command(client, scenario, sim.url, job, plan_out, cfg.style, bulkops_via(cfg.bulkops_via))
        child = measure.run_child(
            cmd, env=env, cwd=run_dir, log=run_dir / "client.log", cap=cap, on_tick=tick
        )
        time.sleep(0.05)  # answers in flight when a capped client was stopped reach the log
        entries = sim.request_log.entries()
        after = check(sim.db, sim.demo, scenario, seeded)
    finally:
        sim.stop()
    res = metrics.collect(
        cfg,
        scenario,
        client,
        seeded,
        before,
        after,
        child,
        entries,
        drop.get("at"),
        threshold,
        run_dir,
        plan_out,
    )
    res["sim_probe_ms"] = probe_ms
    return res


def startup_cpu(work: Path) -> float | None:
    """CPU seconds of a ``bulkops validate`` (imports, no request): bulkops' fixed cost per process."""
    job = work / "startup.toml"
    job.write_text(job_toml(SCENARIOS[1], Seeded(1, 1, 0, {}, 0, 0, 0)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = measure.run_child(
        [PY, "-m", "bulkops", "validate", str(job)], env=env, cwd=work, log=work / "startup.log", cap=60.0
    )
    return round(res.cpu, 3) if res.returncode == 0 else None


def run(cfg: Config) -> dict[str, Any]:
    started = time.time()
    results: dict[str, Any] = {
        "config": asdict(cfg),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scenarios": [],
    }
    work = Path(cfg.out).resolve() / "out"  # job files, client logs, bulkops homes (kept for reading)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if "bulkops" in cfg.clients:
        results["bulkops_startup_cpu_s"] = startup_cpu(work)
        results["bulkops_via"] = bulkops_via(cfg.bulkops_via)
    for number in cfg.scenarios:
        scenario = SCENARIOS[number]
        runs = []
        for client in cfg.clients:
            print(
                f"bench: scenario {number} ({scenario.key}), client {client} ...", file=sys.stderr, flush=True
            )
            res = one_run(cfg, scenario, client, work)
            print(f"bench:   {report.one_line(res)}", file=sys.stderr, flush=True)
            if res["correct"] < res["total"] and not res["capped"]:
                tail = Path(res["log"]).resolve().read_text(errors="replace").splitlines()[-15:]
                res["log_tail"] = tail
            runs.append(res)
        n = cfg.plan_devices if scenario.plan_only else cfg.devices
        entry = {"number": number, "key": scenario.key, "title": scenario.title, "devices": n, "runs": runs}
        entry["targets"] = report.targets(
            scenario,
            runs,
            results.get("bulkops_startup_cpu_s"),
            cfg.points // 2 if scenario.halve_limit else cfg.points,
        )
        results["scenarios"].append(entry)
    results["total_s"] = round(time.time() - started, 1)
    return results


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, help="devices in the fleet of scenarios 1-4 (default 5000)")
    p.add_argument("--plan-devices", type=int, help="devices of scenario 5 (default 100000)")
    p.add_argument("--limit", help="the server's fixed window, N/W (default 1000/10s)")
    p.add_argument("--scenarios", default="1,2,3,4,5")
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--out", default="bench", help="directory for results.md and results.json")
    p.add_argument(
        "--cap",
        type=float,
        help="seconds a baseline run may take before it is stopped and extrapolated (default 60; 0: never)",
    )
    p.add_argument(
        "--style",
        choices=("read-then-write", "sdk-upsert"),
        default="read-then-write",
        help="how the baselines set a variable (default read-then-write)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bulkops-via",
        choices=("auto", "cli", "library"),
        default="auto",
        help="run bulkops as `python -m bulkops run` (cli) or through its library API",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1,000 devices, 200/10s, 20,000 devices to plan, baselines capped at 30 s",
    )
    a = p.parse_args(argv)
    cfg = Config(quick=a.quick)
    if a.quick:
        cfg = replace(cfg, devices=1000, plan_devices=20_000, limit="200/10s", cap=30.0)
    scenarios = tuple(int(s) for s in a.scenarios.split(",") if s)
    clients = tuple(c for c in a.clients.split(",") if c)
    for c in clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r}; accepted: {', '.join(CLIENTS)}")
    for s in scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}; accepted: 1-5")
    parse_limit(a.limit or cfg.limit)
    return replace(
        cfg,
        scenarios=scenarios,
        clients=clients,
        out=a.out,
        style=a.style,
        seed=a.seed,
        bulkops_via=a.bulkops_via,
        devices=a.devices or cfg.devices,
        plan_devices=a.plan_devices or cfg.plan_devices,
        limit=a.limit or cfg.limit,
        cap=cfg.cap if a.cap is None else a.cap,
    )


def render(path: Path) -> Path:
    """Write the markdown of a results JSON file next to it (same measurements, current wording)."""
    out = path.with_suffix(".md")
    out.write_text(report.markdown(json.loads(path.read_text())))
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        for name in args[1:]:
            print(f"bench: wrote {render(Path(name))}", file=sys.stderr)
        return 0
    cfg = parse_args(args)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = run(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "results-quick" if cfg.quick else "results"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(report.markdown(results))
    print(
        f"bench: wrote {out / name}.md and .json in {results['total_s']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

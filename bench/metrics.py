"""What one client run measured: its requests, 429s, correctness, efficiency and plan figures, read
from the simulator's request log and the client's own report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import measure
from bench.scenarios import Scenario, Seeded
from bulkops.plan.file import read_plan

if TYPE_CHECKING:
    from bench.run import Config


def _client_report(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                out: dict[str, Any] = json.loads(line)
                return out
            except ValueError:
                return None
    return None


def _plan_check(plan_out: Path, seeded: Seeded) -> tuple[int, dict[str, int]]:
    counts = read_plan(plan_out).counts()
    correct = sum(min(counts.get(k, 0), v) for k, v in seeded.plan_counts.items())
    return correct, counts


def collect(
    cfg: Config,
    scenario: Scenario,
    client: str,
    seeded: Seeded,
    before: Any,
    after: Any,
    child: measure.ChildResult,
    entries: list[Any],
    drop_at: float | None,
    threshold: int,
    run_dir: Path,
    plan_out: Path,
) -> dict[str, Any]:
    requests = len(entries)
    throttled = sum(1 for e in entries if e.status == 429)
    out: dict[str, Any] = {
        "client": client,
        "exit_code": child.returncode,
        "wall_s": round(child.wall, 3),
        "requests": requests,
        "throttled": throttled,
        "admitted": requests - throttled,
        "throttled_share": throttled / requests if requests else 0.0,
        "correct": after.correct,
        "total": after.total,
        "initially_correct": before.correct,
        "collateral": after.collateral,
        "cpu_s": round(child.cpu, 3),
        "peak_mb": round(child.peak_mb, 1),
        "cpu_ms_per_request": round(1000 * child.cpu / requests, 3) if requests else None,
        "capped": child.capped and client != "bulkops",
        "timed_out": child.capped and client == "bulkops",
        "errors": sum(1 for e in entries if e.status >= 400 and e.status != 429),
        "log": shown(run_dir / "client.log"),
    }
    if client != "bulkops":
        out["client_report"] = _client_report(run_dir / "client.log")
    else:  # when bulkops met its 429s, relative to its start (for reading the limiter's behaviour)
        out["throttled_at_s"] = [round(e.time - child.started, 2) for e in entries if e.status == 429]
    if scenario.halve_limit:
        out["drop_threshold_admitted"] = threshold
        out["drop_at_s"] = round(drop_at - child.started, 3) if drop_at is not None else None
    if out["capped"]:
        since = drop_at if (scenario.halve_limit and drop_at is not None) else child.started
        ex = measure.extrapolate(
            entries,
            started=child.started,
            stopped=child.started + child.wall,
            since=since,
            needed_writes=seeded.baseline_writes,
            width=cfg.window,
        )
        out["extrapolated"] = {
            "wall_s": round(ex.wall, 1),
            "requests": ex.requests,
            "throttled": ex.throttled,
            "done_writes": ex.done_writes,
            "needed_writes": ex.needed_writes,
        }
    if scenario.plan_only:
        _plan_metrics(out, client, seeded, entries, plan_out)
    if client == "bulkops" and not scenario.plan_only:
        _efficiency(out, cfg, child, drop_at)
    if scenario.halve_limit and drop_at is not None:
        out["recovery"] = measure.recovery(
            entries, drop=drop_at, width=cfg.window, points=max(1, cfg.points // 2)
        )
    return out


def _efficiency(out: dict[str, Any], cfg: Config, child: measure.ChildResult, drop_at: float | None) -> None:
    """(fewest requests ÷ admitted rate) ÷ wall time, with the admitted requests as the fewest the
    strategy needed; with a drop, the capacity the limit offered over the run, time-weighted."""
    rate = cfg.points / cfg.window
    wall = child.wall
    if drop_at is None:
        capacity = rate * wall
    else:
        t = min(wall, max(0.0, drop_at - child.started))
        capacity = rate * t + (max(1, cfg.points // 2) / cfg.window) * (wall - t)
    out["admitted_rate_tw"] = round(capacity / wall, 2) if wall else None
    out["efficiency"] = round(out["admitted"] / capacity, 3) if capacity else None


def _plan_metrics(
    out: dict[str, Any], client: str, seeded: Seeded, entries: list[Any], plan_out: Path
) -> None:
    gets = [e for e in entries if e.method == "GET" and e.status == 200]
    device_pages = [e for e in gets if e.url.startswith("/v7/device?")]
    tops = [int(p.split("&")[0]) for e in gets for p in e.url.split("$top=")[1:] if p.split("&")[0].isdigit()]
    rows = seeded.devices + int(seeded.extra.get("env_rows", 0))
    out["gets"] = len(gets)
    out["rows_per_get"] = round(rows / len(gets), 1) if gets else None
    out["device_rows_per_page"] = round(seeded.devices / len(device_pages), 1) if device_pages else None
    out["min_top"] = min(tops) if tops else None
    if client == "bulkops":
        if plan_out.exists():
            correct, counts = _plan_check(plan_out, seeded)
            out["plan_counts"], out["expected_plan_counts"] = counts, dict(seeded.plan_counts)
            out["correct"], out["total"] = correct, seeded.devices
        else:
            out["correct"], out["total"] = 0, seeded.devices
    else:
        got = (out.get("client_report") or {}).get("rows", 0)
        out["correct"], out["total"] = (seeded.devices if got == rows else 0), seeded.devices


def shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it (results name no home paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

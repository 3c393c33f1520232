"""What one client run measured: its requests, 429s, correctness, floor and efficiency, read from the
simulator's request log and the client's own report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import measure
from bench.limits import Limit, Policy
from bench.scenarios import Seeded

EFFICIENCY_SLACK = 1.0  # an efficiency above this means the floor is wrong


def _client_report(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                out: dict[str, Any] = json.loads(line)
                return out
            except ValueError:
                return None
    return None


def collect(
    *,
    limit: Limit,
    client: str,
    seeded: Seeded,
    before: Any,
    after: Any,
    child: measure.ChildResult,
    entries: list[Any],
    applied_at: float,
    run_dir: Path,
) -> dict[str, Any]:
    requests = len(entries)
    throttled = sum(1 for e in entries if e.status == 429)
    admitted = requests - throttled
    launch_delay = max(0.0, child.started - applied_at)
    floor = limit.floor(admitted, launch_delay=launch_delay)
    efficiency = floor / child.wall if child.wall > 0 and floor > 0 else None
    out: dict[str, Any] = {
        "client": client,
        "exit_code": child.returncode,
        "wall_s": round(child.wall, 3),
        "requests": requests,
        "throttled": throttled,
        "admitted": admitted,
        "throttled_share": throttled / requests if requests else 0.0,
        "floor_s": round(floor, 3),
        "efficiency": None if efficiency is None else round(efficiency, 3),
        "floor_wrong": efficiency is not None and efficiency > EFFICIENCY_SLACK,
        "launch_delay_s": round(launch_delay, 3),
        "correct": after.correct,
        "total": after.total,
        "initially_correct": before.correct,
        "collateral": after.collateral,
        "cpu_s": round(child.cpu, 3),
        "peak_mb": round(child.peak_mb, 1),
        "capped": child.capped and client != "bulkops",
        "timed_out": child.capped and client == "bulkops",
        "errors": sum(1 for e in entries if e.status >= 400 and e.status not in (409, 429)),
        "log": shown(run_dir / "client.log"),
        "client_report": _client_report(run_dir / "client.log"),
    }
    blind = limit.blind_floor(admitted, launch_delay=launch_delay)
    if blind is not None:
        out["blind_floor_s"] = round(blind, 3)
        out["blind_efficiency"] = round(blind / child.wall, 3) if child.wall > 0 and blind > 0 else None
    # where the wall time went: before the first request (start-up), before the first write (planning)
    writes = [e.time for e in entries if e.method != "GET"]
    out["first_request_s"] = round(entries[0].time - child.started, 3) if entries else None
    out["first_write_s"] = round(writes[0] - child.started, 3) if writes else None
    if client == "bulkops":  # when bulkops met its 429s, relative to its start (the limiter's behaviour)
        out["throttled_at_s"] = [round(e.time - child.started, 2) for e in entries if e.status == 429]
    drop = applied_at + limit.drop_at if limit.policy is Policy.DROP else None
    if out["capped"]:
        since = drop if drop is not None and drop < child.started + child.wall else child.started
        ex = measure.extrapolate(
            entries,
            started=child.started,
            stopped=child.started + child.wall,
            since=since,
            needed_writes=int(seeded.writes.get(client, 0)),
            width=limit.window,
            budget=limit.after if drop is not None and since == drop else limit.points,
        )
        out["extrapolated"] = {
            "wall_s": round(ex.wall, 1),
            "requests": ex.requests,
            "throttled": ex.throttled,
            "done_writes": ex.done_writes,
            "needed_writes": ex.needed_writes,
        }
    if drop is not None:
        out["drop_at_s"] = round(drop - child.started, 3)
        if drop < child.started + child.wall:
            out["recovery"] = measure.recovery(entries, drop=drop, width=limit.window, points=limit.after)
    return out


def shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it (results name no home paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

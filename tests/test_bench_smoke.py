"""A smoke run of the benchmark harness at tiny sizes: every client of every scenario leaves the server
state correct, the floors hold, and the harness writes its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from bench.limits import (
    Limit,
    Policy,
    blind_drop_floor,
    bucket_floor,
    drop_floor,
    fixed_floor,
    parse_budget,
)
from bench.measure import Extrapolation, extrapolate, recovery, windows
from bulkops.sim.ratelimit import RateLimiter

pytestmark = pytest.mark.timeout(90)


class _E:
    def __init__(self, t: float, status: int = 200, method: str = "POST") -> None:
        self.time, self.status, self.method, self.url = t, status, method, "/v7/x"


def test_windows_open_at_the_first_request_after_the_previous_end() -> None:
    """The server's fixed windows are rebuilt from the log: a window opens at the first request at or
    after the previous one's end, and counts admitted and throttled requests."""
    log = [_E(0.0), _E(1.0, 429), _E(10.5), _E(12.0), _E(20.4, 429), _E(25.0)]
    assert windows(log, 0.0, 10.0) == [(0.0, 1, 1), (10.5, 2, 1), (25.0, 1, 0)]


def test_extrapolation_uses_the_pace_of_complete_windows() -> None:
    """A run stopped at 20 s with 10 of 30 writes done at 5 writes per 10 s window is projected to take
    40 s more, with requests in proportion."""
    log = [_E(t) for t in (0, 1, 2, 3, 4, 10, 11, 12, 13, 14)]
    ex = extrapolate(log, started=0.0, stopped=20.0, since=0.0, needed_writes=30, width=10.0)
    assert ex == Extrapolation(wall=60.0, requests=30, throttled=0, done_writes=10, needed_writes=30)


def test_recovery_judges_windows_from_the_second_on() -> None:
    """After a drop to 10 per window the first window is free, later full ones meet the target and a
    short last one (work ran out) is not judged."""
    log = (
        [_E(t / 10) for t in range(3)]
        + [_E(10 + t / 10) for t in range(10)]
        + [_E(20 + t / 10) for t in range(4)]
    )
    assert recovery(log, drop=0.0, width=10.0, points=10) == {
        "admitted_per_window": [3, 10, 4],
        "met": True,
        "worst_share": 1.0,
    }


def test_floor_formulas() -> None:
    """Fixed window (⌈N/B⌉ − 1)·W, bucket (N − burst)/rate, and the drop at a fixed time."""
    assert [fixed_floor(n, 1000, 10.0) for n in (0, 1, 1000, 1001, 2549, 3000)] == [0, 0, 0, 10, 20, 20]
    assert bucket_floor(2549, 100.0, 100) == pytest.approx(24.49)
    assert bucket_floor(50, 100.0, 100) == 0.0
    # drop at 15 s: two windows (0, 10) before it admit 2000; the rest at 500 per window from 15 s
    assert drop_floor(2549, 1000, 10.0, 15.0, 500) == 25.0
    assert drop_floor(2000, 1000, 10.0, 15.0, 500) == 10.0
    assert drop_floor(2001, 1000, 10.0, 15.0, 500) == 15.0
    # without foresight the windows after the drop still open at 20, 30, …
    assert blind_drop_floor(2549, 1000, 10.0, 14.9, 500) == 30.0
    assert blind_drop_floor(2001, 1000, 10.0, 15.0, 500) == 20.0
    assert blind_drop_floor(2000, 1000, 10.0, 15.0, 500) == 10.0
    assert parse_budget("1000/10s") == (1000, 10.0)
    with pytest.raises(ValueError) as err:
        parse_budget("ten/10s")
    assert str(err.value) == "limit 'ten/10s': expected N/W with N a positive whole number, like 1000/10s"


def _ideal_finish(limit: Limit, n: int, *, foresight: bool = True) -> float:
    """When the n-th request of a client that always retries at the earliest useful moment is admitted,
    against the simulator's own limiter on a fake clock. Without foresight it does not know when the
    drop comes: it waits for the reset the server announced."""
    now = [0.0]
    limiter = RateLimiter(limit.spec(), clock=lambda: now[0])
    admitted = 0
    while admitted < n:
        decision = limiter.check("k")
        if decision.allowed:
            admitted += 1
            continue
        nxt = now[0] + max(decision.ms_before_next / 1000, 1e-9)
        if foresight and limit.policy is Policy.DROP and now[0] < limit.drop_at < nxt:
            nxt = limit.drop_at
        now[0] = nxt
    return now[0]


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("n", [1, 40, 41, 95, 130, 201])
def test_the_floor_is_what_an_ideal_client_reaches_against_the_simulator(policy: Policy, n: int) -> None:
    """The floor of every policy equals the finish time of an ideal client against the simulator's
    limiter: no client can beat it, and one that wastes nothing reaches it."""
    limit = Limit(policy, 40, 2.0, drop_at=3.0)
    assert _ideal_finish(limit, n) == pytest.approx(limit.floor(n), abs=1e-6)


@pytest.mark.parametrize("n", [1, 40, 81, 100, 101, 141, 201])
def test_the_blind_floor_is_what_a_client_without_foresight_reaches(n: int) -> None:
    """Under the drop, a client that waits out each announced reset finishes exactly at the blind floor,
    and never before the floor of a client that knows when the drop comes."""
    limit = Limit(Policy.DROP, 40, 2.0, drop_at=3.0)
    blind = limit.blind_floor(n)
    assert blind is not None
    assert _ideal_finish(limit, n, foresight=False) == pytest.approx(blind, abs=1e-6)
    assert blind >= limit.floor(n)
    assert Limit(Policy.FIXED, 40, 2.0).blind_floor(n) is None


def _assert_correct(results: dict[str, object]) -> None:
    for case in results["cases"]:  # type: ignore[attr-defined]
        for r in case["runs"]:
            where = f"{case['key']} {r['client']}: {r.get('log_tail')}"
            assert r["exit_code"] == 0, where
            assert (r["correct"], r["collateral"]) == (r["total"], 0), where
            assert r["requests"] > 0 and r["cpu_s"] > 0 and r["peak_mb"] > 0, where
            assert not r["floor_wrong"], where


def test_smoke_run_every_client_correct(tmp_path: Path) -> None:
    """Tiny sizes and a generous limit: each client (the SDK's only when balena-sdk is installed, else
    skipped with the reason) ends with every target correct and nothing else touched; results.md and
    results.json are written, with the memory runs."""
    out = tmp_path / "bench"
    run.main(
        [
            "--devices",
            "30",
            "--limit",
            "5000/10s",
            "--policies",
            "fixed",
            "--memory",
            "200",
            "--startup-runs",
            "1",
            "--out",
            str(out),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    clients = list(run.CLIENTS) if run.sdk_available() else [c for c in run.CLIENTS if c != "sdk"]
    assert results["skipped_clients"] == ({} if run.sdk_available() else {"sdk": run.SDK_MISSING})
    assert [c["key"] for c in results["cases"]] == [
        "set-env/30/fixed",
        "move/30/fixed",
        "remove-tag/30/fixed",
    ]
    assert all([r["client"] for r in c["runs"]] == clients for c in results["cases"])
    _assert_correct(results)
    assert [(m["targets"], m["step"], m["exit_code"]) for m in results["memory"]] == [
        (200, "plan", 0),
        (200, "apply", 0),
    ]
    assert [s["client"] for s in results["startup"]] == clients and all(s["ok"] for s in results["startup"])
    md = (out / "results.md").read_text()
    assert "## move the devices tagged wave=1 to another fleet — 30 devices, fixed window" in md


def test_smoke_run_under_the_other_policies(tmp_path: Path) -> None:
    """A bucket and a drop at a fixed time, with a budget small enough to bind: bulkops ends correct,
    its floor holds (an efficiency, at most 1), and the drop happened during its run."""
    cfg = run.parse_args(
        [
            "--devices",
            "30",
            "--limit",
            "20/1s",
            "--policies",
            "bucket,drop",
            "--drop-at",
            "0.5",
            "--clients",
            "bulkops",
            "--memory",
            "",
            "--startup-runs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    results = run.run(cfg)
    assert [c["key"] for c in results["cases"]] == ["set-env/30/bucket", "set-env/30/drop"]
    _assert_correct(results)
    drop = results["cases"][1]
    assert all(r["drop_at_s"] < r["wall_s"] for r in drop["runs"])
    assert all(r["efficiency"] is not None for c in results["cases"] for r in c["runs"])


def test_extrapolation_is_never_faster_than_the_limit() -> None:
    """Stopped 2 s after a drop to 5 per 10 s window, with a burst of 5 writes just after it and no
    complete window to judge the pace by, the 20 writes left take at least 20 × 10/5 = 40 s more."""
    log = [_E(100.0 + t / 10) for t in range(5)]
    ex = extrapolate(log, started=90.0, stopped=102.0, since=100.0, needed_writes=25, width=10.0, budget=5)
    assert ex.wall == pytest.approx(12.0 + 40.0)

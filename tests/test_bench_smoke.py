"""A smoke run of the benchmark harness at tiny sizes: every client of every scenario leaves the server
state correct, and the harness writes its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from bench.measure import Extrapolation, extrapolate, recovery, windows
from bench.scenarios import SCENARIOS

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


def test_smoke_run_every_client_correct(tmp_path: Path) -> None:
    """Tiny sizes and a generous limit: each client ends with every target correct on the server and
    nothing else touched; results.md and results.json are written."""
    out = tmp_path / "bench"
    cfg = run.parse_args(
        ["--devices", "30", "--plan-devices", "150", "--limit", "5000/10s", "--out", str(out)]
    )
    results = run.run(cfg)
    for sc in results["scenarios"]:
        assert [r["client"] for r in sc["runs"]] == ["loop", "async-fixed", "bulkops"]
        for r in sc["runs"]:
            where = f"scenario {sc['number']} {r['client']}: {r.get('log_tail')}"
            assert r["exit_code"] == 0, where
            assert (r["correct"], r["collateral"]) == (r["total"], 0), where
            assert r["requests"] > 0 and r["throttled"] == 0 and r["cpu_s"] > 0 and r["peak_mb"] > 0, where
    assert [sc["number"] for sc in results["scenarios"]] == sorted(SCENARIOS)
    run.main(
        [
            "--devices",
            "20",
            "--plan-devices",
            "60",
            "--limit",
            "5000/10s",
            "--scenarios",
            "2",
            "--clients",
            "loop",
            "--out",
            str(out),
        ]
    )
    md = (out / "results.md").read_text()
    assert "## Scenario 2: move the devices tagged wave=1 to another fleet (20 devices)" in md
    assert json.loads((out / "results.json").read_text())["scenarios"][0]["runs"][0]["correct"] == 8

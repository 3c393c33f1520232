"""Turning measured runs into target verdicts and ``results.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.scenarios import Scenario

SPEEDUP = {1: 3.0, 2: 50.0, 3: 50.0}  # bulkops at least this many times faster than each baseline
EFFICIENCY = 0.9
THROTTLED_SHARE = 0.02
CPU_MS = 1.0
PEAK_MB = 250.0
ROWS_PER_GET = 1000


def effective_wall(run: dict[str, Any]) -> float:
    """The wall time, extrapolated to the end for a baseline stopped at the cap."""
    ex = run.get("extrapolated")
    return float(ex["wall_s"]) if ex else float(run["wall_s"])


def one_line(run: dict[str, Any]) -> str:
    ex = run.get("extrapolated")
    wall = f"{run['wall_s']:.1f} s" + (f" (capped; ~{ex['wall_s']:.0f} s extrapolated)" if ex else "")
    eff = f", efficiency {run['efficiency']:.2f}" if run.get("efficiency") is not None else ""
    return (
        f"{run['client']}: {wall}, {run['requests']} requests, {run['throttled']} 429s, "
        f"correct {run['correct']}/{run['total']}, CPU {run['cpu_s']:.2f} s, "
        f"peak {run['peak_mb']:.0f} MB{eff}"
    )


def _target(name: str, measured: str, goal: str, met: bool | None, gap: str = "") -> dict[str, Any]:
    return {
        "target": name,
        "measured": measured,
        "goal": goal,
        "met": met,
        "gap": gap if met is False else "",
    }


def targets(
    scenario: Scenario, runs: Sequence[dict[str, Any]], startup_cpu: float | None, points: int
) -> list[dict[str, Any]]:
    by = {r["client"]: r for r in runs}
    b = by.get("bulkops")
    if b is None:
        return []
    out: list[dict[str, Any]] = []
    ok = b["correct"] == b["total"] and b["exit_code"] == 0 and not b["collateral"]
    out.append(
        _target(
            "bulkops correct on the server",
            f"{b['correct']}/{b['total']}, collateral {b['collateral']}, exit {b['exit_code']}",
            "all, none, 0",
            ok,
            f"{b['total'] - b['correct']} targets wrong",
        )
    )
    if not scenario.plan_only:
        eff = b.get("efficiency")
        if eff is not None:
            rate = b["admitted_rate_tw"]
            needed = b["admitted"] / (EFFICIENCY * rate) if rate else 0.0
            out.append(
                _target(
                    "efficiency",
                    f"{eff:.2f}",
                    f">= {EFFICIENCY}",
                    eff >= EFFICIENCY,
                    f"{EFFICIENCY - eff:.2f} short: {b['wall_s']:.1f} s wall, {needed:.1f} s would "
                    f"reach {EFFICIENCY} ({b['admitted']} admitted requests at {rate} req/s)",
                )
            )
        share = b["throttled_share"]
        out.append(
            _target(
                "429s of bulkops' requests",
                f"{100 * share:.1f} % ({b['throttled']})",
                f"<= {100 * THROTTLED_SHARE:.0f} %",
                share <= THROTTLED_SHARE,
                f"{100 * (share - THROTTLED_SHARE):.1f} points over",
            )
        )
    factor = SPEEDUP.get(scenario.number)
    for name in ("loop", "async-fixed"):
        other = by.get(name)
        if factor is None or other is None or not b["wall_s"]:
            continue
        ratio = effective_wall(other) / b["wall_s"]
        label = " (extrapolated)" if other.get("extrapolated") else ""
        out.append(
            _target(
                f"faster than {name}",
                f"{ratio:.1f}x{label}",
                f">= {factor:g}x",
                ratio >= factor,
                f"{factor / ratio:.1f}x too slow: bulkops would need {effective_wall(other) / factor:.2f} s",
            )
        )
    if scenario.halve_limit:
        rec = b.get("recovery")
        if rec is None:
            out.append(
                _target(
                    "back to >= 90 % of the new rate within two windows",
                    "no drop happened",
                    "drop, then >= 90 %",
                    False,
                    "the run ended before the drop threshold",
                )
            )
        else:
            worst = rec["worst_share"]
            shown = ", ".join(str(x) for x in rec["admitted_per_window"])
            measured = f"admitted per window after the drop: {shown} (of {points})"
            out.append(
                _target(
                    "back to >= 90 % of the new rate within two windows",
                    measured,
                    ">= 90 % from the 2nd window",
                    rec["met"],
                    f"worst judged window {100 * (worst or 0):.0f} %",
                )
            )
    if scenario.plan_only:
        out.append(
            _target(
                "peak memory",
                f"{b['peak_mb']:.0f} MB",
                f"< {PEAK_MB:.0f} MB",
                b["peak_mb"] < PEAK_MB,
                f"{b['peak_mb'] - PEAK_MB:.0f} MB over",
            )
        )
        top = b.get("min_top")
        out.append(
            _target(
                "rows per GET (smallest $top of the paging GETs)",
                f"$top {top}; {b.get('device_rows_per_page')} device rows per device page; "
                f"{b.get('rows_per_get')} rows per GET overall",
                f">= {ROWS_PER_GET}",
                top is not None and top >= ROWS_PER_GET,
                f"$top {top}",
            )
        )
    cpu = b.get("cpu_ms_per_request")
    if cpu is not None:
        out.append(
            _target(
                "CPU per request sent",
                f"{cpu:.2f} ms",
                f"< {CPU_MS:g} ms",
                cpu < CPU_MS,
                f"{cpu - CPU_MS:.2f} ms over",
            )
        )
        if startup_cpu is not None and b["requests"]:
            net = 1000 * max(0.0, b["cpu_s"] - startup_cpu) / b["requests"]
            out.append(
                _target(
                    "CPU per request sent, net of process start-up",
                    f"{net:.2f} ms (start-up {startup_cpu:.2f} s)",
                    f"< {CPU_MS:g} ms",
                    net < CPU_MS,
                    f"{net - CPU_MS:.2f} ms over",
                )
            )
    return out


def _fmt_run(run: dict[str, Any], bulk: dict[str, Any] | None) -> str:
    ex = run.get("extrapolated")
    wall = f"{run['wall_s']:.1f}"
    req, thr = str(run["requests"]), str(run["throttled"])
    if ex:
        wall = f"~{ex['wall_s']:.0f} ({wall} measured)"
        req = f"~{ex['requests']} ({req})"
        thr = f"~{ex['throttled']} ({thr})"
    share = f"{100 * run['throttled_share']:.1f}"
    correct = f"{run['correct']}/{run['total']}"
    if ex:
        correct += " (stopped)"
    if run["collateral"]:
        correct += f", {run['collateral']} collateral"
    cpu_req = "" if run["cpu_ms_per_request"] is None else f"{run['cpu_ms_per_request']:.2f}"
    speed = ""
    if bulk is not None and run is not bulk and bulk["wall_s"]:
        speed = f"{effective_wall(run) / bulk['wall_s']:.1f}x"
    eff = "" if run.get("efficiency") is None else f"{run['efficiency']:.2f}"
    return (
        f"| {run['client']} | {wall} | {req} | {thr} | {share} | {correct} | {run['cpu_s']:.2f} | {cpu_req} "
        f"| {run['peak_mb']:.0f} | {speed} | {eff} |"
    )


def _verdict(met: bool | None) -> str:
    return "met" if met is True else ("missed" if met is False else "n/a")


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    m = results["machine"]
    via = results.get("bulkops_via", "cli")
    how = "`bench/bulkops_lib.py`" if via == "library" else "`python -m bulkops run JOB --yes`"
    lines = [
        "# bulkops benchmark results",
        "",
        "Generated by `python -m bench.run` (see `bench/README.md` for the columns and the method).",
        "",
        f"- started {results['started']}, took {results['total_s']} s; {m['cpus']} CPUs, "
        f"Python {m['python']}, {m['platform']}",
        f"- limit: fixed window of {cfg['limit']} per client; {cfg['devices']} devices in scenarios 1-4, "
        f"{cfg['plan_devices']} in scenario 5{' (--quick)' if cfg['quick'] else ''}",
        f"- baselines: `{cfg['style']}` per device; a baseline run longer than {cfg['cap']:g} s is stopped "
        "there and extrapolated to its end (`~`, with the measured value in parentheses)"
        if cfg["cap"]
        else f"- baselines: `{cfg['style']}` per device; every run goes to its end",
        f"- bulkops run through its {via} ({how}); process start-up (imports, no request): "
        f"{results.get('bulkops_startup_cpu_s')} CPU s",
        "",
    ]
    for sc in results["scenarios"]:
        runs = sc["runs"]
        bulk = next((r for r in runs if r["client"] == "bulkops"), None)
        lines += [f"## Scenario {sc['number']}: {sc['title']} ({sc['devices']} devices)", ""]
        lines += [
            "| client | wall s | requests | 429s | 429 % | correct | CPU s | CPU ms/req | peak MB "
            "| bulkops faster by | efficiency |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_fmt_run(r, bulk) for r in runs]
        lines.append("")
        for r in runs:
            if r.get("drop_at_s") is not None:
                lines.append(
                    f"- {r['client']}: limit halved at {r['drop_at_s']:.1f} s (after "
                    f"{r['drop_threshold_admitted']} admitted requests)"
                )
            if sc["number"] == 5 and r.get("gets") is not None:
                lines.append(
                    f"- {r['client']}: {r['gets']} GETs, {r.get('rows_per_get')} rows per GET, "
                    f"smallest $top {r.get('min_top')}"
                    + (f", plan {r['plan_counts']}" if r.get("plan_counts") else "")
                )
            if r["exit_code"] != 0 and not r.get("capped"):
                lines.append(f"- {r['client']}: exit code {r['exit_code']} (log: `{r['log']}`)")
        if sc["targets"]:
            lines += ["", "| target | measured | goal | verdict | gap |", "|---|---|---|---|---|"]
            for t in sc["targets"]:
                lines.append(
                    f"| {t['target']} | {t['measured']} | {t['goal']} | {_verdict(t['met'])} | {t['gap']} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"

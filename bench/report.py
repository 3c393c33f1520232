"""Turning measured runs into ratios, goal verdicts and ``results.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EFFICIENCY = 0.95
THROTTLED_SHARE = 0.01
SDK_SPEEDUP = 3.0  # on creates (scenario 1)
SDK_REQUEST_SHARE = 1 / 50  # on batchable work (scenarios 2 and 3) at 20,000 devices
BATCHABLE_AT = 20_000
PEERS = ("loop", "async-fixed", "sdk")


def effective(run: dict[str, Any], key: str) -> float:
    """``wall_s``, ``requests`` or ``throttled``, extrapolated to the end for a stopped baseline."""
    ex = run.get("extrapolated")
    return float(ex[key]) if ex else float(run[key])


def one_line(run: dict[str, Any]) -> str:
    ex = run.get("extrapolated")
    wall = f"{run['wall_s']:.1f} s" + (f" (stopped; ~{ex['wall_s']:.0f} s extrapolated)" if ex else "")
    eff = f", floor {run['floor_s']:.1f} s, efficiency {run['efficiency']:.2f}" if run["efficiency"] else ""
    return (
        f"{run['client']}: {wall}, {run['requests']} requests, {run['throttled']} 429s, "
        f"correct {run['correct']}/{run['total']}, CPU {run['cpu_s']:.2f} s, "
        f"peak {run['peak_mb']:.0f} MB{eff}"
    )


def ratios(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """bulkops against each peer: how many times faster, and its requests as a share of the peer's."""
    b = next((r for r in runs if r["client"] == "bulkops"), None)
    if b is None or not b["wall_s"] or not b["requests"]:
        return []
    out = []
    for peer in runs:
        if peer["client"] == "bulkops":
            continue
        out.append(
            {
                "peer": peer["client"],
                "extrapolated": bool(peer.get("extrapolated")),
                "speedup": round(effective(peer, "wall_s") / b["wall_s"], 2),
                "request_share": round(b["requests"] / effective(peer, "requests"), 4),
                "peer_requests": round(effective(peer, "requests")),
            }
        )
    return out


def _goal(name: str, measured: str, goal: str, met: bool | None) -> dict[str, Any]:
    return {"goal": name, "measured": measured, "target": goal, "met": met}


def goals(case: dict[str, Any]) -> list[dict[str, Any]]:
    runs = case["runs"]
    b = next((r for r in runs if r["client"] == "bulkops"), None)
    out: list[dict[str, Any]] = []
    wrong = [r["client"] for r in runs if r["floor_wrong"]]
    out.append(
        _goal(
            "floor check: no client beats the floor",
            "efficiency above 1 for " + ", ".join(wrong) + ": THE FLOOR IS WRONG" if wrong else "all ≤ 1",
            "efficiency ≤ 1",
            not wrong,
        )
    )
    if b is None:
        return out
    ok = b["correct"] == b["total"] and b["exit_code"] == 0 and not b["collateral"]
    out.append(
        _goal(
            "bulkops correct on the server",
            f"{b['correct']}/{b['total']}, collateral {b['collateral']}, exit {b['exit_code']}",
            "all, none, 0",
            ok,
        )
    )
    eff = b["efficiency"]
    out.append(
        _goal(
            "efficiency",
            f"{eff:.3f} (floor {b['floor_s']:.1f} s, wall {b['wall_s']:.1f} s)"
            if eff is not None
            else f"n/a: {b['admitted']} requests need no wait, floor 0 s (wall {b['wall_s']:.1f} s)",
            f"≥ {EFFICIENCY}",
            None if eff is None else eff >= EFFICIENCY,
        )
    )
    share = b["throttled_share"]
    out.append(
        _goal(
            "429s of bulkops' requests",
            f"{100 * share:.2f} % ({b['throttled']} of {b['requests']})",
            f"≤ {100 * THROTTLED_SHARE:.0f} %",
            share <= THROTTLED_SHARE,
        )
    )
    sdk = next((r for r in case["ratios"] if r["peer"] == "sdk"), None)
    if sdk is not None and case["scenario"] == "set-env":
        label = " (SDK extrapolated)" if sdk["extrapolated"] else ""
        out.append(
            _goal(
                "faster than the SDK on creates",
                f"{sdk['speedup']:.2f}×{label}",
                f"≥ {SDK_SPEEDUP:g}×",
                sdk["speedup"] >= SDK_SPEEDUP,
            )
        )
    if sdk is not None and case["scenario"] in ("move", "remove-tag") and case["devices"] >= BATCHABLE_AT:
        share_sdk = sdk["request_share"]
        out.append(
            _goal(
                "requests as a share of the SDK's (batchable work)",
                f"{b['requests']} / {sdk['peer_requests']} = 1/{1 / share_sdk:.1f}",
                "≤ 1/50",
                share_sdk <= SDK_REQUEST_SHARE,
            )
        )
    blind = b.get("blind_efficiency")
    if case["policy"] == "drop" and blind is not None:
        out.append(
            _goal(
                "efficiency on the blind floor (a client that cannot know when the drop comes)",
                f"{blind:.3f} (blind floor {b['blind_floor_s']:.1f} s, wall {b['wall_s']:.1f} s)",
                f"≥ {EFFICIENCY}",
                blind >= EFFICIENCY,
            )
        )
    rec = b.get("recovery")
    if case["policy"] == "drop":
        if rec is None:
            out.append(
                _goal(
                    "back to ≥ 90 % of the new budget within two windows",
                    "the run ended before the drop",
                    "drop, then ≥ 90 %",
                    None,
                )
            )
        else:
            shown = ", ".join(str(x) for x in rec["admitted_per_window"])
            out.append(
                _goal(
                    "back to ≥ 90 % of the new budget within two windows",
                    f"admitted per window after the drop: {shown}",
                    "≥ 90 % from the 2nd window",
                    rec["met"],
                )
            )
    return out


def verdict(met: bool | None) -> str:
    return "met" if met is True else ("**missed**" if met is False else "n/a")


def _fmt_run(run: dict[str, Any]) -> str:
    ex = run.get("extrapolated")
    wall, req, thr = f"{run['wall_s']:.1f}", str(run["requests"]), str(run["throttled"])
    if ex:
        wall = f"~{ex['wall_s']:.0f} ({wall})"
        req = f"~{ex['requests']} ({req})"
        thr = f"~{ex['throttled']} ({thr})"
    correct = f"{run['correct']}/{run['total']}" + (" (stopped)" if ex else "")
    if run["collateral"]:
        correct += f", {run['collateral']} collateral"
    if run["exit_code"] != 0 and not ex:
        correct += f", exit {run['exit_code']}"
    eff = "" if run["efficiency"] is None else f"{run['efficiency']:.2f}"
    if run["floor_wrong"]:
        eff += " FLOOR WRONG"
    return (
        f"| {run['client']} | {wall} | {req} | {thr} | {100 * run['throttled_share']:.1f} "
        f"| {run['floor_s']:.1f} "
        f"| {eff} | {_seconds(run.get('first_write_s'))} | {correct} | {run['cpu_s']:.2f} "
        f"| {run['peak_mb']:.0f} |"
    )


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _header(results: dict[str, Any]) -> list[str]:
    cfg, m = results["config"], results["machine"]
    probes = [r["sim_probe_ms"] for c in results["cases"] for r in c["runs"] if "sim_probe_ms" in r]
    lines = [
        "# bulkops benchmark results",
        "",
        "Generated by `python -m bench.run` (see `bench/README.md` for the method and the columns).",
        "",
        f"- started {results['started']}, took {results['total_s']} s; {m['cpus']} CPUs, "
        f"Python {m['python']}, "
        f"{m['platform']}{' (--quick)' if cfg['quick'] else ''}",
        f"- machine load (/proc/loadavg) before: `{results['load_before']}`, "
        f"after: `{results['load_after']}` "
        "(other work shares the cores: wall times carry its noise)",
        f"- budget {cfg['limit']} per client; fleets of "
        f"{', '.join(f'{n:,}' for n in cfg['devices'])} devices; "
        f"baselines still going after {cfg['cap']:g} s are stopped and extrapolated (`~`, measured value in "
        "parentheses)",
        f"- sdk: balena-sdk {results.get('sdk_version') or '(not run)'}"
        + "".join(f"; {c} skipped: {why}" for c, why in results.get("skipped_clients", {}).items()),
    ]
    if probes:
        lines.append(
            f"- simulator: a GET of 200 ids of the written resource took "
            f"{min(probes):.1f}-{max(probes):.1f} ms "
            "before each run (it is never the bottleneck)"
        )
    return [*lines, ""]


def _summary(results: dict[str, Any]) -> list[str]:
    lines = ["## Goals", "", "| case | goal | measured | target | verdict |", "|---|---|---|---|---|"]
    for c in results["cases"]:
        for g in c["goals"]:
            lines.append(
                f"| {c['key']} | {g['goal']} | {g['measured']} | {g['target']} | {verdict(g['met'])} |"
            )
    for g in results.get("memory_goals", []):
        lines.append(f"| memory | {g['goal']} | {g['measured']} | | {verdict(g['met'])} |")
    return [*lines, ""]


def _startup(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Start-up, on its own",
        "",
        "Interpreter and imports, no request (bulkops: `bulkops validate JOB`); median of 3.",
        "",
        "| client | wall s | CPU s | peak MB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['client']} | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | {s['peak_mb']:.0f} |"
        + ("" if s["ok"] else " (failed)")
        for s in results["startup"]
    ]
    return [*lines, ""]


def _case(c: dict[str, Any]) -> list[str]:
    lines = [
        f"## {c['title']} — {c['devices']:,} devices, {c['limit']}",
        "",
        f"`{c['key']}` · simulator limit `{c['spec']}` · floor for N admitted requests: {c['floor_formula']}",
        "",
        "| client | wall s | requests | 429s | 429 % | floor s | efficiency | first write s | correct "
        "| CPU s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[_fmt_run(r) for r in c["runs"]],
        "",
    ]
    if c["ratios"]:
        lines += ["| bulkops vs | faster by | its requests / peer's |", "|---|---|---|"]
        for r in c["ratios"]:
            mark = "~" if r["extrapolated"] else ""
            lines.append(
                f"| {r['peer']} | {mark}{r['speedup']:.2f}× | {mark}{r['request_share']:.3f} "
                f"({r['peer_requests']} requests) |"
            )
        lines.append("")
    for r in c["runs"]:
        if r.get("drop_at_s") is not None:
            lines.append(f"- {r['client']}: the budget halved at {r['drop_at_s']:.1f} s of its run")
        if r.get("log_tail"):
            lines.append(f"- {r['client']}: not all correct; log `{r['log']}`")
    return [*lines, ""]


def _memory(results: dict[str, Any]) -> list[str]:
    rows = results.get("memory", [])
    if not rows:
        return []
    lines = [
        "## Peak memory at large plans",
        "",
        "Scenario 3's data, no rate limit; `bulkops plan JOB -o PLAN`, then `bulkops apply PLAN --yes`.",
        "",
        "| targets | step | peak MB | wall s | CPU s | requests | plan file MB | exit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['targets']:,} | {r['step']} | {r['peak_mb']:.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
        f"| {r['requests']} | {r['plan_file_mb']} | {r['exit_code']} |"
        for r in rows
    ]
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    lines = _header(results) + _summary(results) + _startup(results)
    for c in results["cases"]:
        lines += _case(c)
    lines += _memory(results)
    return "\n".join(lines).rstrip("\n") + "\n"

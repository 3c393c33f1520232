"""README's benchmark table, generated from ``bench/results.json``.

    python -m bench.readme            # rewrite the marked block of README.md from bench/results.json
    python -m bench.readme --check    # exit 1 when the block is not what the results say

The block sits between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``; everything outside it is
left as it is. ``tests/test_bench_readme.py`` checks that the committed README matches the committed
results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.report import effective

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PEERS = ("loop", "async-fixed", "sdk")
TITLES = {
    "set-env": "`LOG_LEVEL=debug` on a fleet",
    "move": "move the `wave=1` devices",
    "remove-tag": "delete the `ring` tag",
}


def _wall(run: dict[str, Any] | None) -> str:
    if run is None:
        return "—"
    mark = "~" if run.get("extrapolated") else ""
    return f"{mark}{effective(run, 'wall_s'):.1f} s"


def _requests(run: dict[str, Any] | None) -> str:
    if run is None:
        return "—"
    mark = "~" if run.get("extrapolated") else ""
    return f"{mark}{round(effective(run, 'requests')):,}"


def render(results: dict[str, Any]) -> str:
    """The block's text (without the markers)."""
    cfg = results["config"]
    lines = [
        f"From `bench/results.json` ({results['started']}, {results['machine']['cpus']} cores, load "
        f"`{results['load_before'].split()[0]}` → `{results['load_after'].split()[0]}`; budget "
        f"{cfg['limit']} per client). Wall time, with requests below it; `~`: stopped after {cfg['cap']:g} s "
        "and extrapolated.",
        "",
        "| case | "
        + " | ".join(PEERS)
        + " | bulkops | bulkops 429s | floor | efficiency | vs SDK: speed-up · request share |",
        "|---|" + "---|" * (len(PEERS) + 5),
    ]
    for c in results["cases"]:
        by = {r["client"]: r for r in c["runs"]}
        b = by.get("bulkops")
        sdk = next((r for r in c["ratios"] if r["peer"] == "sdk"), None)
        name = f"{TITLES.get(c['scenario'], c['scenario'])}, {c['devices']:,}, {c['policy']}"
        cells = [f"{_wall(by.get(p))}<br>{_requests(by.get(p))}" for p in PEERS]
        eff = "" if b is None or b["efficiency"] is None else f"{b['efficiency']:.3f}"
        if b is not None and b["floor_wrong"]:
            eff += " (floor wrong)"
        vs = "—" if sdk is None else f"{sdk['speedup']:.1f}× · {sdk['request_share']:.3g}×"
        throttled = "—" if b is None else str(b["throttled"])
        floor = "—" if b is None else f"{b['floor_s']:.1f} s"
        lines.append(
            f"| {name} | {' | '.join(cells)} | {_wall(b)}<br>{_requests(b)} | {throttled} | {floor} "
            f"| {eff or 'n/a'} | {vs} |"
        )
    start = ", ".join(f"{s['client']} {s['wall_s']:.2f} s" for s in results.get("startup", []))
    lines += ["", f"Start-up alone (interpreter and imports, no request): {start}."]
    mem = results.get("memory", [])
    if mem:
        shown = "; ".join(f"{r['step']} {r['targets']:,}: {r['peak_mb']:.0f} MB" for r in mem)
        lines.append(f"Peak memory (`bulkops plan` / `bulkops apply`, no limit): {shown}.")
    goals = [g for c in results["cases"] for g in c["goals"]] + results.get("memory_goals", [])
    lines.append(
        f"Goals: {sum(g['met'] is True for g in goals)} met, {sum(g['met'] is False for g in goals)} missed, "
        f"{sum(1 for g in goals if g['met'] is None)} n/a — each with its numbers in "
        "[bench/results.md](bench/results.md)."
    )
    return "\n".join(lines)


def rewrite(readme: str, results: dict[str, Any]) -> str:
    """``readme`` with its marked block replaced by ``render(results)``."""
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"README has no {BEGIN} … {END} block")
    return f"{head}{BEGIN}\n{render(results)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    p.add_argument("--check", action="store_true", help="exit 1 when the block is out of date")
    a = p.parse_args(argv)
    path = Path(a.readme)
    text = path.read_text()
    new = rewrite(text, json.loads(Path(a.results).read_text()))
    if a.check:
        if new != text:
            print(
                f"bench: {path} is out of date with {a.results}: run python -m bench.readme", file=sys.stderr
            )
            return 1
        return 0
    path.write_text(new)
    print(f"bench: rewrote the benchmark block of {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a client and report its own resource usage: ``python -m bench.spawn REPORT -- CMD...``.

The harness holds the simulator's data, so a child it forked directly would count the harness's
resident pages in its peak memory (``ru_maxrss`` keeps the high-water mark of the memory the process
had before ``exec``). This small launcher starts the client instead, forwards SIGTERM and SIGINT to
it, waits for it and writes ``{"returncode", "wall", "cpu", "maxrss_kb"}`` as JSON to REPORT.
Only the standard library is imported, so its own few megabytes stay below any client's peak.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m bench.spawn REPORT -- CMD...\n")
        return 2
    report, cmd = argv[0], argv[2:]
    started = time.monotonic()
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(report, "w") as out:
        json.dump(
            {
                "returncode": proc.returncode,
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "maxrss_kb": usage.ru_maxrss,
            },
            out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Asking on a terminal in a way Ctrl-C always interrupts.

``input()`` can miss a Ctrl-C that arrives between writing the prompt and blocking in ``read()``: the
signal is noted but only acted on at the next bytecode, and the read blocks until Enter. So the answer is
awaited in short ``select()`` slices; a Ctrl-C is raised as ``KeyboardInterrupt`` within one slice. The
question goes to stderr, so that stdout stays one document (``run --json | jq`` still asks).
"""

from __future__ import annotations

import io
import select
import sys

SLICE = 0.1  # seconds


def ask(prompt: str) -> str:
    """Write ``prompt`` and read one line of answer (without its newline); EOF counts as no answer."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    stdin = sys.stdin
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a test's StringIO: nothing to wait for
        fd = -1
    while fd >= 0:
        ready, _, _ = select.select([fd], [], [], SLICE)
        if ready:
            break
    return stdin.readline().rstrip("\r\n")

"""The ``bulkops`` command's entry point: handles Ctrl-C from its first instant.

Everything heavy (aiohttp, the engine) is imported inside :func:`main`, under the handler, so an
interrupt while Python loads the program ends it with exit code 130 and one line, never a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from bulkops.cli import main as cli  # noqa: PLC0415 - imported under the Ctrl-C handler

        code = cli.main(argv)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from bulkops.cli import session  # noqa: PLC0415 - stdlib only, already loaded in practice

        return session.interrupted()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done: a late Ctrl-C cannot change it
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

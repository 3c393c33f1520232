"""Writing an output file (a plan, a CSV or JSON report) where the user pointed, without harm.

* ``-`` is stdout.
* A symlink is written through: what it points to is what gets written (the link stays).
* A character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written in place: it is
  opened for writing, never replaced, never chmod-ed.
* A regular file, or a path that does not exist yet, is written to a temporary file (0600) in the same
  directory and renamed over it, so a reader never sees half a file.
* Anything else (a directory, a socket, a block device) is refused, before any work is done.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from bulkops.errors import InputError
from bulkops.journal.runs import write_private

STDOUT = "-"
ACCEPTED = "give a regular file, a character device, a FIFO or - for stdout"


class Kind(StrEnum):
    STDOUT = "stdout"
    STREAM = "stream"  # a character device or a FIFO: written in place
    FILE = "file"  # a regular file or a new one: temp-and-rename


def _refuse(path: str | Path, what: str, reason: str) -> InputError:
    return InputError(f"cannot write {what} to {path}: {reason}; {ACCEPTED}")


def output_kind(path: str | Path, what: str = "the output") -> tuple[Kind, Path]:
    """How ``path`` will be written, and the path actually written (symlinks followed);
    :class:`InputError` for a path that cannot be written safely. Only reads the file's type."""
    if str(path) == STDOUT:
        return Kind.STDOUT, Path(STDOUT)
    try:
        mode = os.stat(path).st_mode  # through symlinks, as the kernel sees them (/dev/stdout included)
    except FileNotFoundError:
        real = Path(os.path.realpath(path))
        if not real.parent.is_dir():
            given = Path(path).parent
            missing = real.parent if given.is_dir() else given  # a dangling symlink into nowhere
            raise _refuse(path, what, f"the directory {missing} does not exist") from None
        return Kind.FILE, real
    except OSError as exc:
        raise _refuse(path, what, exc.strerror or str(exc)) from None
    if stat.S_ISREG(mode):
        return Kind.FILE, Path(os.path.realpath(path))
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return Kind.STREAM, Path(path)  # opened by the name given: a /proc/self/fd link works
    if stat.S_ISDIR(mode):
        reason = "it is a directory"
    elif stat.S_ISBLK(mode):
        reason = "it is a block device"
    elif stat.S_ISSOCK(mode):
        reason = "it is a socket"
    else:
        reason = "it is not a file"
    raise _refuse(path, what, reason)


def check_output(path: str | Path, what: str = "the output") -> None:
    """Refuse an output path that cannot be written safely, before any work is done."""
    output_kind(path, what)


def write_output(path: str | Path, data: bytes | Iterable[bytes], what: str = "the output") -> None:
    """Write ``data`` (bytes, or pieces of it) to ``path`` as the module docstring says."""
    kind, real = output_kind(path, what)
    pieces = [data] if isinstance(data, bytes) else data
    try:
        if kind is Kind.STDOUT:
            sys.stdout.flush()
            out = sys.stdout.buffer
            out.writelines(pieces)
            out.flush()
        elif kind is Kind.STREAM:
            fd = os.open(real, os.O_WRONLY | os.O_NOCTTY)
            with os.fdopen(fd, "wb") as fh:
                fh.writelines(pieces)
        else:
            write_private(real, pieces)
    except OSError as exc:
        raise _refuse(path, what, exc.strerror or str(exc)) from exc

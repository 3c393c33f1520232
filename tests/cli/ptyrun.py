"""Run the real ``bulkops`` command in a pseudo-terminal: what a person at a terminal sees."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def plain(raw: bytes) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return ANSI.sub("", raw.decode("utf-8", "replace"))


@dataclass
class PtyRun:
    """A CLI child process whose stdin, stdout and stderr are one pseudo-terminal."""

    proc: subprocess.Popen[bytes]
    master: int
    raw: bytearray = field(default_factory=bytearray)

    def read(self, timeout: float = 0.1) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw.extend(os.read(self.master, 65536))
            except OSError:  # the child closed the terminal
                time.sleep(timeout)

    def text(self) -> str:
        return plain(bytes(self.raw))

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Read until ``pattern`` shows up in the plain text; AssertionError (with the text) if it never
        does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                self.read(0.2)
                m = re.search(pattern, self.text())
                if m:
                    return m
                break
            self.read()
        raise AssertionError(f"{pattern!r} never appeared; the terminal showed:\n{self.text()}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: the line discipline turns it into SIGINT for the foreground job."""
        self.send(b"\x03")

    def finish(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            raise AssertionError(f"the command did not end in {timeout}s:\n{self.text()}")
        for _ in range(5):
            self.read(0.05)
        os.close(self.master)
        return self.proc.returncode


def spawn(
    args: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None, columns: int = 120
) -> PtyRun:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "bulkops", *args], stdin=slave, stdout=slave, stderr=slave, env=dict(env),
        cwd=cwd, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509 - make it the controlling tty
    )
    os.close(slave)
    return PtyRun(proc, master)

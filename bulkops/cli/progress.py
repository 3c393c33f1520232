"""The progress line shown on a terminal while a run applies."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bulkops.api.limiter import AdaptiveLimiter
from bulkops.model import Progress


class ProgressLine:
    """``done/total, req/s, concurrency, 429s, ETA`` on one terminal line (stderr), at most 5 per second."""

    def __init__(self, limiter: AdaptiveLimiter | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.limiter = limiter
        self._last = 0.0
        self.enabled = self.stream.isatty()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and p.done < p.total):
            return
        self._last = now
        rate = p.requests / p.elapsed if p.elapsed > 0 else 0.0
        conc = self.limiter.statistics().concurrency if self.limiter is not None else 0
        per_item = p.elapsed / p.done if p.done else 0.0
        eta = per_item * (p.total - p.done)
        self.stream.write(
            f"\r  {p.done}/{p.total} done   {rate:.1f} req/s   concurrency {conc}   429s {p.throttled}"
            f"   ETA {eta:.0f}s   "
        )
        if p.done >= p.total:
            self.stream.write("\n")
        self.stream.flush()

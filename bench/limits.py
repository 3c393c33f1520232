"""The server's limit policies and the floor each one puts under a run: the shortest wall time in which
any client could have N requests admitted.

* ``fixed`` — balena's fixed window, B requests per W seconds per client, opened by the client's first
  request; over the budget ``429`` with ``Retry-After`` = seconds to the reset, rounded (so it can be
  ``0``). Floor: the whole budget is admitted the moment a window opens, so N requests need ⌈N/B⌉
  windows and the last can go the instant the last window opens: **(⌈N/B⌉ − 1)·W**.
* ``fixed-ceil`` — the same window with ``Retry-After`` rounded up (never ``0`` mid-window). Same floor.
* ``bucket`` — a token bucket refilled at r = B/W per second, starting full with ``burst`` tokens:
  **max(0, N − burst) / r**.
* ``drop`` — the fixed window until a fixed time T after the limit was applied (just before the client
  is started), then B' = B/2 per W with fresh windows for every client. With the client's first request
  at t = 0 (its launch, the earliest possible), windows open at 0, W, 2W, … before T: k = ⌈T/W⌉ of them,
  admitting up to k·B. If N ≤ k·B the floor is the fixed one, (⌈N/B⌉ − 1)·W. Otherwise the other
  R = N − k·B requests start at T, when the first fresh window opens: **T + (⌈R/B'⌉ − 1)·W**. A later
  first request can only open fewer windows before T, so no client beats this. T is taken on the
  client's clock (T minus the delay between applying the limit and launching the client).

Under ``drop`` that floor belongs to a client that knows T: it sends at T, while its own window
still seems spent. A client that cannot know T sends nothing until its window's reset, so its window
after the drop opens at kW at the earliest: its floor, the **blind floor**, is **(k + ⌈R/B'⌉ − 1)·W**.
The results show both; the goal is judged on the first.

The floor counts only what the limit forces: start-up, computing and latency are all above it, so a
run's efficiency = floor / wall is at most 1, and a value above 1 means the floor is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Policy(StrEnum):
    FIXED = "fixed"
    FIXED_CEIL = "fixed-ceil"
    BUCKET = "bucket"
    DROP = "drop"


POLICY_TEXT = {
    Policy.FIXED: "fixed window, Retry-After rounded (can be 0)",
    Policy.FIXED_CEIL: "fixed window, Retry-After rounded up",
    Policy.BUCKET: "token bucket",
    Policy.DROP: "fixed window halved at a fixed time",
}


def parse_budget(text: str) -> tuple[int, float]:
    """``1000/10s`` → (1000, 10.0); also ``500ms`` and ``1m`` windows."""
    count, slash, per = text.removeprefix("fixed:").partition("/")
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if per.endswith(suffix):
            number = per.removesuffix(suffix) or "1"
            break
    else:
        number, suffix = per, "s"
    if not slash or not count.isdigit() or int(count) < 1:
        raise ValueError(f"limit {text!r}: expected N/W with N a positive whole number, like 1000/10s")
    try:
        window = float(number) * unit[suffix]
    except ValueError:
        raise ValueError(f"limit {text!r}: bad window {per!r}; expected like 10s, 500ms, 1m") from None
    if window <= 0:
        raise ValueError(f"limit {text!r}: the window must be positive")
    return int(count), window


def fixed_floor(n: int, points: int, window: float) -> float:
    """(⌈N/B⌉ − 1)·W: the last of N requests goes the instant the last window opens."""
    return 0.0 if n <= 0 else (math.ceil(n / points) - 1) * window


def bucket_floor(n: int, rate: float, burst: int) -> float:
    """(N − burst)/rate: a full bucket, then one token per 1/rate seconds."""
    return max(0, n - burst) / rate


def drop_floor(n: int, points: int, window: float, at: float, after: int) -> float:
    """The fixed window until ``at`` seconds (client clock), then ``after`` per window, fresh windows."""
    if at <= 0:
        return fixed_floor(n, after, window)
    before = math.ceil(at / window) * points
    if n <= before:
        return fixed_floor(n, points, window)
    return at + fixed_floor(n - before, after, window)


def blind_drop_floor(n: int, points: int, window: float, at: float, after: int) -> float:
    """The drop floor for a client that cannot know ``at``: after the drop its windows still open at
    multiples of ``window`` from its first request."""
    if at <= 0:
        return fixed_floor(n, after, window)
    k = math.ceil(at / window)
    if n <= k * points:
        return fixed_floor(n, points, window)
    return (k + math.ceil((n - k * points) / after) - 1) * window


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit policy at a budget of ``points`` per ``window`` seconds."""

    policy: Policy
    points: int
    window: float
    burst: int = 0  # bucket only: its size (0: a tenth of the budget)
    drop_at: float = 0.0  # drop only: seconds after the limit was applied

    @property
    def rate(self) -> float:
        return self.points / self.window

    @property
    def bucket_size(self) -> int:
        return self.burst or max(1, self.points // 10)

    @property
    def after(self) -> int:
        """The budget after the drop."""
        return max(1, self.points // 2)

    def spec(self) -> str:
        """The simulator's SPEC for this policy (``bulkops sim --rate-limit``)."""
        w = f"{self.window:g}s"
        if self.policy is Policy.FIXED:
            return f"fixed:{self.points}/{w}"
        if self.policy is Policy.FIXED_CEIL:
            return f"fixed:{self.points}/{w},retry_after=ceil"
        if self.policy is Policy.BUCKET:
            return f"bucket:{self.points}/{w},burst={self.bucket_size}"
        return f"fixed:{self.points}/{w}@0,fixed:{self.after}/{w}@{self.drop_at:g}s"

    def floor(self, n: int, *, launch_delay: float = 0.0) -> float:
        """The floor for ``n`` admitted requests; ``launch_delay``: seconds from applying the limit to
        the client's launch (moves the drop earlier on the client's clock)."""
        if self.policy is Policy.BUCKET:
            return bucket_floor(n, self.rate, self.bucket_size)
        if self.policy is Policy.DROP:
            return drop_floor(n, self.points, self.window, self.drop_at - launch_delay, self.after)
        return fixed_floor(n, self.points, self.window)

    def blind_floor(self, n: int, *, launch_delay: float = 0.0) -> float | None:
        """The drop floor for a client that cannot know when the drop comes (None for other policies)."""
        if self.policy is not Policy.DROP:
            return None
        return blind_drop_floor(n, self.points, self.window, self.drop_at - launch_delay, self.after)

    def formula(self) -> str:
        """The floor as text, for the results."""
        b, w = self.points, f"{self.window:g}"
        if self.policy is Policy.BUCKET:
            return f"max(0, N − {self.bucket_size}) / {self.rate:g} per s"
        if self.policy is Policy.DROP:
            k = f"⌈T/{w}⌉·{b}"
            return (
                f"(⌈N/{b}⌉ − 1)·{w} s if N ≤ {k}, else T + (⌈(N − {k})/{self.after}⌉ − 1)·{w} s, "
                f"T = {self.drop_at:g} s less the launch delay"
            )
        return f"(⌈N/{b}⌉ − 1)·{w} s"

    def describe(self) -> str:
        text = f"{POLICY_TEXT[self.policy]}, {self.points}/{self.window:g}s"
        if self.policy is Policy.BUCKET:
            text = f"{POLICY_TEXT[self.policy]}, {self.rate:g}/s, burst {self.bucket_size}"
        if self.policy is Policy.DROP:
            text += f" → {self.after}/{self.window:g}s at {self.drop_at:g} s"
        return text

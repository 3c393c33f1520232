"""A balenaCloud-like rate limiter for the simulator, as an aiohttp middleware.

balenaCloud limits requests with a fixed window of N points per W seconds keyed by client address and
user; the window starts at the first request the server sees for a key, on the server's clock. Over
the budget it answers ``429``, body ``"Too Many Requests"``, ``Retry-After: round(ms left / 1000)`` —
which can be ``0``. An optional block period follows a spent budget (``Retry-After`` then counts to the
block's end). ``retry_after=ceil`` rounds ``Retry-After`` up instead (never ``0`` while the window
runs), for comparing clients under both habits. A token-bucket policy is offered for comparison.

SPEC forms (see ``parse_spec``): ``none``, ``fixed:1000/10s``, ``fixed:100/10s,block=60s``,
``fixed:1000/10s,retry_after=ceil``,
``bucket:50/s,burst=100``, and a schedule ``fixed:1000/10s@0,fixed:500/10s@30s`` (policies separated by
``,``, each with ``@<time>``: it starts that long after the spec was applied).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bulkops.sim.admin import add_spec_routes
from bulkops.sim.requestlog import OUTCOME_KEY, Outcome, client_key, is_admin

__all__ = [
    "Decision",
    "FixedWindow",
    "NoLimit",
    "Policy",
    "RateLimitStats",
    "RateLimiter",
    "TokenBucket",
    "parse_spec",
    "retry_after_seconds",
]

TOO_MANY_REQUESTS: Final = orjson.dumps("Too Many Requests")
ACCEPTED_FORMS: Final = (
    "accepted: 'none', 'fixed:<N>/<window>[,block=<duration>][,retry_after=round|ceil]', "
    "'bucket:<rate>/<unit>,burst=<N>', "
    "each optionally followed by '@<start>' and joined by ',' into a schedule "
    "(e.g. 'fixed:1000/10s@0,fixed:500/10s@30s'); durations like 10s, 500ms, 1m, 1h"
)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)?(ms|s|m|h)?$")
_MAX_IDLE_KEYS: Final = 10_000
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class NoLimit:
    pass


@dataclass(frozen=True, slots=True)
class FixedWindow:
    points: int  # requests per window
    window: float  # seconds
    block: float = 0.0  # seconds a client is blocked once it spends its budget (0: no block)
    ceil: bool = False  # Retry-After rounded up (True) or to the nearest second, halves up (balena)


@dataclass(frozen=True, slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: int  # bucket size; a new client starts with a full bucket


Policy = NoLimit | FixedWindow | TokenBucket
Schedule = tuple[tuple[float, Policy], ...]  # (seconds after the spec was applied, policy)


def _seconds(text: str, spec: str, *, need_number: bool) -> float:
    match = _DURATION.match(text)
    if not text or match is None or (need_number and match.group(1) is None):
        raise ValueError(f"rate limit spec {spec!r}: bad duration {text!r}; {ACCEPTED_FORMS}")
    number = float(match.group(1)) if match.group(1) is not None else 1.0
    return number * _UNIT_SECONDS[match.group(2) or "s"]


def _parse_one(tokens: list[str], spec: str) -> Policy:
    head, *options = tokens
    kind, _, body = head.partition(":")
    opts: dict[str, str] = {}
    for option in options:
        name, eq, value = option.partition("=")
        if not eq or name in opts:
            raise ValueError(f"rate limit spec {spec!r}: bad option {option!r}; {ACCEPTED_FORMS}")
        opts[name] = value
    if kind == "none" and not body and not opts:
        return NoLimit()
    count, slash, per = body.partition("/")
    if kind not in ("fixed", "bucket") or not slash or not re.fullmatch(r"\d+(\.\d+)?", count):
        raise ValueError(f"rate limit spec {spec!r}: cannot read {','.join(tokens)!r}; {ACCEPTED_FORMS}")
    period = _seconds(per, spec, need_number=False)
    if period <= 0 or float(count) <= 0:
        raise ValueError(f"rate limit spec {spec!r}: the rate must be positive; {ACCEPTED_FORMS}")
    if kind == "fixed":
        unknown = set(opts) - {"block", "retry_after"}
        if unknown or not count.isdigit() or opts.get("retry_after", "round") not in ("round", "ceil"):
            raise ValueError(f"rate limit spec {spec!r}: cannot read {','.join(tokens)!r}; {ACCEPTED_FORMS}")
        block = _seconds(opts["block"], spec, need_number=True) if "block" in opts else 0.0
        return FixedWindow(int(count), period, block, opts.get("retry_after") == "ceil")
    if set(opts) != {"burst"} or not opts["burst"].isdigit() or int(opts["burst"]) < 1:
        raise ValueError(f"rate limit spec {spec!r}: a bucket needs burst=<N>, N >= 1; {ACCEPTED_FORMS}")
    return TokenBucket(float(count) / period, int(opts["burst"]))


def parse_spec(spec: str) -> Schedule:
    """Read a SPEC into a schedule; a plain policy is a schedule of one step at 0."""
    groups: list[list[str]] = []
    for raw in spec.split(","):
        token = raw.strip()
        if token.startswith(("none", "fixed:", "bucket:")) or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    steps: list[tuple[float, Policy]] = []
    for group in groups:
        last, at_sign, start = group[-1].partition("@")
        if not at_sign and len(groups) > 1:
            raise ValueError(f"rate limit spec {spec!r}: every step of a schedule needs '@<start>'; "
                             f"{ACCEPTED_FORMS}")
        at = _seconds(start, spec, need_number=True) if at_sign else 0.0
        steps.append((at, _parse_one([*group[:-1], last], spec)))
    steps.sort(key=lambda step: step[0])
    return tuple(steps)


def _duration_text(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def render_policy(policy: Policy) -> str:
    if isinstance(policy, FixedWindow):
        block = f",block={_duration_text(policy.block)}" if policy.block > 0 else ""
        ceil = ",retry_after=ceil" if policy.ceil else ""
        return f"fixed:{policy.points}/{_duration_text(policy.window)}{block}{ceil}"
    if isinstance(policy, TokenBucket):
        return f"bucket:{policy.rate:g}/s,burst={policy.burst}"
    return "none"


def render_schedule(schedule: Schedule) -> str:
    if len(schedule) == 1 and schedule[0][0] == 0:
        return render_policy(schedule[0][1])
    return ",".join(f"{render_policy(p)}@{_duration_text(at)}" for at, p in schedule)


def retry_after_seconds(ms: float) -> int:
    """balena's ``Retry-After``: milliseconds rounded half up to whole seconds (so it can be 0)."""
    return max(0, math.floor(ms / 1000 + 0.5))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int  # seconds, only meaningful when not allowed
    ms_before_next: float  # exact time until the window resets or the block ends


@dataclass(frozen=True, slots=True)
class RateLimitStats:
    spec: str  # the current policy
    schedule: str  # the whole schedule as applied (equals spec when there is no schedule)
    allowed: int
    throttled: int
    keys: int  # clients with a live window or bucket


@dataclass(slots=True)
class _Window:
    consumed: int
    expires_at: float  # end of the window, or of the block once blocked


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """Decides per client key; the policy can be replaced or scheduled while the server runs.

    A policy change (``set_policy``, a scheduled step, ``PUT /_sim/ratelimit``) starts every client with
    a fresh window or a full bucket. ``clock`` returns seconds (monotonic by default).
    """

    def __init__(
        self, policy: Policy | str = NoLimit(), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._allowed = 0
        self._throttled = 0
        self._steps: list[tuple[float, Policy]] = []  # (absolute clock time, policy), sorted
        self._policy: Policy = NoLimit()
        self._applied: Schedule = ((0.0, NoLimit()),)
        self.set_policy(policy)

    @property
    def policy(self) -> Policy:
        self._advance(self._clock())
        return self._policy

    def set_policy(self, policy: Policy | str) -> None:
        """Apply a policy or a SPEC (which may be a schedule) now; pending scheduled steps are dropped."""
        schedule = parse_spec(policy) if isinstance(policy, str) else ((0.0, policy),)
        now = self._clock()
        self._applied = schedule
        self._steps = sorted(((now + at, p) for at, p in schedule), key=lambda step: step[0])
        self._policy = NoLimit()
        self._advance(now)

    def schedule(self, at_seconds: float, policy: Policy | str) -> None:
        """Switch to ``policy`` ``at_seconds`` from now (on the limiter's clock)."""
        parsed = parse_spec(policy) if isinstance(policy, str) else ((0.0, policy),)
        if len(parsed) != 1:
            raise ValueError("schedule() takes one policy, not a schedule")
        self._steps.append((self._clock() + at_seconds, parsed[0][1]))
        self._steps.sort(key=lambda step: step[0])
        self._applied = (*self._applied, (at_seconds, parsed[0][1]))

    def _advance(self, now: float) -> None:
        changed = False
        while self._steps and self._steps[0][0] <= now:
            self._policy = self._steps.pop(0)[1]
            changed = True
        if changed:
            self._windows.clear()
            self._buckets.clear()

    def check(self, key: str) -> Decision:
        """Consume one point for ``key`` and say whether the request may pass."""
        now = self._clock()
        self._advance(now)
        policy = self._policy
        if isinstance(policy, FixedWindow):
            decision = self._check_window(policy, key, now)
        elif isinstance(policy, TokenBucket):
            decision = self._check_bucket(policy, key, now)
        else:
            decision = Decision(True, 0, 0.0)
        if decision.allowed:
            self._allowed += 1
        else:
            self._throttled += 1
        return decision

    def _check_window(self, policy: FixedWindow, key: str, now: float) -> Decision:
        window = self._windows.get(key)
        if window is None or window.expires_at <= now:
            if len(self._windows) > _MAX_IDLE_KEYS:  # forget clients whose windows have ended
                self._windows = {k: w for k, w in self._windows.items() if w.expires_at > now}
            window = _Window(0, now + policy.window)
            self._windows[key] = window
        window.consumed += 1
        if window.consumed <= policy.points:
            return Decision(True, 0, (window.expires_at - now) * 1000)
        if policy.block > 0 and window.consumed == policy.points + 1:
            window.expires_at = now + policy.block  # the first request over the budget starts the block
        ms = (window.expires_at - now) * 1000
        return Decision(False, math.ceil(ms / 1000) if policy.ceil else retry_after_seconds(ms), ms)

    def _check_bucket(self, policy: TokenBucket, key: str, now: float) -> Decision:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(policy.burst), now)
            self._buckets[key] = bucket
        bucket.tokens = min(float(policy.burst), bucket.tokens + (now - bucket.updated_at) * policy.rate)
        bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(True, 0, 0.0)
        ms = (1.0 - bucket.tokens) / policy.rate * 1000
        return Decision(False, retry_after_seconds(ms), ms)

    def statistics(self) -> RateLimitStats:
        now = self._clock()
        self._advance(now)
        live = sum(1 for w in self._windows.values() if w.expires_at > now) + len(self._buckets)
        return RateLimitStats(
            spec=render_policy(self._policy),
            schedule=render_schedule(self._applied),
            allowed=self._allowed,
            throttled=self._throttled,
            keys=live,
        )

    def make_middleware(self) -> Middleware:
        limiter = self

        @web.middleware
        async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if is_admin(request):
                return await handler(request)
            decision = limiter.check(client_key(request))
            if decision.allowed:
                return await handler(request)
            request[OUTCOME_KEY] = Outcome.THROTTLED
            return web.Response(
                status=429,
                body=TOO_MANY_REQUESTS,
                content_type="application/json",
                charset="utf-8",
                headers={"Retry-After": str(decision.retry_after)},
            )

        return rate_limit_middleware

    def add_routes(self, app: web.Application) -> None:
        add_spec_routes(app, "/_sim/ratelimit", stats=self._stats, set_spec=self.set_policy)

    def _stats(self) -> dict[str, object]:
        s = self.statistics()
        return {"spec": s.spec, "schedule": s.schedule, "allowed": s.allowed, "throttled": s.throttled,
                "keys": s.keys}

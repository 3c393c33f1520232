"""Seeded, deterministic fault injection for the simulator, as an aiohttp middleware.

SPEC: comma-separated ``name=value`` items, e.g. ``503=0.05,reset=0.02,lost=0.02,latency=5ms~3ms,seed=42``:

- ``503=P``: answer ``503`` with an empty body, without handling the request;
- ``reset=P``: reset the connection before the request is handled (nothing applied);
- ``lost=P``: handle the request (the change is committed), then drop the connection without an answer;
- ``latency=D[~J]``: delay every affected request by D plus a uniform jitter in [-J, +J] (not below 0);
- ``outage=A..B``: answer ``503`` to every affected request from A to B after the SPEC was applied
  (durations such as ``30s`` or ``500ms``, on the injector's clock), e.g. ``outage=120s..300s``;
- ``seed=N``: the random seed (default 0); the same seed and request sequence give the same faults;
- ``methods=POST,PATCH``: restrict all of the above to these methods (default: every method).

``none`` (or an empty SPEC) injects nothing. Admin requests under ``/_sim/`` are never affected.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bulkops.sim.admin import add_spec_routes
from bulkops.sim.requestlog import OUTCOME_KEY, Outcome, is_admin

ACCEPTED_FORMS: Final = (
    "accepted: 'none' or comma-separated 503=P, reset=P, lost=P (probabilities 0..1, summing to <= 1), "
    "latency=D[~J] (e.g. 5ms~3ms), outage=A..B (e.g. 120s..300s), seed=N, methods=M[,M...] "
    "(e.g. methods=POST,PATCH)"
)
_METHODS: Final = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "MERGE", "HEAD", "OPTIONS"})
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    p503: float = 0.0
    reset: float = 0.0
    lost: float = 0.0
    latency: float = 0.0  # seconds
    jitter: float = 0.0  # seconds
    seed: int = 0
    methods: frozenset[str] = frozenset()  # empty: every method
    outage: tuple[float, float] | None = None  # seconds after the SPEC was applied: (from, until)

    @property
    def active(self) -> bool:
        return (self.p503 + self.reset + self.lost > 0 or self.latency > 0 or self.jitter > 0
                or self.outage is not None)

    def render(self) -> str:
        if not self.active:
            return "none" if self.seed == 0 else f"seed={self.seed}"
        parts = [f"{name}={value:g}" for name, value in (("503", self.p503), ("reset", self.reset),
                                                          ("lost", self.lost)) if value > 0]
        if self.latency > 0 or self.jitter > 0:
            parts.append(f"latency={self.latency * 1000:g}ms~{self.jitter * 1000:g}ms")
        if self.outage is not None:
            parts.append(f"outage={self.outage[0]:g}s..{self.outage[1]:g}s")
        parts.append(f"seed={self.seed}")
        if self.methods:
            parts.append("methods=" + ",".join(sorted(self.methods)))
        return ",".join(parts)


def _duration(text: str, spec: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"fault spec {spec!r}: bad duration {text!r}; {ACCEPTED_FORMS}")
    return float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0)


def _probability(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fault spec {spec!r}: bad probability {text!r}; {ACCEPTED_FORMS}")
    return value


def parse_faults(spec: str) -> FaultSpec:
    """Read a fault SPEC; raises ValueError naming the SPEC and the accepted forms."""
    if spec.strip() in ("", "none"):
        return FaultSpec()
    values: dict[str, float] = {}
    latency = jitter = 0.0
    outage: tuple[float, float] | None = None
    seed = 0
    methods: set[str] = set()
    in_methods = False
    for raw in spec.split(","):
        token = raw.strip()
        name, eq, value = token.partition("=")
        if not eq and in_methods and token.upper() in _METHODS:
            methods.add(token.upper())
            continue
        in_methods = False
        if name in ("503", "reset", "lost") and eq:
            values[name] = _probability(value, spec)
        elif name == "latency" and eq:
            base, _, spread = value.partition("~")
            latency = _duration(base, spec)
            jitter = _duration(spread, spec) if spread else 0.0
        elif name == "outage" and eq:
            start, dots, end = value.partition("..")
            if not dots:
                raise ValueError(f"fault spec {spec!r}: bad outage {value!r}; {ACCEPTED_FORMS}")
            outage = (_duration(start, spec), _duration(end, spec))
            if outage[1] <= outage[0]:
                raise ValueError(f"fault spec {spec!r}: the outage {value!r} ends before it starts; "
                                 f"{ACCEPTED_FORMS}")
        elif name == "seed" and eq and value.isdigit():
            seed = int(value)
        elif name == "methods" and eq and value.upper() in _METHODS:
            methods.add(value.upper())
            in_methods = True
        else:
            raise ValueError(f"fault spec {spec!r}: cannot read {token!r}; {ACCEPTED_FORMS}")
    if sum(values.values()) > 1.0:
        raise ValueError(f"fault spec {spec!r}: the probabilities sum to more than 1; {ACCEPTED_FORMS}")
    return FaultSpec(values.get("503", 0.0), values.get("reset", 0.0), values.get("lost", 0.0),
                     latency, jitter, seed, frozenset(methods), outage)


def drop_connection(request: web.Request, *, reset: bool) -> None:
    """Close the client's connection at once; with ``reset`` the peer gets a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass(frozen=True, slots=True)
class FaultStats:
    spec: str
    requests: int  # requests the faults applied to (after the methods filter)
    fault_503: int
    reset: int
    lost: int


class FaultInjector:
    """Draws one fault decision per affected request from a seeded generator."""

    def __init__(
        self, spec: FaultSpec | str = FaultSpec(), *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._applied_at = clock()
        self._spec = FaultSpec()
        self._rng = random.Random(0)  # noqa: S311 - reproducible faults, not secrets
        self._counts = {"requests": 0, "503": 0, "reset": 0, "lost": 0}
        self.set_spec(spec)

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def set_spec(self, spec: FaultSpec | str) -> None:
        """Replace the faults; the generator restarts from the SPEC's seed."""
        self._spec = parse_faults(spec) if isinstance(spec, str) else spec
        self._applied_at = self._clock()
        self._rng = random.Random(self._spec.seed)  # noqa: S311 - reproducible faults
        self._counts = dict.fromkeys(self._counts, 0)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Replace the clock the outage window is measured on (tests run it on virtual time); the window
        then counts from now."""
        self._clock = clock
        self._applied_at = clock()

    def in_outage(self) -> bool:
        window = self._spec.outage
        if window is None:
            return False
        elapsed = self._clock() - self._applied_at
        return window[0] <= elapsed < window[1]

    def decide(self, method: str) -> tuple[str | None, float]:
        """The fault (``"503"``, ``"reset"``, ``"lost"`` or None) and the delay for the next request."""
        spec = self._spec
        if not spec.active or (spec.methods and method.upper() not in spec.methods):
            return None, 0.0
        self._counts["requests"] += 1
        draw = self._rng.random()
        delay = 0.0
        if spec.latency > 0 or spec.jitter > 0:
            delay = max(0.0, spec.latency + self._rng.uniform(-spec.jitter, spec.jitter))
        fault: str | None = None
        if self.in_outage() or draw < spec.p503:
            fault = "503"
        elif draw < spec.p503 + spec.reset:
            fault = "reset"
        elif draw < spec.p503 + spec.reset + spec.lost:
            fault = "lost"
        if fault is not None:
            self._counts[fault] += 1
        return fault, delay

    def statistics(self) -> FaultStats:
        c = self._counts
        return FaultStats(self._spec.render(), c["requests"], c["503"], c["reset"], c["lost"])

    def make_middleware(self) -> Middleware:
        injector = self

        @web.middleware
        async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if is_admin(request):
                return await handler(request)
            fault, delay = injector.decide(request.method)
            if delay > 0:
                await injector._sleep(delay)
            if fault == "503":
                request[OUTCOME_KEY] = Outcome.FAULT_503
                return web.Response(status=503)
            if fault == "reset":
                request[OUTCOME_KEY] = Outcome.FAULT_RESET
                drop_connection(request, reset=True)
                return web.Response(status=503)  # never written: the transport is closed
            response = await handler(request)
            if fault == "lost":
                request[OUTCOME_KEY] = Outcome.FAULT_LOST
                drop_connection(request, reset=False)
            return response

        return fault_middleware

    def add_routes(self, app: web.Application) -> None:
        add_spec_routes(app, "/_sim/faults", stats=self._stats, set_spec=self.set_spec)

    def _stats(self) -> dict[str, object]:
        s = self.statistics()
        return {"spec": s.spec, "requests": s.requests, "503": s.fault_503, "reset": s.reset, "lost": s.lost}

"""Simulated devices: online devices move to the release they should run, some never do.

Every tick, an online device whose ``is_running__release`` differs from its effective target (its pin,
else its fleet's ``should_be_running__release``) starts updating (``update_status`` downloading); once
``converge_delay`` seconds have passed since it first saw that target it runs it (``is_running__release``
set, ``update_status`` done, ``status`` Idle). A deterministic ``stuck_fraction`` of devices never
converges (``update_status`` aborted) and an ``offline_fraction`` goes offline instead (``is_online``
false, ``api_heartbeat_state`` offline) — so staged rollouts can be tested against gates that fail.
A ``bad_release`` with a ``bad_release_fraction`` fails only there: that share of the devices told to
run that release gives up on it (``update_status`` aborted, still online, still on its old release)
and converges as usual on any other release — an update that goes wrong, undone by a rollback.
Offline devices do not change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from bulkops.sim.seed import SeedDatabase, iso

log = structlog.get_logger("bulkops.sim.devices")

_PENDING_SQL = """
SELECT d.id, COALESCE(d.is_pinned_on__release, a.should_be_running__release) AS target
FROM device AS d JOIN application AS a ON a.id = d.belongs_to__application
WHERE d.is_online = 1
  AND COALESCE(d.is_pinned_on__release, a.should_be_running__release) IS NOT NULL
  AND d.is_running__release IS NOT COALESCE(d.is_pinned_on__release, a.should_be_running__release)
"""


def fraction_of(seed: int, device_id: int, purpose: str) -> float:
    """A stable number in [0, 1) per device and purpose: decides which devices get stuck or go offline."""
    digest = hashlib.blake2b(f"{seed}:{purpose}:{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class TickResult:
    started: int  # devices that saw a new target and began updating
    converged: int
    stuck: int  # devices that gave up (update_status aborted)
    went_offline: int


class DeviceSimulator:
    """Moves devices towards their target release; ``tick(now)`` does one step, ``run()`` ticks forever."""

    def __init__(
        self, db: SeedDatabase, *, converge_delay: float = 5.0, stuck_fraction: float = 0.0,
        offline_fraction: float = 0.0, seed: int = 0, interval: float = 1.0,
        clock: Callable[[], datetime] | None = None, bad_release: int | None = None,
        bad_release_fraction: float = 0.0,
    ) -> None:
        if not (0.0 <= stuck_fraction <= 1.0 and 0.0 <= offline_fraction <= 1.0):
            raise ValueError("stuck_fraction and offline_fraction must be between 0 and 1")
        if not 0.0 <= bad_release_fraction <= 1.0:
            raise ValueError("bad_release_fraction must be between 0 and 1")
        if stuck_fraction + offline_fraction > 1.0:
            raise ValueError("stuck_fraction + offline_fraction must not exceed 1")
        self._db = db
        self.converge_delay = converge_delay
        self.stuck_fraction = stuck_fraction
        self.offline_fraction = offline_fraction
        self._seed = seed
        self._interval = interval
        self._clock = clock
        self.bad_release = bad_release
        self.bad_release_fraction = bad_release_fraction
        self._seen: dict[int, tuple[int, datetime]] = {}  # device id -> (target, when first seen)
        self._columns: set[str] | None = None

    def _now(self) -> datetime:
        value: Any = self._clock() if self._clock is not None else self._db.now()
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))

    def _fate(self, device_id: int, target: int | None = None) -> str:
        if target is not None and target == self.bad_release and \
                fraction_of(self._seed, device_id, "bad-release") < self.bad_release_fraction:
            return "stuck"
        draw = fraction_of(self._seed, device_id, "fate")
        if draw < self.stuck_fraction:
            return "stuck"
        if draw < self.stuck_fraction + self.offline_fraction:
            return "offline"
        return "converge"

    def _update(self, sets: dict[str, str], rows: list[tuple[Any, ...]]) -> None:
        """UPDATE device SET <sets> WHERE id = ? for rows of (values..., id); unknown columns skipped."""
        if not rows:
            return
        if self._columns is None:
            self._columns = {str(r[1]) for r in self._db.conn.execute('PRAGMA table_info("device")')}
        clauses: list[str] = []
        take: list[int] = []  # which row values the kept placeholders consume
        param = 0
        for name, expr in sets.items():
            if name in self._columns:
                clauses.append(f"{name} = {expr}")
                if expr == "?":
                    take.append(param)
            if expr == "?":
                param += 1
        params = [(*(row[i] for i in take), row[-1]) for row in rows]
        self._db.conn.executemany(f"UPDATE device SET {', '.join(clauses)} WHERE id = ?", params)

    def tick(self, now: datetime | None = None) -> TickResult:
        """One step of the simulation at ``now`` (default: the clock)."""
        moment = now if now is not None else self._now()
        stamp = iso(moment)
        with self._db.transaction():  # one consistent view, and the writes, under the database's lock
            return self._step(moment, stamp)

    def _step(self, moment: datetime, stamp: str) -> TickResult:
        pending = {int(d): int(t) for d, t in self._db.conn.execute(_PENDING_SQL)}
        for device in [d for d in self._seen if d not in pending]:
            del self._seen[device]
        started: list[tuple[Any, ...]] = []
        done: list[tuple[Any, ...]] = []
        stuck: list[tuple[Any, ...]] = []
        offline: list[tuple[Any, ...]] = []
        for device, target in pending.items():
            seen = self._seen.get(device)
            if seen is None or seen[0] != target:
                self._seen[device] = (target, moment)
                started.append((stamp, stamp, device))
                continue
            if seen[1] == datetime.min.replace(tzinfo=UTC):
                continue  # stuck: already gave up on this target
            if (moment - seen[1]).total_seconds() < self.converge_delay:
                continue
            fate = self._fate(device, target)
            if fate == "converge":
                done.append((target, stamp, stamp, device))
                del self._seen[device]
            elif fate == "stuck":
                stuck.append((stamp, stamp, device))
                self._seen[device] = (target, datetime.min.replace(tzinfo=UTC))
            else:
                offline.append((stamp, stamp, stamp, device))
                del self._seen[device]
        self._write(started, done, stuck, offline)
        result = TickResult(len(started), len(done), len(stuck), len(offline))
        if started or done or stuck or offline:
            log.info("bulkops.sim.devices.tick", started=result.started, converged=result.converged,
                     stuck=result.stuck, went_offline=result.went_offline)
        return result

    def _write(self, started: list[tuple[Any, ...]], done: list[tuple[Any, ...]],
               stuck: list[tuple[Any, ...]], offline: list[tuple[Any, ...]]) -> None:
        self._update({"update_status": "'downloading'", "status": "'Downloading'", "download_progress": "0",
                      "last_update_status_event": "?", "modified_at": "?"}, started)
        self._update({"is_running__release": "?", "update_status": "'done'", "status": "'Idle'",
                      "download_progress": "NULL", "last_update_status_event": "?", "modified_at": "?"}, done)
        self._update({"update_status": "'aborted'", "status": "'Idle'", "download_progress": "NULL",
                      "last_update_status_event": "?", "modified_at": "?"}, stuck)
        self._update({"is_online": "0", "is_connected_to_vpn": "0", "api_heartbeat_state": "'offline'",
                      "changed_api_heartbeat_state_on__date": "?", "last_connectivity_event": "?",
                      "modified_at": "?"}, offline)

    async def run(self) -> None:
        """Tick every ``interval`` seconds until cancelled."""
        while True:
            self.tick()
            await asyncio.sleep(self._interval)

"""The benchmark scenarios: deterministic data written straight into the simulator's database, the job
file bulkops runs, the task the baseline clients run, and the check of the server state afterwards.

Every client of a scenario gets a fresh simulator seeded with exactly the same rows (same seed, same
order, same ids). The devices are offline, so the simulated devices never change them during a run.

1. ``set_env``  LOG_LEVEL=debug on every device of ``acme/gateway``: 40 % another value, 10 % already
   ``debug``, 50 % none.
2. ``move``     the devices tagged ``wave=1`` (2 of 5 devices) to ``acme/gateway-next``.
3. ``remove_tag`` the ``ring`` tag of every device of ``acme/gateway`` (9 of 10 devices have one).

Each runs under each limit policy the harness is asked for (``bench/limits.py``); the memory runs
(``bench/memory.py``) plan and apply scenario 3 at 100,000 and 1,000,000 targets.

A tenth as many devices again live in ``acme/sensor`` with the same kinds of rows: no client may touch
them (counted as collateral changes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulkops.sim.db import Database
from bulkops.sim.seed import DemoInfo, bulk_insert

FLEET = "acme/gateway"
DEST = "acme/gateway-next"
OTHER = "acme/sensor"
ENV_NAME = "LOG_LEVEL"
ENV_VALUE = "debug"
OTHER_VALUES = ("info", "warn", "error")
WAVE = ("wave", "1")
RING = "ring"
PAGE = 1000  # bulkops plans in keyset pages of 1,000 rows
BATCH = 200  # bulkops' default ids per PATCH/DELETE


@dataclass(frozen=True, slots=True)
class Task:
    """What a baseline client does; passed to it as JSON."""

    kind: str  # set_env | move | remove_tag
    fleet: str
    name: str = ""
    value: str = ""
    tag_key: str = ""
    tag_value: str = ""
    to_fleet: str = ""


@dataclass(frozen=True, slots=True)
class Seeded:
    """What the seeding wrote and what a correct run must leave behind."""

    devices: int  # devices in the target fleet
    targets: int  # devices a correct run must leave as wanted (the correctness denominator)
    initially_correct: int  # of those, already as wanted before the run
    plan_counts: Mapping[str, int]  # the plan bulkops should make: change / create / delete / noop
    writes: Mapping[str, int]  # write requests each baseline needs (its progress measure when stopped)
    floor_estimate: int  # fewest requests bulkops' strategy needs, estimated from the data
    fleet_id: int
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Check:
    correct: int
    total: int
    collateral: int  # rows changed that no client should have touched


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int
    key: str
    title: str
    task: Task


SCENARIOS: dict[int, Scenario] = {
    1: Scenario(
        1,
        "set-env",
        "LOG_LEVEL=debug on every device of a fleet",
        Task("set_env", FLEET, name=ENV_NAME, value=ENV_VALUE),
    ),
    2: Scenario(
        2,
        "move",
        "move the devices tagged wave=1 to another fleet",
        Task("move", FLEET, tag_key=WAVE[0], tag_value=WAVE[1], to_fleet=DEST),
    ),
    3: Scenario(
        3,
        "remove-tag",
        "delete the ring tag from every device of a fleet",
        Task("remove_tag", FLEET, tag_key=RING),
    ),
}


# --- job files ---------------------------------------------------------------------------------------


def job_toml(scenario: Scenario, seeded: Seeded) -> str:
    """The job file bulkops runs for ``scenario`` (bulkops' default options otherwise)."""
    head = (
        f'name = "bench-s{scenario.number}-{scenario.key}"\n'
        f'description = "bulkops benchmark, scenario {scenario.number}: {scenario.title}"\n\n'
        f'[target]\nresource = "device"\nfleet = "{FLEET}"\n'
    )
    bound = f"expect = {{ max = {seeded.devices} }}\n\n"
    t = scenario.task
    if t.kind == "set_env":
        return head + bound + f'[action]\ntype = "set_env"\nname = "{t.name}"\nvalue = "{t.value}"\n'
    if t.kind == "move":
        filt = f"device_tag/any(t:t/tag_key eq '{t.tag_key}' and t/value eq '{t.tag_value}')"
        return head + f'filter = "{filt}"\n' + bound + f'[action]\ntype = "move"\nto_fleet = "{t.to_fleet}"\n'
    return head + bound + f'[action]\ntype = "remove_tag"\nkey = "{t.tag_key}"\n'


# --- seeding -----------------------------------------------------------------------------------------


def _devices(db: Database, demo: DemoInfo, fleet: str, n: int, rng: random.Random, prefix: str) -> list[int]:
    actors = bulk_insert(db, "actor", [{} for _ in range(n)])
    dtype = demo.device_types["raspberrypi4-64"]
    rows = [
        {
            "actor": actors[i],
            "uuid": f"{rng.getrandbits(128):032x}",
            "device_name": f"{prefix}-{i:06d}",
            "is_of__device_type": dtype,
            "belongs_to__application": demo.fleets[fleet],
            "is_online": False,
            "api_heartbeat_state": "offline",
            "status": "Idle",
            "os_version": "balenaOS 6.1.2",
            "os_variant": "prod",
            "supervisor_version": "16.7.1",
        }
        for i in range(n)
    ]
    return bulk_insert(db, "device", rows)


def _mix(rng: random.Random, n: int, shares: Sequence[tuple[str, float]]) -> list[str]:
    """Exactly ``round(share * n)`` of each kind (the last takes the rest), in a seeded random order."""
    out: list[str] = []
    for kind, share in shares[:-1]:
        out += [kind] * round(share * n)
    out += [shares[-1][0]] * (n - len(out))
    rng.shuffle(out)
    return out


def _pages(n: int) -> int:
    return n // PAGE + 1  # keyset paging ends on a short (possibly empty) page


def _batches(groups: Mapping[str, int]) -> int:
    return sum(math.ceil(k / BATCH) for k in groups.values() if k)


def _seed_env(db: Database, demo: DemoInfo, n: int, rng: random.Random) -> Seeded:
    ids = _devices(db, demo, FLEET, n, rng, "gw")
    kinds = _mix(rng, n, (("other", 0.4), ("same", 0.1), ("none", 0.5)))
    env = []
    before: dict[str, int] = {}
    for device, kind in zip(ids, kinds, strict=True):
        if kind == "none":
            continue
        value = ENV_VALUE if kind == "same" else rng.choice(OTHER_VALUES)
        env.append({"device": device, "name": ENV_NAME, "value": value})
        if kind == "other":
            before[value] = before.get(value, 0) + 1
    bulk_insert(db, "device_environment_variable", env)
    changes, creates, same = kinds.count("other"), kinds.count("none"), kinds.count("same")
    floor = 3 + 2 * _pages(n) + 2 * _batches(before) + creates
    return Seeded(
        devices=n,
        targets=n,
        initially_correct=same,
        plan_counts={"change": changes, "create": creates, "delete": 0, "noop": same},
        writes={"loop": changes + creates, "async-fixed": changes + creates, "sdk": creates + 2 * changes},
        floor_estimate=floor,
        fleet_id=demo.fleets[FLEET],
        extra={"env_rows": len(env), "plan_gets": 3 + 2 * _pages(n)},
    )


def _seed_move(db: Database, demo: DemoInfo, n: int, rng: random.Random) -> Seeded:
    ids = _devices(db, demo, FLEET, n, rng, "gw")
    kinds = _mix(rng, n, (("wave1", 0.4), ("wave2", 0.3), ("none", 0.3)))
    tags = [
        {"device": d, "tag_key": WAVE[0], "value": k[-1]}
        for d, k in zip(ids, kinds, strict=True)
        if k != "none"
    ]
    tags += [{"device": d, "tag_key": "site", "value": rng.choice(("berlin", "lyon", "osaka"))} for d in ids]
    bulk_insert(db, "device_tag", tags)
    moved = kinds.count("wave1")
    floor = 4 + _pages(moved) + 2 * _batches({"all": moved})
    return Seeded(
        devices=n,
        targets=moved,
        initially_correct=0,
        plan_counts={"change": moved, "create": 0, "delete": 0, "noop": 0},
        writes={"loop": moved, "async-fixed": moved, "sdk": math.ceil(moved / BATCH)},
        floor_estimate=floor,
        fleet_id=demo.fleets[FLEET],
        extra={"moved_ids": [d for d, k in zip(ids, kinds, strict=True) if k == "wave1"]},
    )


def _seed_tags(db: Database, demo: DemoInfo, n: int, rng: random.Random) -> Seeded:
    ids = _devices(db, demo, FLEET, n, rng, "gw")
    kinds = _mix(rng, n, (("canary", 0.05), ("stable", 0.85), ("none", 0.1)))
    tags = [
        {"device": d, "tag_key": RING, "value": k} for d, k in zip(ids, kinds, strict=True) if k != "none"
    ]
    tags += [{"device": d, "tag_key": "site", "value": rng.choice(("berlin", "lyon", "osaka"))} for d in ids]
    bulk_insert(db, "device_tag", tags)
    ringed = n - kinds.count("none")
    groups = {"canary": kinds.count("canary"), "stable": kinds.count("stable")}
    floor = 3 + 2 * _pages(n) + 2 * _batches(groups)
    return Seeded(
        devices=n,
        targets=n,
        initially_correct=kinds.count("none"),
        plan_counts={"change": 0, "create": 0, "delete": ringed, "noop": n - ringed},
        writes={"loop": ringed, "async-fixed": ringed, "sdk": ringed},
        floor_estimate=floor,
        fleet_id=demo.fleets[FLEET],
    )


def _seed_other_fleet(db: Database, demo: DemoInfo, n: int, rng: random.Random) -> None:
    """Bystanders: devices of another fleet with the same kinds of rows; nobody may touch them."""
    ids = _devices(db, demo, OTHER, n, rng, "sensor")
    bulk_insert(
        db, "device_environment_variable", [{"device": d, "name": ENV_NAME, "value": "info"} for d in ids]
    )
    bulk_insert(
        db,
        "device_tag",
        [
            {"device": d, "tag_key": t, "value": v}
            for d in ids
            for t, v in ((RING, "stable"), (WAVE[0], WAVE[1]))
        ],
    )


def seed(db: Database, demo: DemoInfo, scenario: Scenario, devices: int, *, seed: int = 0) -> Seeded:
    """Write the scenario's rows (in one transaction) and say what a correct run leaves behind."""
    rng = random.Random(f"bulkops-bench:{seed}:{scenario.key}:{devices}")
    with db.transaction():
        kind = scenario.task.kind
        if kind == "set_env":
            out = _seed_env(db, demo, devices, rng)
        elif kind == "move":
            out = _seed_move(db, demo, devices, rng)
        else:
            out = _seed_tags(db, demo, devices, rng)
        _seed_other_fleet(db, demo, max(1, devices // 10), rng)
    return out


PROBED = {
    "set_env": "device_environment_variable",
    "move": "device",
    "remove_tag": "device_tag",
}


def probe_path(db: Database, scenario: Scenario) -> str:
    """A GET of 200 ids of the resource the scenario writes: what a batch read-back costs the server."""
    resource = PROBED[scenario.task.kind]
    with db.lock:
        ids = [r[0] for r in db.conn.execute(f'SELECT id FROM "{resource}" ORDER BY id LIMIT 200')]
    return f"/v7/{resource}?$filter=id%20in%20({','.join(map(str, ids))})"


# --- checks on the server ----------------------------------------------------------------------------


def _one(db: Database, sql: str, *params: Any) -> int:
    with db.lock:
        return int(db.conn.execute(sql, params).fetchone()[0])


def check(db: Database, demo: DemoInfo, scenario: Scenario, seeded: Seeded) -> Check:
    """Count the targets now as wanted, straight from the simulator's database."""
    fleet, other = demo.fleets[FLEET], demo.fleets[OTHER]
    kind = scenario.task.kind
    if kind == "set_env":
        correct = _one(
            db,
            "SELECT COUNT(*) FROM device d JOIN device_environment_variable v ON v.device = d.id "
            "WHERE d.belongs_to__application = ? AND v.name = ? AND v.value = ?",
            fleet,
            ENV_NAME,
            ENV_VALUE,
        )
        collateral = _one(
            db,
            "SELECT COUNT(*) FROM device d JOIN device_environment_variable v "
            "ON v.device = d.id WHERE d.belongs_to__application = ? AND v.value <> 'info'",
            other,
        )
        return Check(correct, seeded.targets, collateral)
    if kind == "move":
        moved = list(seeded.extra["moved_ids"])
        with db.lock:
            db.conn.execute("CREATE TEMP TABLE IF NOT EXISTS bench_ids (id INTEGER PRIMARY KEY)")
            db.conn.execute("DELETE FROM bench_ids")
            db.conn.executemany("INSERT INTO bench_ids (id) VALUES (?)", [(i,) for i in moved])
        dest = demo.fleets[DEST]
        correct = _one(
            db,
            "SELECT COUNT(*) FROM device WHERE belongs_to__application = ? "
            "AND id IN (SELECT id FROM bench_ids)",
            dest,
        )
        wrong = _one(
            db,
            "SELECT COUNT(*) FROM device WHERE belongs_to__application <> ? "
            "AND id NOT IN (SELECT id FROM bench_ids) AND belongs_to__application <> ?",
            fleet,
            other,
        )
        return Check(correct, seeded.targets, wrong)
    correct = _one(
        db,
        "SELECT COUNT(*) FROM device d WHERE d.belongs_to__application = ? AND NOT EXISTS "
        "(SELECT 1 FROM device_tag t WHERE t.device = d.id AND t.tag_key = ?)",
        fleet,
        RING,
    )
    sites = _one(
        db,
        "SELECT COUNT(*) FROM device d JOIN device_tag t ON t.device = d.id "
        "WHERE d.belongs_to__application = ? AND t.tag_key = 'site'",
        fleet,
    )
    others = _one(
        db,
        "SELECT COUNT(*) FROM device d JOIN device_tag t ON t.device = d.id "
        "WHERE d.belongs_to__application = ? AND t.tag_key = ?",
        other,
        RING,
    )
    bystanders = _one(db, "SELECT COUNT(*) FROM device WHERE belongs_to__application = ?", other)
    return Check(correct, seeded.targets, (seeded.devices - sites) + (bystanders - others))

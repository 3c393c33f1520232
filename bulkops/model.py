"""The values that cross a stage boundary: job → plan → apply → journal → report.

Frozen, slotted dataclasses; ``StrEnum`` for closed sets; raw dicts only at the JSON edges
(``to_json``/``from_json`` helpers live with the stage that writes the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

JSONValue = Any  # str | int | float | bool | None | list | dict, as orjson gives them

PLAN_FORMAT = 1


# --- job -----------------------------------------------------------------------------------------


class ActionType(StrEnum):
    PATCH = "patch"  # fields on the target rows
    DELETE = "delete"  # the target rows themselves (irreversible for devices)
    SET_ENV = "set_env"  # device/application env var: create or change
    REMOVE_ENV = "remove_env"
    SET_CONFIG = "set_config"  # BALENA_/RESIN_ config var
    REMOVE_CONFIG = "remove_config"
    SET_TAG = "set_tag"
    REMOVE_TAG = "remove_tag"
    MOVE = "move"  # devices to another fleet
    PIN = "pin"  # device pin / fleet target release
    UNPIN = "unpin"


@dataclass(frozen=True, slots=True)
class Action:
    type: ActionType
    name: str | None = None  # env/config var name
    key: str | None = None  # tag key
    value: str | None = None  # env/config/tag value (always a string)
    fields: Mapping[str, JSONValue] = field(default_factory=dict)  # patch
    to_fleet: str | None = None  # move: fleet slug
    release: str | None = None  # pin: commit (or unique prefix) or semver


@dataclass(frozen=True, slots=True)
class Expect:
    """Bounds on the number of targets; checked at plan and again at apply."""

    min: int | None = None
    max: int | None = None
    max_share: float | None = None  # 0 < share <= 1, of the targeted fleets' population


@dataclass(frozen=True, slots=True)
class Target:
    resource: str  # "device" | "application"
    fleets: tuple[str, ...] = ()  # slugs, e.g. "acme/gateway"
    filter: str | None = None  # OData as written in the job file; ANDed with the shorthands
    offline_for: timedelta | None = None  # cleanup shorthand, compiled at plan time
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    batch_size: int = 200  # ids per PATCH/DELETE; bounded by the URL limit
    max_retry_after: float = 300.0  # seconds; a longer Retry-After stops the run cleanly
    max_attempts: int = 6  # per request, for 5xx/resets/timeouts
    max_retry_time: float = 120.0  # seconds of backoff per request at most
    request_timeout: float = 30.0  # seconds, every request
    max_concurrency: int = 16
    max_plan_age: timedelta = timedelta(hours=24)
    confirm_threshold: int = 10  # destructive actions above this need the count typed back


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    target: Target
    action: Action
    description: str = ""
    allow_fleets: tuple[str, ...] = ()  # empty = any fleet the token can see
    options: ApplyOptions = field(default_factory=ApplyOptions)
    path: str = ""
    fingerprint: str = ""  # sha256 hex of the job file's bytes
    # Reserved for staged rollouts and scheduled jobs: kept as parsed tables until those land.
    rollout: Mapping[str, JSONValue] | None = None
    schedule: Mapping[str, JSONValue] | None = None


# --- plan ----------------------------------------------------------------------------------------


class ChangeKind(StrEnum):
    CHANGE = "change"  # PATCH an existing row: before -> after
    CREATE = "create"  # POST a new row (env var, tag)
    DELETE = "delete"  # DELETE a row
    NOOP = "noop"  # already as wanted: recorded, never sent


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One target's change. ``target_id`` is the device/fleet the job selected; ``resource`` and
    ``row_id`` the row actually written (the device itself, or its env var/tag row)."""

    target_id: int
    label: str  # uuid for devices, slug for fleets: what a human recognises
    kind: ChangeKind
    resource: str
    row_id: int | None  # None for CREATE
    before: Mapping[str, JSONValue] | None  # values of the touched fields now; None = row absent
    after: Mapping[str, JSONValue] | None  # values wanted; None = row removed
    key: Mapping[str, JSONValue] = field(default_factory=dict)  # natural key, e.g. {"device": 5, "name": "X"}
    stage: int = 0  # rollout stage; 0 until staged rollouts land


@dataclass(frozen=True, slots=True)
class Plan:
    job_name: str
    job_path: str
    job_fingerprint: str
    api_url: str
    created_at: datetime
    target_resource: str
    compiled_filter: str
    action: Action
    items: tuple[PlanItem, ...]
    population: int  # rows of target_resource in the targeted fleets (for expect.max_share)
    expect: Expect = field(default_factory=Expect)
    allow_fleets: tuple[str, ...] = ()
    options: ApplyOptions = field(default_factory=ApplyOptions)
    warnings: tuple[str, ...] = ()
    irreversible: bool = False
    plan_id: str = ""
    format: int = PLAN_FORMAT
    fleets: tuple[str, ...] = ()  # slugs of every fleet the plan targets or moves devices to
    fleet_ids: Mapping[str, int] = field(default_factory=dict)  # slug -> id of those fleets
    undo_of: str = ""  # run id when this plan undoes that run
    seal: str = ""  # HMAC of the plan's content keyed by the API token (bulkops.plan.seal); "" = unsealed

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in ChangeKind}
        for it in self.items:
            out[it.kind.value] += 1
        return out


# --- outcomes ------------------------------------------------------------------------------------


class Outcome(StrEnum):
    APPLIED = "applied"
    NOOP = "noop"  # nothing to do: planned as no-op, or already in place at apply
    DRIFTED = "drifted"  # current value no longer equals the plan's before-value: skipped
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"  # the run stopped before reaching it
    SKIPPED = "skipped"  # cannot be done at all (e.g. undo of a deleted device)


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int  # position in Plan.items
    target_id: int
    label: str
    outcome: Outcome
    status: int | None = None  # last HTTP status seen for it
    attempts: int = 0
    error: str | None = None


class RunState(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"  # stopped by a long Retry-After, a revoked token, an abort rule
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot handed to the apply progress callback after every recorded outcome."""

    done: int  # items with an outcome (no-ops included)
    total: int
    requests: int  # sent by the client so far (retries included)
    throttled: int  # 429 answers so far
    elapsed: float  # seconds since apply started


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    state: RunState
    counts: Mapping[str, int]  # per Outcome value
    results: tuple[ItemResult, ...] = ()
    requests: int = 0
    throttled: int = 0
    elapsed: float = 0.0
    message: str = ""

"""The values that cross a stage boundary: job → plan → apply → journal → report.

Frozen, slotted dataclasses; ``StrEnum`` for closed sets; raw dicts only at the JSON edges
(``to_json``/``from_json`` helpers live with the stage that writes the file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bulkops.spool import Spool

JSONValue = Any  # str | int | float | bool | None | list | dict, as orjson gives them

PLAN_FORMAT = 2  # 2: the plan stores its precondition and skipped items (format 1 is read too)


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
    SET_SERVICE_ENV = "set_service_env"  # device service variable (one device x one service)
    REMOVE_SERVICE_ENV = "remove_service_env"


@dataclass(frozen=True, slots=True)
class Action:
    type: ActionType
    name: str | None = None  # env/config var name
    key: str | None = None  # tag key
    value: str | None = None  # env/config/tag value (always a string)
    fields: Mapping[str, JSONValue] = field(default_factory=dict)  # patch
    to_fleet: str | None = None  # move: fleet slug
    release: str | None = None  # pin: commit (or unique prefix) or semver
    service: str | None = None  # set_service_env/remove_service_env: the service name, e.g. "main"


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
    uuids: tuple[str, ...] = ()  # devices listed by uuid (``uuids`` or ``uuids_file``); ANDed with the rest
    ids: tuple[int, ...] = ()  # rows listed by id
    uuids_file: str = ""  # where ``uuids`` came from, as written in the job file


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


class Missed(StrEnum):
    """What a scheduled job does with slots that came due while no scheduler was running."""

    SKIP = "skip"  # run only a slot that is on time; journal the others as skipped
    LATEST = "latest"  # run the newest slot inside catch_up once; journal the older ones as skipped
    ALL = "all"  # run every slot inside catch_up, oldest first, one after the other


@dataclass(frozen=True, slots=True)
class GrowLimit:
    """An unattended run may change at most ``max(factor × last, last + add)`` targets, where ``last``
    is what the job's previous run changed; a larger plan waits for approval."""

    factor: float = 2.0
    add: int = 50


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a job runs unattended: a 5-field cron expression read in ``timezone``."""

    cron: str
    timezone: str = "UTC"  # IANA name
    jitter: timedelta = timedelta(0)  # each slot starts up to this much later (fixed per job and slot)
    missed: Missed = Missed.LATEST
    catch_up: timedelta = timedelta(hours=1)  # a slot later than this is never run
    grow_limit: GrowLimit = field(default_factory=GrowLimit)


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
    rollout: Rollout | None = None  # the [rollout] table: stages, gates, abort rule, approval
    schedule: Schedule | None = None  # when the job runs unattended (``bulkops schedule``)


# --- rollout -------------------------------------------------------------------------------------


class OrderKind(StrEnum):
    RANDOM = "random"  # seeded by the job name: the same job plans the same cohorts
    TAG = "tag"  # targets with the tag KEY=VALUE first, then the rest at random
    FIELD = "field"  # ascending by a field of the target, ties by id


@dataclass(frozen=True, slots=True)
class RolloutOrder:
    kind: OrderKind = OrderKind.RANDOM
    key: str = ""  # TAG: the tag key
    value: str = ""  # TAG: the tag value
    field: str = ""  # FIELD: the field name


@dataclass(frozen=True, slots=True)
class StageSize:
    """One entry of ``stages``: a cumulative count of the plan's targets, or a cumulative share."""

    count: int | None = None
    share: float | None = None  # 0 < share <= 1


@dataclass(frozen=True, slots=True)
class RateForm:
    """Stages made from a rate, like an exponential rollout: each stage is one minute of targets at the
    current rate; the rate grows by ``growth`` every ``grow_after`` targets, up to ``max_per_minute``."""

    start_per_minute: int
    growth: float = 1.0
    grow_after: int = 1
    max_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class AbortRule:
    """Trips when failures > max(failures, failure_rate x attempted), once min_attempted is reached."""

    failure_rate: float = 0.0
    failures: int = 0
    min_attempted: int = 1


class Approve(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"  # stop after each passing stage until `bulkops approve RUN`


class OnAbort(StrEnum):
    STOP = "stop"
    UNDO = "undo"  # apply the undo of what the rollout changed


GATE_DEFAULT = "default"
GATE_NONE = "none"


@dataclass(frozen=True, slots=True)
class Rollout:
    """The ``[rollout]`` table, validated. Times are seconds."""

    stages: tuple[StageSize, ...] = ()  # empty when ``rate`` is given
    rate: RateForm | None = None
    order: RolloutOrder = field(default_factory=RolloutOrder)
    wait: float = 120.0
    gate: str = GATE_DEFAULT  # "default" | "none" | an OData filter on device
    gate_timeout: float = 900.0
    poll_every: float = 30.0
    abort: AbortRule = field(default_factory=AbortRule)
    approve: Approve = Approve.AUTO
    on_abort: OnAbort = OnAbort.STOP
    stop_switch: str | None = None  # fleet env var name


@dataclass(frozen=True, slots=True)
class RolloutProgress:
    """A snapshot handed to the rollout callback whenever the stage, its phase or its gate changes."""

    stage: int
    stages: int
    phase: str  # writing | waiting | gating | approval | undoing | aborted | done
    targets: int  # of this stage
    gate_passed: int = 0
    gate_failed: int = 0
    gate_pending: int = 0
    failures: int = 0  # write and gate failures of the rollout so far
    attempted: int = 0
    allowed: int = 0  # failures the abort rule tolerates at this point


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
    stage: int = 0  # rollout stage (1, 2, …); 0 when the plan is not a rollout or the item is a no-op
    skip: str = ""  # why this item cannot be done (its target was deleted): recorded skipped, never sent


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
    items: Sequence[PlanItem]  # a tuple, or (made or read by bulkops) a Spool on disk
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
    # the job's target selection as a $filter on target_resource, its cut-offs fixed at plan time: every
    # write carries it (empty: none, e.g. an undo, whose writes carry only their before-values)
    precondition: str = ""
    rollout: Rollout | None = None  # applied stage by stage (bulkops.apply.rollout) when set
    seal: str = ""  # HMAC of the plan's content keyed by the API token (bulkops.plan.seal); "" = unsealed

    def counts(self) -> dict[str, int]:
        """Items per kind (a spool's are counted once, however many steps ask)."""
        if isinstance(self.items, Spool):
            return dict(self.items.derived("counts", _count))
        return _count(self.items)


def _count(items: Sequence[PlanItem]) -> dict[str, int]:
    out = {k.value: 0 for k in ChangeKind}
    for it in items:
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
    STOPPED = "stopped"  # stopped by a long Retry-After, a revoked token, a rollout's stop switch
    DONE = "done"
    AWAITING_APPROVAL = "awaiting_approval"  # a rollout stage passed; `bulkops approve RUN` goes on
    PAUSED = "paused"  # a rollout gate was inconclusive (API unreachable); `bulkops resume RUN`
    ABORTED = "aborted"  # a rollout's abort rule tripped (and its undo ran, with on_abort = "undo")


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
    results: Sequence[ItemResult] = ()  # in item order; a Spool on disk when read from a journal
    requests: int = 0
    throttled: int = 0
    elapsed: float = 0.0
    message: str = ""

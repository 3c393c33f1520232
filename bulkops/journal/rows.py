"""The journal's rows as Python values: items, attempts, outcomes to record, and their encoding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bulkops.model import ChangeKind, Outcome, Plan

PLANNED, SENT, DONE = "planned", "sent", "done"


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def load(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


@dataclass(frozen=True, slots=True)
class JournalItem:
    index: int
    target_id: int
    label: str
    kind: ChangeKind
    resource: str
    row_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    key: dict[str, Any]
    state: str  # planned | sent | done
    outcome: Outcome | None
    status: int | None
    attempts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    method: str
    path: str
    items: tuple[int, ...]
    sent_at: str
    status: int | None
    answered_at: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcomes:
    """One outcome to record: item index, outcome, last HTTP status, error text."""

    index: int
    outcome: Outcome
    status: int | None = None
    error: str | None = None


def item_rows(plan: Plan, now: str) -> Iterator[tuple[Any, ...]]:
    for i, it in enumerate(plan.items):
        noop = it.kind is ChangeKind.NOOP
        yield (i, it.target_id, it.label, it.kind.value, it.resource, it.row_id, dump(it.before),
               dump(it.after), dump(dict(it.key)) or "{}", DONE if noop else PLANNED,
               Outcome.NOOP.value if noop else None, now)


def parts(values: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]

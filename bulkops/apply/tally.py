"""The rollout's running count against its abort rule, and the clock it waits on.

The abort rule trips when failures > max(failures, failure_rate x attempted), once min_attempted
targets were attempted. Attempted: targets of the rollout with an outcome through apply (applied,
failed, drifted, already in place). Failures: write failures plus targets that failed their gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import anyio

from bulkops.journal.gates import ATTEMPTED
from bulkops.journal.journal import Outcomes
from bulkops.model import AbortRule, Outcome


class Clock(Protocol):
    """Wall-clock time and sleeping, injectable so that tests run a rollout on virtual time."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


@dataclass(slots=True)
class Tally:
    rule: AbortRule
    attempted: int = 0
    failures: int = 0

    def allowed(self) -> int:
        """Failures the abort rule tolerates now."""
        return max(self.rule.failures, math.floor(self.rule.failure_rate * self.attempted + 1e-9))

    def crossed(self) -> str | None:
        """The rule as it stands, once it trips; None before."""
        a = self.rule
        tolerated = max(a.failures, a.failure_rate * self.attempted)
        if self.attempted < a.min_attempted or self.failures <= tolerated:
            return None
        return (f"failures {self.failures} > max({a.failures}, {a.failure_rate * 100:g}% of "
                f"{self.attempted} attempted)")

    def count(self, outcomes: Sequence[Outcomes]) -> None:
        for o in outcomes:
            if o.outcome.value in ATTEMPTED:
                self.attempted += 1
            if o.outcome is Outcome.FAILED:
                self.failures += 1

"""Safety guards: checked when a plan is made and again before it is applied.

Every refusal is a :class:`GuardError` whose message names the numbers involved and what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bulkops.errors import GuardError
from bulkops.model import Expect, Plan
from bulkops.plan.seal import check_seal

FUTURE_SKEW = timedelta(minutes=5)  # clocks of two machines may differ by this much
NOUNS = {"device": ("device", "devices"), "application": ("fleet", "fleets")}


def noun(resource: str, n: int) -> str:
    one, many = NOUNS.get(resource, (resource, resource + "s"))
    return f"{n} {one if n == 1 else many}"


def check_expect(expect: Expect, matched: int, population: int, resource: str) -> None:
    """``expect.min``/``max`` bound the targets the filter matched; ``max_share`` their share of the
    targeted fleets' population."""
    if expect.min is not None and matched < expect.min:
        raise GuardError(
            f"expect.min is {expect.min} but the job targets {noun(resource, matched)}; "
            "check the filter, or lower expect.min"
        )
    if expect.max is not None and matched > expect.max:
        raise GuardError(
            f"expect.max is {expect.max} but the job targets {noun(resource, matched)}; "
            "narrow the filter, or raise expect.max"
        )
    if expect.max_share is not None and population > 0 and matched / population > expect.max_share:
        raise GuardError(
            f"expect.max_share is {expect.max_share:.0%} but the job targets {noun(resource, matched)} "
            f"of {population} ({matched / population:.1%}); narrow the filter, or raise expect.max_share"
        )


def check_allowed(allow_fleets: Iterable[str], fleets: Iterable[str]) -> None:
    """Every targeted or destination fleet must be in a non-empty ``allow_fleets``."""
    allowed = {f.lower() for f in allow_fleets}
    if not allowed:
        return
    outside = sorted({f for f in fleets if f.lower() not in allowed})
    if outside:
        raise GuardError(
            f"fleet{'s' if len(outside) > 1 else ''} {', '.join(outside)} "
            f"{'are' if len(outside) > 1 else 'is'} not in allow_fleets ({', '.join(sorted(allowed))})"
        )


def fingerprint(path: str | Path) -> str:
    """sha256 hex of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_apply(plan: Plan, *, api_url: str, now: datetime | None = None, force: bool = False,
                token: str | None = None, resuming: bool = False) -> None:
    """Refuse a plan that was edited (with ``token``: its seal, see :mod:`bulkops.plan.seal`), that is
    stale or dated in the future, made from a job file that changed since, made against another API, or
    outside its own bounds. ``force`` only waives a job file that is gone; it never lifts a guard.
    ``resuming``: a run already started is not refused for its plan's age (a run may wait for a long
    ``Retry-After`` or a manual approval; each write still carries what the plan saw)."""
    now = now or datetime.now(UTC)
    if token is not None:
        check_seal(plan, token)
    if plan.api_url.rstrip("/") != api_url.rstrip("/"):
        raise GuardError(f"the plan was made against {plan.api_url}, not {api_url}; make a new plan")
    if not resuming:
        _check_age(plan, now)
    _check_job(plan, force)
    counted = len(plan.items)
    check_expect(plan.expect, counted, plan.population, plan.target_resource)
    check_allowed(plan.allow_fleets, plan.fleets)


def _check_age(plan: Plan, now: datetime) -> None:
    ahead = plan.created_at - now
    if ahead > FUTURE_SKEW:
        raise GuardError(
            f"the plan is dated {plan.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
            f"{_human(ahead.total_seconds())} in the future; check the clock of the machine that made it, "
            "then make a new plan"
        )
    age = now - plan.created_at
    if age > plan.options.max_plan_age:
        raise GuardError(
            f"the plan is {_human(age.total_seconds())} old; plans older than "
            f"{_human(plan.options.max_plan_age.total_seconds())} are refused (make a new plan)"
        )


def _check_job(plan: Plan, force: bool) -> None:
    if plan.job_path:
        job = Path(plan.job_path)
        if job.exists():
            if plan.job_fingerprint and fingerprint(job) != plan.job_fingerprint:
                raise GuardError(
                    f"the job file {plan.job_path} changed since the plan was made; make a new plan"
                )
        elif not force:
            raise GuardError(
                f"the job file {plan.job_path} is gone, so the plan cannot be checked against it; "
                "use --force to apply it anyway"
            )


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"

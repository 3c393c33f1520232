"""The plan's seal: proof that a plan file is the plan bulkops made, unchanged.

A plan file is plain JSON that travels (a working directory, a review, a CI runner), and everything apply
checks is in it: the guards (``allow_fleets``, ``expect``, ``options.max_plan_age``, ``created_at``, the
job path and fingerprint) and the items it writes. A checksum stored next to them would be recomputed by
whoever edits them, so the seal is keyed with the one secret that the maker and the applier of a plan
share and that an editor of the file does not hold: the API token.

    digest = sha256 over the plan's canonical JSON (every field but the seal, then each item)
    seal   = HMAC-SHA256(key, digest), key = PBKDF2-SHA256(token, "bulkops plan seal v1", 20,000 rounds)

The key derivation is slow on purpose, so that a plan file (which may be shared) cannot serve to guess a
weak token quickly; the token itself is never in the plan. ``digest`` is also what a run records of the
plan it was created from (:func:`bulkops.apply.runner.new_run`), so ``resume`` can check the run's copy
with any token.

What it does not protect against: a holder of the token can seal anything (but could also call the API
directly); replacing a plan file with another sealed plan made with the same token (each plan has one run,
its job file and age are checked); a plan applied with another token than it was made with is refused
like an edited one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import orjson

from bulkops.errors import GuardError
from bulkops.model import Plan, PlanItem
from bulkops.plan.file import item_to_json, plan_to_json
from bulkops.spool import Spool

SALT = b"bulkops plan seal v1"
ROUNDS = 20_000


@lru_cache(maxsize=4)
def _key(token: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", token.encode("utf-8", "surrogatepass"), SALT, ROUNDS)


def plan_digest(plan: Plan) -> str:
    """sha256 hex of the plan's canonical JSON: every field except the seal, then every item in order.
    A spool's items are digested once per plan head (sealing, the run and its journal all ask)."""
    head = plan_to_json(plan, with_items=False)
    head.pop("seal", None)
    first = orjson.dumps(head, option=orjson.OPT_SORT_KEYS)
    if isinstance(plan.items, Spool):
        key = "digest:" + hashlib.sha256(first).hexdigest()
        return plan.items.derived(key, lambda items: _digest(first, items))
    return _digest(first, plan.items)


def _digest(first: bytes, items: Sequence[PlanItem]) -> str:
    h = hashlib.sha256(first)
    for it in items:
        h.update(b"\n")
        h.update(orjson.dumps(item_to_json(it), option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


def _seal(digest: str, token: str) -> str:
    return hmac.new(_key(token), digest.encode(), hashlib.sha256).hexdigest()


def seal_plan(plan: Plan, token: str) -> Plan:
    """The plan as it leaves the process that made it: its job path absolute (so it is found from any
    directory), sealed with ``token``."""
    job_path = plan.job_path
    if job_path and not job_path.startswith("<"):  # "<string>": a job given as text, not a file
        job_path = os.path.abspath(job_path)
    plan = replace(plan, job_path=job_path, seal="")
    return replace(plan, seal=_seal(plan_digest(plan), token))


def check_seal(plan: Plan, token: str) -> None:
    """Refuse (``GuardError``) a plan without a seal, or whose seal is not that of its content and
    ``token``."""
    if not plan.seal:
        raise GuardError(f"the plan {plan.plan_id} has no seal, so an edit of it could not be detected; "
                         "make a new plan with `bulkops plan`")
    if not hmac.compare_digest(plan.seal, _seal(plan_digest(plan), token)):
        raise GuardError(f"the plan {plan.plan_id} does not match its seal: it was changed after it was "
                         "made, or made with another API token; make a new plan")

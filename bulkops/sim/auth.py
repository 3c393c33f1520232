"""Who is calling, and what they may see and write.

A request is authenticated by ``Authorization: Bearer <named API key>`` (or ``?apikey=<key>``): the
key's actor must be a user's actor, and the key must not have expired. Any other scheme, an unknown
or expired key → 401 with an empty body. Without credentials the caller is anonymous: it may read
device types, CPU architectures and fleet types, and public fleets (none, usually); nothing else.

A user sees and writes the fleets of the organizations they are a member of, and every row hanging off
those fleets (devices, variables, tags, releases, services, installs). Rows outside are invisible and
writes to them are silent no-ops — the visibility conditions are simply ANDed into every statement.
When a user can see every fleet the fleet conditions are dropped (the common single-user case stays
as fast as an unscoped query).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bulkops.sim.db import Database

PUBLIC_RESOURCES = frozenset({"device_type", "cpu_architecture", "application_type"})
"""Readable by anyone, written by no user."""

READ_ONLY_RESOURCES = PUBLIC_RESOURCES | {"organization", "organization_membership", "user", "actor"}
"""Users may read but not write these."""


class AuthFailed(Exception):
    """Bad or missing credentials for what was asked: 401, empty body."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user (or anonymous) and what they may see."""

    user: int | None
    actor: int | None
    orgs: tuple[int, ...] = ()
    apps: tuple[int, ...] | None = ()  # None: every fleet

    @property
    def anonymous(self) -> bool:
        return self.user is None

    def condition(self, resource: str, alias: str) -> tuple[str, list[Any]] | None:
        """The SQL condition limiting rows of ``resource`` (as ``alias``) to what this caller sees."""
        if self.anonymous:
            if resource in PUBLIC_RESOURCES:
                return None
            if resource == "application":
                return f'{alias}."is_public" = 1', []
            return "0", []
        rule = _RULES.get(resource)
        if rule is None:
            return None
        return rule(self, alias)


def _in(ids: tuple[int, ...]) -> str:
    return ", ".join("?" * len(ids))


def _by_app(column: str) -> Callable[[Caller, str], tuple[str, list[Any]] | None]:
    def rule(c: Caller, a: str) -> tuple[str, list[Any]] | None:
        if c.apps is None:
            return None
        return f'{a}."{column}" IN ({_in(c.apps)})', list(c.apps)

    return rule


def _via(
    column: str, parent: str, parent_app_column: str
) -> Callable[[Caller, str], tuple[str, list[Any]] | None]:
    def rule(c: Caller, a: str) -> tuple[str, list[Any]] | None:
        if c.apps is None:
            return None
        # Correlated: one primary-key lookup per candidate row, so a filter on ids stays cheap.
        return (
            f'EXISTS (SELECT 1 FROM "{parent}" p WHERE p."id" = {a}."{column}" '
            f'AND p."{parent_app_column}" IN ({_in(c.apps)}))',
            list(c.apps),
        )

    return rule


def _dsev(c: Caller, a: str) -> tuple[str, list[Any]] | None:
    if c.apps is None:
        return None
    return (
        f'EXISTS (SELECT 1 FROM "service_install" si JOIN "device" d ON d."id" = si."device" '
        f'WHERE si."id" = {a}."service_install" AND d."belongs_to__application" IN ({_in(c.apps)}))',
        list(c.apps),
    )


def _orgs(column: str) -> Callable[[Caller, str], tuple[str, list[Any]] | None]:
    def rule(c: Caller, a: str) -> tuple[str, list[Any]] | None:
        return f'{a}."{column}" IN ({_in(c.orgs)})', list(c.orgs)

    return rule


def _users(c: Caller, a: str) -> tuple[str, list[Any]] | None:
    return (
        f'({a}."id" = ? OR {a}."id" IN (SELECT m."user" FROM "organization_membership" m '
        f'WHERE m."is_member_of__organization" IN ({_in(c.orgs)})))',
        [c.user, *c.orgs],
    )


def _own_keys(c: Caller, a: str) -> tuple[str, list[Any]] | None:
    return f'{a}."is_of__actor" = ?', [c.actor]


_RULES: Mapping[str, Callable[[Caller, str], tuple[str, list[Any]] | None]] = {
    "application": _by_app("id"),
    "device": _by_app("belongs_to__application"),
    "release": _by_app("belongs_to__application"),
    "application_environment_variable": _by_app("application"),
    "application_config_variable": _by_app("application"),
    "application_tag": _by_app("application"),
    "service": _by_app("application"),
    "device_environment_variable": _via("device", "device", "belongs_to__application"),
    "device_config_variable": _via("device", "device", "belongs_to__application"),
    "device_tag": _via("device", "device", "belongs_to__application"),
    "service_install": _via("device", "device", "belongs_to__application"),
    "image_install": _via("device", "device", "belongs_to__application"),
    "release_tag": _via("release", "release", "belongs_to__application"),
    "service_environment_variable": _via("service", "service", "application"),
    "device_service_environment_variable": _dsev,
    "organization": _orgs("id"),
    "organization_membership": _orgs("is_member_of__organization"),
    "user": _users,
    "api_key": _own_keys,
}

ANONYMOUS = Caller(None, None)


def token_of(authorization: str | None, apikey: str | None) -> str | None:
    """The credential sent, or None; AuthFailed for a header of another scheme or without a token."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailed
        return token
    return apikey or None


def authenticate(db: Database, token: str | None) -> Caller:
    """The caller a token stands for (ANONYMOUS for None); AuthFailed for an unknown or expired key."""
    if token is None:
        return ANONYMOUS
    row = db.conn.execute(
        'SELECT u."id", u."actor", k."expiry_date" FROM "api_key" k '
        'JOIN "user" u ON u."actor" = k."is_of__actor" WHERE k."key" = ?',
        (token,),
    ).fetchone()
    if row is None or (row[2] is not None and row[2] <= db.timestamp()):
        raise AuthFailed
    user, actor = int(row[0]), int(row[1])
    orgs = tuple(
        r[0]
        for r in db.conn.execute(
            'SELECT "is_member_of__organization" FROM "organization_membership" WHERE "user" = ?', (user,)
        )
    )
    marks = _in(orgs)
    apps = tuple(
        r[0]
        for r in db.conn.execute(f'SELECT "id" FROM "application" WHERE "organization" IN ({marks})', orgs)
    )
    total = db.conn.execute('SELECT COUNT(*) FROM "application"').fetchone()[0]
    return Caller(user, actor, orgs, None if len(apps) == total else apps)

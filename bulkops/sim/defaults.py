"""What the database fills in when a row is inserted without it: balena's column defaults, hook-managed
fields (actor, uuid, slug, commit, …) and generated device names."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulkops.sim.db import Database

_DEFAULTS: dict[str, dict[str, Any]] = {
    "device": {
        "api_heartbeat_state": "unknown",
        "is_online": False,
        "is_connected_to_vpn": False,
        "is_undervolted": False,
    },
    "application": {
        "should_track_latest_release": True,
        "is_of__class": "fleet",
        "is_host": False,
        "is_archived": False,
        "is_public": False,
    },
    "release": {
        "source": "cloud",
        "is_invalidated": False,
        "is_passing_tests": True,
        "variant": "",
        "semver_major": 0,
        "semver_minor": 0,
        "semver_patch": 0,
        "semver_prerelease": "",
        "semver_build": "",
        "composition": {},
    },
    "image_install": {"status": "Running"},
    "application_type": {
        "supports_multicontainer": True,
        "supports_web_url": True,
        "supports_gateway_mode": True,
        "is_legacy": False,
        "requires_payment": False,
    },
}


def _fill_actor(db: Database, row: dict[str, Any]) -> None:
    if row.get("actor") is None:
        row["actor"] = db.new_actor()


def _default_device_type(db: Database) -> int:
    arch = db.ensure("cpu_architecture", {"slug": "amd64"}, {})
    return db.ensure(
        "device_type", {"slug": "generic-amd64"}, {"name": "Generic x86_64", "is_of__cpu_architecture": arch}
    )


def _fill_device(db: Database, row: dict[str, Any]) -> None:
    _fill_actor(db, row)
    if not row.get("uuid"):
        row["uuid"] = db.random_hex(32)
    if not row.get("device_name"):
        row["device_name"] = generated_device_name(db._rng)
    if row.get("is_of__device_type") is None:
        row["is_of__device_type"] = _default_device_type(db)


def _fill_application(db: Database, row: dict[str, Any]) -> None:
    _fill_actor(db, row)
    if not row.get("uuid"):
        row["uuid"] = db.random_hex(32)
    if row.get("is_for__device_type") is None:
        row["is_for__device_type"] = _default_device_type(db)
    if row.get("application_type") is None:
        row["application_type"] = default_application_type(db)
    if not row.get("slug") and row.get("organization") is not None:
        row["slug"] = application_slug(db, int(row["organization"]), str(row.get("app_name", "")))


def default_application_type(db: Database) -> int:
    """The id of the default fleet type (created on first use)."""
    return db.ensure("application_type", {"slug": "microservices"}, {"name": "Microservices"})


def application_slug(db: Database, organization: int, app_name: str) -> str:
    """``<org handle>/<app_name>`` lower-cased, as balena's slug hook computes it."""
    found = db.conn.execute('SELECT handle FROM "organization" WHERE id = ?', (organization,)).fetchone()
    handle = found[0] if found is not None else ""
    return f"{handle}/{app_name}".lower()


def _fill_user(db: Database, row: dict[str, Any]) -> None:
    _fill_actor(db, row)


def _fill_api_key(db: Database, row: dict[str, Any]) -> None:
    if not row.get("key"):
        row["key"] = db.random_hex(32)


def _fill_release(db: Database, row: dict[str, Any]) -> None:
    stamp = db.timestamp()
    row.setdefault("start_timestamp", stamp)
    row.setdefault("update_timestamp", stamp)
    row.setdefault("status", "success")
    if not row.get("commit"):
        row["commit"] = db.random_hex(32)
    if "revision" not in row and row.get("belongs_to__application") is not None:
        found = db.conn.execute(
            'SELECT COUNT(*) FROM "release" WHERE belongs_to__application = ? AND semver_major = ? AND '
            "semver_minor = ? AND semver_patch = ? AND semver_prerelease = ? AND variant = ?",
            (
                row["belongs_to__application"],
                row["semver_major"],
                row["semver_minor"],
                row["semver_patch"],
                row["semver_prerelease"],
                row["variant"],
            ),
        ).fetchone()
        row["revision"] = int(found[0])


def _fill_organization(db: Database, row: dict[str, Any]) -> None:
    if not row.get("handle"):
        row["handle"] = re.sub(r"\W+", "_", str(row.get("name", "org"))).lower()
    row.setdefault("name", row["handle"])


def _fill_device_type(db: Database, row: dict[str, Any]) -> None:
    row.setdefault("name", row.get("slug", ""))
    if row.get("is_of__cpu_architecture") is None:
        row["is_of__cpu_architecture"] = db.ensure("cpu_architecture", {"slug": "amd64"}, {})


def _fill_application_type(db: Database, row: dict[str, Any]) -> None:
    row.setdefault("name", row.get("slug", ""))


def _fill_image_install(db: Database, row: dict[str, Any]) -> None:
    row.setdefault("install_date", db.timestamp())


_FILLERS: dict[str, Callable[[Database, dict[str, Any]], None]] = {
    "device": _fill_device,
    "application": _fill_application,
    "user": _fill_user,
    "api_key": _fill_api_key,
    "release": _fill_release,
    "organization": _fill_organization,
    "device_type": _fill_device_type,
    "application_type": _fill_application_type,
    "image_install": _fill_image_install,
}

_ADJECTIVES = ("young", "quiet", "bold", "misty", "frosty", "sunny", "lively", "silent", "rapid", "brave")
_NOUNS = ("thunder", "river", "forest", "meadow", "sun", "star", "breeze", "stone", "cloud", "field")


def generated_device_name(rng: random.Random) -> str:
    """A device name in balena's style (``misty-river``), for devices created without one."""
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"

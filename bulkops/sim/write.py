"""POST, PATCH, PUT and DELETE with balena's hooks: defaults on create, the device fleet-move and pin
rules, the fleet target rule, slugs, and cascading deletes. Each request is one SQLite transaction.

The rows a PATCH/DELETE touches are the caller's visible rows matching the key or ``$filter`` (all of
them when neither is given), limited by ``$top``/``$skip``; nothing reports how many changed.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from bulkops import v7
from bulkops.odata.query import QueryOptions
from bulkops.sim.auth import Caller
from bulkops.sim.db import Database
from bulkops.sim.read import ROOT, limit_clause, order_clause, where_clause
from bulkops.sim.rules import (
    NO_APP,
    PIN_RULE,
    TARGET_RULE,
    ApiError,
    check_values,
    coerce_body,
    fk_message,
    missing_required,
    unique_message,
)
from bulkops.sim.sql import COMPUTED, Compiler, Expr
from bulkops.v7 import FieldType, ResourceDef

_IDS = "(SELECT value FROM json_each(?))"
_OS_VARIANT = re.compile(r"^.*\((.+)\)$")


def _ids(ids: list[int]) -> str:
    return orjson.dumps(ids).decode()


class Writer:
    """The write operations of one request, for ``caller``, inside the caller's transaction."""

    def __init__(self, db: Database, caller: Caller, compiler: Compiler) -> None:
        self.db = db
        self.conn = db.conn
        self.caller = caller
        self.c = compiler

    # --- shared ------------------------------------------------------------------------------------

    def target_ids(self, res: ResourceDef, key: Expr | None, opts: QueryOptions) -> list[int]:
        where, params = where_clause(self.c, res, key, opts)
        order, oparams = order_clause(self.c, res, opts)
        limit, lparams = limit_clause(opts.top, opts.skip)
        sql = f'SELECT {ROOT}."id" FROM "{res.name}" {ROOT}{where}{order}{limit}'
        return [r[0] for r in self.conn.execute(sql, [*params, *oparams, *lparams])]

    def _visible(self, resource: str, row_id: int) -> bool | None:
        """True if visible, False if it exists but is hidden, None if it does not exist."""
        if self.conn.execute(f'SELECT 1 FROM "{resource}" WHERE "id" = ?', (row_id,)).fetchone() is None:
            return None
        vis = self.caller.condition(resource, "v")
        if vis is None:
            return True
        sql = f'SELECT 1 FROM "{resource}" v WHERE v."id" = ? AND {vis[0]}'
        return self.conn.execute(sql, [row_id, *vis[1]]).fetchone() is not None

    def check_links(self, res: ResourceDef, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            fd = res.fields[name]
            if fd.type is not FieldType.FK or value is None or fd.references not in v7.RESOURCES:
                continue
            assert fd.references is not None
            seen = self._visible(fd.references, value)
            if res.name == "device" and name == "belongs_to__application" and not seen:
                raise ApiError(404, NO_APP)
            if seen is None:
                raise ApiError(409, fk_message(fd))
            if seen is False and (res.name, name) not in _RULE_CHECKED_LINKS:
                raise ApiError(401)

    def _execute(self, sql: str, params: list[Any] | tuple[Any, ...]) -> None:
        try:
            self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            text = str(exc)
            if "UNIQUE" in text:
                raise ApiError(409, unique_message(text)) from None
            raise ApiError(500) from None

    # --- POST / PUT --------------------------------------------------------------------------------

    def create(self, res: ResourceDef, body: Mapping[str, Any]) -> int:
        values = coerce_body(res, body, strict=False)
        if missing_required(res, values):
            raise ApiError(500)
        check_values(res, values, creating=True)
        self.check_links(res, values)
        values = {k: v for k, v in values.items() if v is not None}
        if res.name == "application":
            values["should_track_latest_release"] = 1
        if res.name == "release":
            values["update_timestamp"] = self.db.timestamp()
        row = self.db.complete(res.name, values)
        try:
            new_id = self.db.insert_row(res.name, row)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise ApiError(409, unique_message(str(exc))) from None
            raise ApiError(500) from None
        if res.name == "device" and row.get("belongs_to__application") is not None:
            self.install_services([new_id], int(row["belongs_to__application"]))
        return new_id

    def replace(
        self, res: ResourceDef, key: Expr, key_values: Mapping[str, Any], body: Mapping[str, Any]
    ) -> None:
        ids = self.target_ids(res, key, QueryOptions())
        if ids:
            self._execute(f'DELETE FROM "{res.name}" WHERE "id" IN {_IDS}', (_ids(ids),))
        self.create(res, {**body, **key_values})

    # --- PATCH -------------------------------------------------------------------------------------

    def update(self, res: ResourceDef, key: Expr | None, opts: QueryOptions, body: Mapping[str, Any]) -> None:
        if not body:
            raise ApiError(400, "No fields to update")
        values = coerce_body(res, body, strict=True)
        if not values:
            raise ApiError(400, "No fields to update")
        check_values(res, values, creating=False)
        self.check_links(res, values)
        now = self.db.timestamp()
        if res.name == "device":
            self._device_values(values, now)
        elif res.name == "release":
            values["update_timestamp"] = now
        ids = self.target_ids(res, key, opts)
        if not ids:
            return
        if res.name == "device":
            self._device_rules(ids, values)
        elif res.name == "application":
            self._application_rules(ids, values)
        values["modified_at"] = now
        sets = ", ".join(f'"{k}" = ?' for k in values)
        self._execute(f'UPDATE "{res.name}" SET {sets} WHERE "id" IN {_IDS}', [*values.values(), _ids(ids)])
        if res.name == "application" and ("app_name" in values or "organization" in values):
            self._execute(
                'UPDATE "application" SET "slug" = lower((SELECT o."handle" FROM "organization" o '
                f'WHERE o."id" = "application"."organization") || \'/\' || "app_name") WHERE "id" IN {_IDS}',
                (_ids(ids),),
            )

    def _device_values(self, values: dict[str, Any], now: str) -> None:
        if values.get("os_version") is not None and "os_variant" not in values:
            m = _OS_VARIANT.match(values["os_version"])
            values["os_variant"] = m.group(1) if m else None
        if values.get("belongs_to__application") is not None and "is_pinned_on__release" not in values:
            values["is_pinned_on__release"] = None
        if "is_of__device_type" in values and "should_be_operated_by__release" not in values:
            values["should_be_operated_by__release"] = None
        if values.get("is_connected_to_vpn") is not None:
            values["is_online"] = values["is_connected_to_vpn"]
            values["last_vpn_event"] = now
        if values.get("is_online") is not None:
            values["last_connectivity_event"] = now
        if "update_status" in values:
            values["last_update_status_event"] = now
        if "api_heartbeat_state" in values:
            values["changed_api_heartbeat_state_on__date"] = now

    def _device_rules(self, ids: list[int], values: Mapping[str, Any]) -> None:
        new_app = values.get("belongs_to__application")
        pin = values.get("is_pinned_on__release")
        if pin is not None:
            release = self.conn.execute(
                'SELECT "status", "belongs_to__application" FROM "release" WHERE "id" = ?', (pin,)
            ).fetchone()
            if release is None or release[0] != "success":
                raise ApiError(400, PIN_RULE)
            apps = (
                {new_app}
                if new_app is not None
                else {
                    r[0]
                    for r in self.conn.execute(
                        f'SELECT DISTINCT "belongs_to__application" FROM "device" WHERE "id" IN {_IDS}',
                        (_ids(ids),),
                    )
                }
            )
            if apps != {release[1]}:
                raise ApiError(400, PIN_RULE)
        if new_app is not None:
            self._move_devices(ids, int(new_app))

    def _move_devices(self, ids: list[int], app: int) -> None:
        moved = [
            r[0]
            for r in self.conn.execute(
                f'SELECT "id" FROM "device" WHERE "id" IN {_IDS} AND "belongs_to__application" IS NOT ?',
                (_ids(ids), app),
            )
        ]
        if not moved:
            return
        old_installs = (
            f'SELECT si."id" FROM "service_install" si JOIN "service" s ON s."id" = si."installs__service" '
            f'WHERE si."device" IN {_IDS} AND s."application" IS NOT ?'
        )
        self._execute(
            f'DELETE FROM "device_service_environment_variable" WHERE "service_install" IN ({old_installs})',
            (_ids(moved), app),
        )
        self._execute(f'DELETE FROM "service_install" WHERE "id" IN ({old_installs})', (_ids(moved), app))
        self._execute(
            f'UPDATE "image_install" SET "status" = \'deleted\', "download_progress" = NULL '
            f'WHERE "device" IN {_IDS}',
            (_ids(moved),),
        )
        self.install_services(moved, app)

    def install_services(self, devices: list[int], app: int) -> None:
        """Service installs of the fleet's services for ``devices`` (those missing), as balena's hooks
        create them when a device joins a fleet."""
        now = self.db.timestamp()
        self._execute(
            'INSERT INTO "service_install" ("created_at", "modified_at", "device", "installs__service") '
            'SELECT ?, ?, d.value, s."id" FROM json_each(?) d JOIN "service" s ON s."application" = ? '
            'WHERE NOT EXISTS (SELECT 1 FROM "service_install" x WHERE x."device" = d.value '
            'AND x."installs__service" = s."id")',
            (now, now, _ids(devices), app),
        )

    def _application_rules(self, ids: list[int], values: Mapping[str, Any]) -> None:
        target = values.get("should_be_running__release")
        if target is None:
            return
        release = self.conn.execute(
            'SELECT "status", "belongs_to__application" FROM "release" WHERE "id" = ?', (target,)
        ).fetchone()
        if release is None or release[0] != "success" or set(ids) != {release[1]}:
            raise ApiError(400, TARGET_RULE)

    # --- DELETE ------------------------------------------------------------------------------------

    def delete(self, res: ResourceDef, key: Expr | None, opts: QueryOptions) -> None:
        ids = self.target_ids(res, key, opts)
        if not ids:
            if res.name == "application" and key is not None:
                raise ApiError(404)
            return
        self.delete_ids(res.name, ids)

    def delete_ids(self, resource: str, ids: list[int]) -> None:
        if not ids:
            return
        cascade = _CASCADES.get(resource)
        if cascade is not None:
            cascade(self, ids)
        self._execute(f'DELETE FROM "{resource}" WHERE "id" IN {_IDS}', (_ids(ids),))

    def _children(self, resource: str, column: str, ids: list[int]) -> list[int]:
        return [
            r[0]
            for r in self.conn.execute(
                f'SELECT "id" FROM "{resource}" WHERE "{column}" IN {_IDS}', (_ids(ids),)
            )
        ]

    def _cascade_device(self, ids: list[int]) -> None:
        for child in ("device_config_variable", "device_environment_variable", "device_tag", "image_install"):
            self._execute(f'DELETE FROM "{child}" WHERE "device" IN {_IDS}', (_ids(ids),))
        self.delete_ids("service_install", self._children("service_install", "device", ids))

    def _cascade_service_install(self, ids: list[int]) -> None:
        self._execute(
            f'DELETE FROM "device_service_environment_variable" WHERE "service_install" IN {_IDS}',
            (_ids(ids),),
        )

    def _cascade_service(self, ids: list[int]) -> None:
        self.delete_ids("service_install", self._children("service_install", "installs__service", ids))
        self._execute(f'DELETE FROM "service_environment_variable" WHERE "service" IN {_IDS}', (_ids(ids),))

    def _cascade_release(self, ids: list[int]) -> None:
        raw_version = COMPUTED[("release", "raw_version")](self.c, "r")
        app = self.conn.execute(
            f'SELECT a."is_of__class", {raw_version} FROM "application" a JOIN "release" r '
            f'ON r."id" = a."should_be_running__release" WHERE r."id" IN {_IDS} LIMIT 1',
            (_ids(ids),),
        ).fetchone()
        if app is not None:
            raise ApiError(
                400, f"Unable to delete release {app[1]} because it is the {app[0]}'s target release."
            )
        pinned = self.conn.execute(
            f'SELECT 1 FROM "device" WHERE "is_pinned_on__release" IN {_IDS} LIMIT 1', (_ids(ids),)
        ).fetchone()
        if pinned is not None:
            raise ApiError(400, "Unable to delete a release because device(s) are pinned to it.")
        self._execute(f'DELETE FROM "release_tag" WHERE "release" IN {_IDS}', (_ids(ids),))
        self._execute(f'DELETE FROM "image_install" WHERE "is_provided_by__release" IN {_IDS}', (_ids(ids),))

    def _cascade_application(self, ids: list[int]) -> None:
        self._execute(
            f'UPDATE "application" SET "should_be_running__release" = NULL WHERE "id" IN {_IDS}', (_ids(ids),)
        )
        self.delete_ids("device", self._children("device", "belongs_to__application", ids))
        for child in ("application_config_variable", "application_environment_variable", "application_tag"):
            self._execute(f'DELETE FROM "{child}" WHERE "application" IN {_IDS}', (_ids(ids),))
        self.delete_ids("release", self._children("release", "belongs_to__application", ids))
        self.delete_ids("service", self._children("service", "application", ids))


_RULE_CHECKED_LINKS = frozenset(
    {("device", "is_pinned_on__release"), ("application", "should_be_running__release")}
)
"""Links to a row the caller cannot see that balena refuses by a rule (400) rather than by permission."""

_CASCADES = {
    "device": Writer._cascade_device,
    "service_install": Writer._cascade_service_install,
    "service": Writer._cascade_service,
    "release": Writer._cascade_release,
    "application": Writer._cascade_application,
}

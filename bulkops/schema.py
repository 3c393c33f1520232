"""The balena API v7 model as data: resources, fields, keys, navigations, validation rules.

One source for both sides: the job validator checks names against it, and the simulator builds its
SQLite tables and answers from it. Facts come from the v7 model reference (fields, types, writability,
unique keys, navigation names and their aliases).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    SERIAL = "serial"  # integer primary key
    INTEGER = "integer"
    BIG_INTEGER = "big_integer"  # read back as a string in v7
    BOOLEAN = "boolean"
    SHORT_TEXT = "short_text"  # <= 255 chars
    TEXT = "text"
    DATETIME = "datetime"  # ISO-8601 UTC with milliseconds, 'Z'
    JSON = "json"
    FK = "fk"  # foreign key: {"__id": n} when not expanded
    HASHED = "hashed"


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: FieldType
    nullable: bool = False
    writable: bool = True  # False for computed and hook-managed fields
    references: str | None = None  # target resource for FK fields
    enum: tuple[str, ...] = ()  # allowed values of a closed text field
    max_length: int | None = None
    v7_only: bool = False  # absent from /v6
    computed: bool = False


@dataclass(frozen=True, slots=True)
class Navigation:
    """A navigation property. To-one navigations are FK fields of this resource (``via`` = the field);
    to-many navigations are reverse FKs (``via`` = the FK field on ``target`` pointing back here)."""

    name: str
    target: str
    many: bool
    via: str


@dataclass(frozen=True, slots=True)
class ResourceDef:
    name: str
    fields: dict[str, FieldDef]
    navigations: dict[str, Navigation] = field(default_factory=dict)
    unique_keys: tuple[tuple[str, ...], ...] = ()  # alternate keys, e.g. (("uuid",),) or (("device","name"),)
    aliases: tuple[str, ...] = ()  # canonical long names that address the same resource


# RESOURCES: dict[str, ResourceDef] is defined below; look names up with resource() and field_of().


# --- building blocks ---------------------------------------------------------------------------

T = FieldType


def _f(name: str, type_: FieldType, *, null: bool = False, ro: bool = False, ref: str | None = None,
       enum: tuple[str, ...] = (), max_length: int | None = None, v7: bool = False,
       computed: bool = False) -> FieldDef:
    return FieldDef(name, type_, nullable=null, writable=not (ro or computed), references=ref, enum=enum,
                    max_length=max_length, v7_only=v7, computed=computed)


def _fk(name: str, target: str, *, null: bool = False, ro: bool = False, v7: bool = False,
        computed: bool = False) -> FieldDef:
    return _f(name, T.FK, null=null, ro=ro, ref=target, v7=v7, computed=computed)


def _common() -> list[FieldDef]:
    return [
        _f("id", T.SERIAL, ro=True),
        _f("created_at", T.DATETIME, ro=True),
        _f("modified_at", T.DATETIME, ro=True),
    ]


def _one(name: str, target: str, *aliases: str, via: str | None = None) -> list[Navigation]:
    """A to-one navigation along the FK field ``via`` (default: the navigation's own name)."""
    return [Navigation(n, target, False, via or name) for n in (name, *aliases)]


def _many(name: str, target: str, via: str, *aliases: str) -> list[Navigation]:
    """A to-many navigation: rows of ``target`` whose FK ``via`` points at this row."""
    return [Navigation(n, target, True, via) for n in (name, *aliases)]


def _res(name: str, fields: list[FieldDef], navs: Sequence[list[Navigation]] = (),
         unique: tuple[tuple[str, ...], ...] = (), aliases: tuple[str, ...] = ()) -> ResourceDef:
    all_fields = {f.name: f for f in (*_common(), *fields)}
    navigations = {n.name: n for group in navs for n in group}
    return ResourceDef(name, all_fields, navigations, unique, aliases)


DIRECT_ACCESS_NAV = "is_directly_accessible_by__user"
"""application → user through the organizations the user is a member of (balena's access view)."""

HEARTBEAT_STATES = ("online", "offline", "timeout", "unknown")
UPDATE_STATUSES = ("rejected", "downloading", "downloaded", "applying changes", "aborted", "done")
RELEASE_STATUSES = ("running", "success", "failed", "error", "cancelled", "interrupted")
IMAGE_INSTALL_STATUSES = (
    "Stopping", "Stopped", "Downloading", "Downloaded", "Installing", "Installed", "Starting", "Running",
    "Idle", "Handing over", "Awaiting handover", "Deleting", "deleted", "Dead", "paused", "restarting",
    "removing", "exited", "configuring", "Unknown",
)
CPU_ARCHITECTURES = ("rpi", "armv7hf", "aarch64", "i386-nlp", "i386", "amd64")

V6_ONLY_FIELDS: dict[str, tuple[str, ...]] = {
    "device": ("is_managed_by__device", "logs_channel", "vpn_address"),
}
"""Fields /v6 still lists (always null) that v7 dropped."""


def _var(name: str, owner: str, canonical: str) -> ResourceDef:
    return _res(
        name,
        [_fk(owner, owner), _f("name", T.SHORT_TEXT), _f("value", T.TEXT)],
        [_one(owner, owner)],
        unique=((owner, "name"),),
        aliases=(canonical,),
    )


def _tag(name: str, owner: str, canonical: str) -> ResourceDef:
    return _res(
        name,
        [_fk(owner, owner), _f("tag_key", T.SHORT_TEXT), _f("value", T.TEXT)],
        [_one(owner, owner)],
        unique=((owner, "tag_key"),),
        aliases=(canonical,),
    )


_DEVICE = _res(
    "device",
    [
        _fk("actor", "actor", ro=True),
        _f("api_heartbeat_state", T.SHORT_TEXT, enum=HEARTBEAT_STATES),
        _f("changed_api_heartbeat_state_on__date", T.DATETIME, null=True, v7=True),
        _f("uuid", T.TEXT),
        _f("local_id", T.SHORT_TEXT, null=True),
        _f("device_name", T.SHORT_TEXT, max_length=255),
        _f("note", T.TEXT, null=True, max_length=1_000_000),
        _fk("is_of__device_type", "device_type"),
        _fk("belongs_to__application", "application", null=True),
        _f("is_online", T.BOOLEAN),
        _f("last_connectivity_event", T.DATETIME, null=True, ro=True),
        _f("is_connected_to_vpn", T.BOOLEAN),
        _f("last_vpn_event", T.DATETIME, null=True, ro=True),
        _f("is_locked_until__date", T.DATETIME, null=True),
        _f("public_address", T.SHORT_TEXT, null=True, max_length=50),
        _f("ip_address", T.SHORT_TEXT, null=True),
        _f("mac_address", T.SHORT_TEXT, null=True),
        _f("is_web_accessible", T.BOOLEAN, computed=True),
        _f("memory_usage", T.INTEGER, null=True),
        _f("memory_total", T.INTEGER, null=True),
        _f("storage_block_device", T.SHORT_TEXT, null=True),
        _f("storage_usage", T.INTEGER, null=True),
        _f("storage_total", T.INTEGER, null=True),
        _f("cpu_usage", T.INTEGER, null=True),
        _f("cpu_temp", T.INTEGER, null=True),
        _f("is_undervolted", T.BOOLEAN),
        _f("cpu_id", T.SHORT_TEXT, null=True),
        _fk("is_running__release", "release", null=True),
        _f("download_progress", T.INTEGER, null=True),
        _f("status", T.SHORT_TEXT, null=True, max_length=50),
        _f("os_version", T.SHORT_TEXT, null=True, max_length=70),
        _f("os_variant", T.SHORT_TEXT, null=True),
        _f("supervisor_version", T.SHORT_TEXT, null=True, max_length=20),
        _f("provisioning_progress", T.INTEGER, null=True),
        _f("provisioning_state", T.SHORT_TEXT, null=True),
        _f("api_port", T.INTEGER, null=True),
        _f("api_secret", T.SHORT_TEXT, null=True, max_length=64),
        _fk("is_managed_by__service_instance", "service_instance", null=True),
        _fk("is_pinned_on__release", "release", null=True, v7=True),
        _fk("should_be_running__release", "release", null=True, computed=True),
        _fk("should_be_operated_by__release", "release", null=True),
        _fk("should_be_managed_by__release", "release", null=True, v7=True),
        _f("update_status", T.SHORT_TEXT, null=True, enum=UPDATE_STATUSES),
        _f("last_update_status_event", T.DATETIME, null=True, ro=True),
        _f("overall_status", T.SHORT_TEXT, computed=True),
        _f("overall_progress", T.INTEGER, null=True, computed=True),
    ],
    [
        _one("belongs_to__application", "application"),
        _one("is_of__device_type", "device_type"),
        _one("is_pinned_on__release", "release"),
        _one("should_be_running__release", "release"),
        _one("is_running__release", "release"),
        _one("should_be_operated_by__release", "release"),
        _one("should_be_managed_by__release", "release"),
        _one("actor", "actor"),
        _many("device_environment_variable", "device_environment_variable", "device",
              "device__has__env_var_name"),
        _many("device_config_variable", "device_config_variable", "device", "device__has__config_var_name"),
        _many("device_tag", "device_tag", "device", "device__has__tag_key"),
        _many("service_install", "service_install", "device", "device__installs__service",
              "device__installs__application__has__service_name", "installs__service",
              "installs__application__has__service_name"),
        _many("image_install", "image_install", "device", "device__installs__image", "installs__image"),
    ],
    unique=(("uuid",),),
)

_APPLICATION = _res(
    "application",
    [
        _fk("actor", "actor", ro=True),
        _f("should_track_latest_release", T.BOOLEAN),
        _f("is_of__class", T.SHORT_TEXT, enum=("fleet", "block", "app")),
        _fk("organization", "organization"),
        _f("app_name", T.TEXT, max_length=100),
        _f("slug", T.SHORT_TEXT, ro=True),
        _fk("is_for__device_type", "device_type"),
        _fk("should_be_running__release", "release", null=True),
        _fk("application_type", "application_type"),
        _f("is_host", T.BOOLEAN),
        _f("is_archived", T.BOOLEAN),
        _f("uuid", T.TEXT),
        _f("is_public", T.BOOLEAN),
    ],
    [
        _one("organization", "organization"),
        _one("is_for__device_type", "device_type"),
        _one("should_be_running__release", "release"),
        _one("application_type", "application_type"),
        _one("actor", "actor"),
        _many("owns__device", "device", "belongs_to__application"),
        _many("owns__release", "release", "belongs_to__application"),
        _many("application_environment_variable", "application_environment_variable", "application",
              "application__has__env_var_name"),
        _many("application_config_variable", "application_config_variable", "application",
              "application__has__config_var_name"),
        _many("application_tag", "application_tag", "application", "application__has__tag_key"),
        _many("service", "service", "application", "application__has__service_name"),
        [Navigation(DIRECT_ACCESS_NAV, "user", True, "")],
    ],
    unique=(("slug",), ("uuid",)),
)

_RELEASE = _res(
    "release",
    [
        _fk("belongs_to__application", "application"),
        _f("commit", T.SHORT_TEXT, max_length=40),
        _f("composition", T.JSON),
        _f("status", T.SHORT_TEXT, enum=RELEASE_STATUSES),
        _f("source", T.SHORT_TEXT, enum=("cloud", "local")),
        _f("build_log", T.TEXT, null=True),
        _f("is_invalidated", T.BOOLEAN),
        _f("start_timestamp", T.DATETIME),
        _f("end_timestamp", T.DATETIME, null=True),
        _f("update_timestamp", T.DATETIME, ro=True),
        _f("release_version", T.SHORT_TEXT, null=True, max_length=81),
        _f("contract", T.JSON, null=True),
        _f("is_passing_tests", T.BOOLEAN),
        _f("is_finalized_at__date", T.DATETIME, null=True, ro=True),
        _f("phase", T.SHORT_TEXT, null=True, enum=("next", "current", "sunset", "end-of-life")),
        _f("is_final", T.BOOLEAN, computed=True),
        _f("semver", T.SHORT_TEXT, computed=True),
        _f("semver_major", T.INTEGER, ro=True),
        _f("semver_minor", T.INTEGER, ro=True),
        _f("semver_patch", T.INTEGER, ro=True),
        _f("semver_prerelease", T.SHORT_TEXT, ro=True),
        _f("semver_build", T.SHORT_TEXT, ro=True),
        _f("variant", T.SHORT_TEXT, max_length=50),
        _f("revision", T.INTEGER, null=True, ro=True),
        _f("raw_version", T.SHORT_TEXT, computed=True),
        _f("version", T.JSON, computed=True),
        _f("known_issue_list", T.TEXT, null=True),
        _f("note", T.TEXT, null=True),
        _f("invalidation_reason", T.TEXT, null=True),
    ],
    [
        _one("belongs_to__application", "application"),
        _many("release_tag", "release_tag", "release", "release__has__tag_key"),
        _many("is_pinned_to__device", "device", "is_pinned_on__release"),
        _many("should_be_running_on__device", "device", "should_be_running__release"),
        _many("is_running_on__device", "device", "is_running__release"),
        _many("should_operate__device", "device", "should_be_operated_by__release"),
        _many("should_manage__device", "device", "should_be_managed_by__release"),
        _many("should_be_running_on__application", "application", "should_be_running__release"),
        _many("provides__image_install", "image_install", "is_provided_by__release"),
    ],
)

_RESOURCE_LIST: list[ResourceDef] = [
    _res(
        "organization",
        [_f("name", T.SHORT_TEXT, max_length=100), _f("handle", T.SHORT_TEXT, max_length=100)],
        [
            _many("organization_membership", "organization_membership", "is_member_of__organization",
                  "includes__user"),
            _many("application", "application", "organization", "is_of__application"),
        ],
        unique=(("handle",),),
    ),
    _res(
        "user",
        [
            _fk("actor", "actor", ro=True),
            _f("username", T.SHORT_TEXT, max_length=73),
            _f("password", T.HASHED, null=True),
            _f("jwt_secret", T.SHORT_TEXT, null=True, ro=True),
            _f("email", T.TEXT, null=True, max_length=254),
        ],
        [
            _one("actor", "actor"),
            _many("organization_membership", "organization_membership", "user", "is_member_of__organization"),
            _many("api_key", "api_key", "is_of__actor"),
        ],
        unique=(("username",), ("email",)),
    ),
    _res(
        "actor",
        [],
        [
            _many("is_of__user", "user", "actor"),
            _many("is_of__device", "device", "actor"),
            _many("is_of__application", "application", "actor"),
            _many("api_key", "api_key", "is_of__actor"),
        ],
    ),
    _res(
        "organization_membership",
        [_fk("user", "user"), _fk("is_member_of__organization", "organization")],
        [_one("user", "user"), _one("is_member_of__organization", "organization", "organization",
                                     via="is_member_of__organization")],
        unique=(("user", "is_member_of__organization"),),
        aliases=("user__is_member_of__organization",),
    ),
    _res(
        "api_key",
        [
            _f("key", T.SHORT_TEXT),
            _f("expiry_date", T.DATETIME, null=True),
            _fk("is_of__actor", "actor", ro=True),
            _f("name", T.SHORT_TEXT, null=True, max_length=50),
            _f("description", T.TEXT, null=True, max_length=150),
        ],
        [_one("is_of__actor", "actor")],
        unique=(("key",),),
    ),
    _APPLICATION,
    _res(
        "application_type",
        [
            _f("name", T.SHORT_TEXT),
            _f("slug", T.SHORT_TEXT),
            _f("description", T.TEXT, null=True),
            _f("supports_gateway_mode", T.BOOLEAN),
            _f("supports_multicontainer", T.BOOLEAN),
            _f("supports_web_url", T.BOOLEAN),
            _f("is_legacy", T.BOOLEAN),
            _f("requires_payment", T.BOOLEAN),
            _f("needs__os_version_range", T.SHORT_TEXT, null=True),
            _f("maximum_device_count", T.INTEGER, null=True),
        ],
        [_many("is_of__application", "application", "application_type")],
        unique=(("slug",),),
    ),
    _res(
        "device_type",
        [
            _f("slug", T.SHORT_TEXT),
            _f("name", T.SHORT_TEXT),
            _fk("is_of__cpu_architecture", "cpu_architecture"),
            _f("logo", T.TEXT, null=True),
            _f("contract", T.JSON, null=True),
            _fk("belongs_to__device_family", "device_family", null=True),
        ],
        [
            _one("is_of__cpu_architecture", "cpu_architecture", "supports__cpu_architecture",
                 via="is_of__cpu_architecture"),
            _many("describes__device", "device", "is_of__device_type", "device"),
            _many("is_default_for__application", "application", "is_for__device_type"),
        ],
        unique=(("slug",),),
    ),
    _res(
        "cpu_architecture",
        [_f("slug", T.SHORT_TEXT, enum=CPU_ARCHITECTURES)],
        [_many("is_supported_by__device_type", "device_type", "is_of__cpu_architecture", "device_type")],
        unique=(("slug",),),
    ),
    _DEVICE,
    _RELEASE,
    _var("device_environment_variable", "device", "device__has__env_var_name"),
    _var("application_environment_variable", "application", "application__has__env_var_name"),
    _var("device_config_variable", "device", "device__has__config_var_name"),
    _var("application_config_variable", "application", "application__has__config_var_name"),
    _tag("device_tag", "device", "device__has__tag_key"),
    _tag("application_tag", "application", "application__has__tag_key"),
    _tag("release_tag", "release", "release__has__tag_key"),
    _res(
        "service",
        [_fk("application", "application"), _f("service_name", T.SHORT_TEXT, max_length=63)],
        [
            _one("application", "application"),
            _many("service_environment_variable", "service_environment_variable", "service",
                  "service__has__name", "application__has__service_name__has__name"),
            _many("service_install", "service_install", "installs__service", "device__installs__service"),
        ],
        unique=(("application", "service_name"),),
        aliases=("application__has__service_name",),
    ),
    _res(
        "service_install",
        [_fk("device", "device"), _fk("installs__service", "service")],
        [
            _one("device", "device"),
            _one("installs__service", "service", "service", via="installs__service"),
            _many("device_service_environment_variable", "device_service_environment_variable",
                  "service_install", "service_install__has__name", "device__installs__service__has__name"),
        ],
        unique=(("device", "installs__service"),),
        aliases=("device__installs__service", "device__installs__application__has__service_name"),
    ),
    _res(
        "device_service_environment_variable",
        [_fk("service_install", "service_install"), _f("name", T.SHORT_TEXT), _f("value", T.TEXT)],
        [_one("service_install", "service_install", "device__installs__service", via="service_install")],
        unique=(("service_install", "name"),),
        aliases=("device__installs__application__has__service_name__has__name",),
    ),
    _res(
        "service_environment_variable",
        [_fk("service", "service"), _f("name", T.SHORT_TEXT), _f("value", T.TEXT)],
        [_one("service", "service", "application__has__service_name", via="service")],
        unique=(("service", "name"),),
        aliases=("application__has__service_name__has__name",),
    ),
    _res(
        "image_install",
        [
            _fk("device", "device"),
            _fk("installs__image", "image"),
            _f("install_date", T.DATETIME),
            _f("download_progress", T.INTEGER, null=True),
            _f("status", T.SHORT_TEXT, enum=IMAGE_INSTALL_STATUSES),
            _fk("is_provided_by__release", "release"),
        ],
        [_one("device", "device"), _one("is_provided_by__release", "release")],
        unique=(("device", "installs__image"),),
        aliases=("device__installs__image",),
    ),
]

RESOURCES: dict[str, ResourceDef] = {r.name: r for r in _RESOURCE_LIST}
"""Every v7 resource bulkops and its simulator know, by v7 name."""

_BY_ANY_NAME: dict[str, ResourceDef] = {
    **{alias: r for r in _RESOURCE_LIST for alias in r.aliases},
    **RESOURCES,
}


def resource(name: str) -> ResourceDef:
    """The resource called ``name`` (its v7 name or a canonical long alias); KeyError if unknown."""
    return _BY_ANY_NAME[name]


def field_of(resource_name: str, name: str) -> FieldDef:
    """The field ``name`` of a resource; KeyError if either is unknown."""
    return resource(resource_name).fields[name]


# --- validation rules shared by the simulator and the job loader ---------------------------------
# Each check returns balena's error message (answered with HTTP 400) or None when the value is fine.

RESERVED_VAR_NAMES = ("RESIN", "BALENA", "USER")
RESERVED_VAR_PREFIXES = ("RESIN_", "BALENA_")
RESERVED_TAG_PREFIXES = ("io.resin.", "io.balena.")
VAR_VALUE_MAX = 100_000
TAG_VALUE_MAX: dict[str, int] = {"device_tag": 10_000, "application_tag": 1_000, "release_tag": 1_000}
TAG_KEY_MAX: dict[str, int] = {"device_tag": 100, "application_tag": 100, "release_tag": 164}

ENV_VAR_RESOURCES = frozenset({
    "device_environment_variable", "application_environment_variable", "service_environment_variable",
    "device_service_environment_variable",
})
CONFIG_VAR_RESOURCES = frozenset({"device_config_variable", "application_config_variable"})
TAG_RESOURCES = frozenset(TAG_VALUE_MAX)

_ENV_NAME_BAD = re.compile(r"^\d|[^A-Za-z0-9_]")
_CONFIG_NAME_BAD = re.compile(r"^[\d:]|[^A-Za-z0-9_:]")
_LINE_BREAK = re.compile(r"[\r\n]")
_WHITESPACE = re.compile(r"\s")


def _check_var_name(kind: str, name: str, bad: re.Pattern[str]) -> str | None:
    if bad.search(name):
        return f"{kind} names can only contain alphanumeric characters and underscores."
    if name in RESERVED_VAR_NAMES:
        return f"{kind}s {', '.join(RESERVED_VAR_NAMES)} are reserved"
    return None


def check_env_var_name(name: str) -> str | None:
    """balena's message for an invalid environment variable name (any env var resource), else None."""
    problem = _check_var_name("Environment variable", name, _ENV_NAME_BAD)
    if problem is None and name.startswith(RESERVED_VAR_PREFIXES):
        return f"Environment variables beginning with {', '.join(RESERVED_VAR_PREFIXES)} are reserved."
    return problem


def check_config_var_name(name: str) -> str | None:
    """balena's message for an invalid configuration variable name (must be RESIN_/BALENA_…), else None."""
    problem = _check_var_name("Configuration variable", name, _CONFIG_NAME_BAD)
    if problem is None and not name.startswith(RESERVED_VAR_PREFIXES):
        return ("Configuration variables must be part of one of the following namespaces: "
                + ", ".join(RESERVED_VAR_PREFIXES))
    return problem


def _length_rule(resource_name: str, field_name: str, maximum: int, minimum: int | None = None) -> str:
    term = field_name.replace("_", " ")
    article = "an" if term[0] in "aeiou" else "a"
    greater = f"is greater than {minimum} and " if minimum is not None else ""
    return (f"It is necessary that each {resource_name.replace('_', ' ')} has {article} {term} that has a "
            f"Length (Type) that {greater}is less than or equal to {maximum}.")


def check_var_value(value: str, *, resource_name: str = "device_environment_variable") -> str | None:
    """balena's message for an invalid variable value (line breaks, over 100,000 chars), else None."""
    if _LINE_BREAK.search(value):
        return "Variable values cannot contain line break characters"
    if len(value) > VAR_VALUE_MAX:
        return _length_rule(resource_name, "value", VAR_VALUE_MAX)
    return None


def check_tag_key(key: str, *, resource_name: str = "device_tag") -> str | None:
    """balena's message for an invalid tag key (whitespace, reserved prefix, length), else None."""
    if _WHITESPACE.search(key):
        return "Tag keys cannot contain whitespace."
    for prefix in RESERVED_TAG_PREFIXES:
        if key.startswith(prefix):
            return f"Tag keys beginning with {prefix} are reserved."
    maximum = TAG_KEY_MAX.get(resource_name, 100)
    if not 0 < len(key) <= maximum:
        return _length_rule(resource_name, "tag_key", maximum, 0)
    return None


def check_tag_value(value: str, *, resource_name: str = "device_tag") -> str | None:
    """balena's message for a tag value over the resource's length limit, else None."""
    maximum = TAG_VALUE_MAX.get(resource_name, 1_000)
    if len(value) > maximum:
        return _length_rule(resource_name, "value", maximum)
    return None

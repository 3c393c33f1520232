"""Every v7 resource bulkops and its simulator know, and lookup by name or alias."""

from __future__ import annotations

from bulkops.v7.resources import (
    _APPLICATION,
    _DEVICE,
    _RELEASE,
    CPU_ARCHITECTURES,
    IMAGE_INSTALL_STATUSES,
    _tag,
    _var,
)
from bulkops.v7.types import FieldDef, ResourceDef, T, _f, _fk, _many, _one, _res

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

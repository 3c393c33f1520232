"""The balena API v7 model as data: resources, fields, keys, navigations, validation rules, and what
each bulkops action writes in it.

One source for both sides: the job validator checks names against it, and the simulator builds its
SQLite tables and answers from it. Facts come from the v7 model reference (fields, types, writability,
unique keys, navigation names and their aliases).

* :mod:`bulkops.v7.types` — the shapes: field types, fields, navigations, resources;
* :mod:`bulkops.v7.resources` — device, application (fleet), release and the child shapes;
* :mod:`bulkops.v7.catalog` — every resource, looked up by name or alias;
* :mod:`bulkops.v7.rules` — balena's validation rules for names, values and tags;
* :mod:`bulkops.v7.actions` — which rows and fields each action touches.
"""

from __future__ import annotations

from bulkops.v7.catalog import RESOURCES, field_of, resource
from bulkops.v7.resources import (
    CPU_ARCHITECTURES,
    DIRECT_ACCESS_NAV,
    FORMER_VALUES,
    HEARTBEAT_STATES,
    IMAGE_INSTALL_STATUSES,
    OVERALL_STATUSES,
    RELEASE_STATUSES,
    UPDATE_STATUSES,
    V6_ONLY_FIELDS,
)
from bulkops.v7.rules import (
    CONFIG_VAR_RESOURCES,
    ENV_VAR_RESOURCES,
    RESERVED_TAG_PREFIXES,
    RESERVED_VAR_NAMES,
    RESERVED_VAR_PREFIXES,
    TAG_KEY_MAX,
    TAG_RESOURCES,
    TAG_VALUE_MAX,
    VAR_VALUE_MAX,
    check_config_var_name,
    check_env_var_name,
    check_tag_key,
    check_tag_value,
    check_var_value,
)
from bulkops.v7.types import FieldDef, FieldType, Navigation, ResourceDef

__all__ = [
    "CONFIG_VAR_RESOURCES", "CPU_ARCHITECTURES", "DIRECT_ACCESS_NAV", "ENV_VAR_RESOURCES", "FORMER_VALUES",
    "HEARTBEAT_STATES", "IMAGE_INSTALL_STATUSES", "OVERALL_STATUSES", "RELEASE_STATUSES",
    "RESERVED_TAG_PREFIXES", "RESERVED_VAR_NAMES",
    "RESERVED_VAR_PREFIXES", "RESOURCES", "TAG_KEY_MAX", "TAG_RESOURCES", "TAG_VALUE_MAX", "UPDATE_STATUSES",
    "V6_ONLY_FIELDS", "VAR_VALUE_MAX", "FieldDef", "FieldType", "Navigation", "ResourceDef",
    "check_config_var_name", "check_env_var_name", "check_tag_key", "check_tag_value", "check_var_value",
    "field_of", "resource",
]

"""Validation rules shared by the simulator and the job loader."""

from __future__ import annotations

import re

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

"""The v7 resources that carry the most fields: device, application (fleet), release, and the
variable and tag shapes shared by their children."""

from __future__ import annotations

from bulkops.v7.types import Navigation, ResourceDef, T, _f, _fk, _many, _one, _res

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
OVERALL_STATUSES = (
    "inactive", "post-provisioning", "configuring", "disconnected", "updating", "reduced-functionality",
    "operational",
)
"""The values v7 computes for ``device.overall_status`` (model reference §3.6)."""

FORMER_VALUES: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("device", "overall_status"): {
        "offline": ("disconnected",),
        "idle": ("operational", "reduced-functionality"),
    },
}
"""Values /v6 used that v7 renamed, by (resource, field): a filter still using one is pointed to the new."""

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
        _f("overall_status", T.SHORT_TEXT, computed=True, enum=OVERALL_STATUSES),
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


"""The SDK peer's settings file points balena-sdk at the simulator with 429 retries on (skipped when the
optional SDK is not installed: `make bench` installs it, `make test` does not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.baselines.sdk_client import open_sdk, write_settings

balena = pytest.importorskip("balena", reason="balena-sdk is not installed (the bench extra)")


def test_settings_file_aims_the_sdk_at_the_simulator_with_retries_on(tmp_path: Path) -> None:
    """balena.cfg in the data directory sets api_endpoint, and retry_rate_limited_request reads back as
    the boolean True the SDK's retry check needs."""
    sdk = open_sdk(tmp_path, "http://127.0.0.1:9")
    assert sdk.settings.get("api_endpoint") == "http://127.0.0.1:9/"
    assert sdk.settings.get("retry_rate_limited_request") is True


def test_the_string_true_leaves_retries_off(tmp_path: Path) -> None:
    """Written as 'True' the setting reads back as a string, so the SDK's `is True` retry check would
    fail and every 429 would be raised instead of retried."""
    path = write_settings(tmp_path, "http://127.0.0.1:9")
    path.write_text(
        path.read_text().replace("retry_rate_limited_request = true", "retry_rate_limited_request = True")
    )
    assert (
        balena.Balena({"data_directory": str(tmp_path)}).settings.get("retry_rate_limited_request") == "True"
    )


def test_constructor_settings_cannot_move_the_endpoint() -> None:
    """An api_endpoint passed to Balena() is overwritten from balena_host (hence the settings file)."""
    sdk = balena.Balena({"data_directory": False, "api_endpoint": "http://127.0.0.1:9/"})
    assert sdk.settings.get("api_endpoint") == "https://api.balena-cloud.com/"

"""Where the API is and which token to send: flags, environment, then the balena CLI's token file.

API URL: ``--api-url``, else ``BALENA_API_URL``, else ``https://api.balena-cloud.com``.
Token: ``BALENA_API_KEY``, else ``BALENA_TOKEN``, else the file the balena CLI keeps after
``balena login`` (``$BALENARC_DATA_DIRECTORY/token``, by default ``~/.balena/token``).
The token never appears in a repr or a message.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bulkops.errors import InputError

__all__ = ["DEFAULT_API_URL", "Settings", "check_api_url", "load_settings", "token_file"]

DEFAULT_API_URL: Final = "https://api.balena-cloud.com"
TOKEN_VARIABLES: Final = ("BALENA_API_KEY", "BALENA_TOKEN")


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """The API root (without ``/v7``), the token, and whether plain http off loopback is allowed."""

    api_url: str
    token: str
    allow_insecure_http: bool = False

    def __repr__(self) -> str:
        insecure = self.allow_insecure_http
        return f"Settings(api_url={self.api_url!r}, token='***', allow_insecure_http={insecure!r})"


def token_file(env: Mapping[str, str], home: Path) -> Path:
    """The balena CLI's token file: ``$BALENARC_DATA_DIRECTORY/token`` or ``~/.balena/token``."""
    data_dir = env.get("BALENARC_DATA_DIRECTORY", "").strip()
    return (Path(data_dir) if data_dir else home / ".balena") / "token"


def load_settings(
    api_url: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    *,
    allow_insecure_http: bool = False,
) -> Settings:
    """Resolve the API URL and the token; ``InputError`` naming every place looked at when no token."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    url = (api_url or env.get("BALENA_API_URL", "").strip() or DEFAULT_API_URL).rstrip("/")
    for name in TOKEN_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return Settings(url, value, allow_insecure_http)
    path = token_file(env, home)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"no API token: BALENA_API_KEY and BALENA_TOKEN are unset, and the balena CLI token file "
            f"{path} cannot be read ({type(exc).__name__})"
        ) from exc
    if value:
        return Settings(url, value, allow_insecure_http)
    raise InputError(
        f"no API token: set BALENA_API_KEY (or BALENA_TOKEN) to a balena API key, or log in with the balena "
        f"CLI so that {path} holds a token"
    )


def check_api_url(api_url: str, *, allow_insecure_http: bool) -> tuple[str, str]:
    """``(origin, path prefix)`` of an API URL; refuses credentials in it and plain http off loopback."""
    try:
        url = urllib.parse.urlsplit(api_url)
        host = url.hostname
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InputError(f"the API URL {api_url!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not host:
        raise InputError(f"the API URL must look like https://api.balena-cloud.com, got {api_url!r}")
    if url.username is not None or url.password is not None:
        raise InputError("the API URL must not contain credentials: give the token in BALENA_API_KEY")
    if url.query or url.fragment:
        raise InputError(f"the API URL must have no query or fragment, got {api_url!r}")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise InputError(
            f"refusing to send the API token over plain http to {host}: use an https:// API URL, "
            "or allow it explicitly with --allow-insecure-http on a trusted network"
        )
    return f"{url.scheme}://{url.netloc}", url.path.rstrip("/")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

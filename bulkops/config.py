"""Where the API is and which token to send: flags, environment, then the balena CLI's own settings.

API URL: ``--api-url``, else ``BALENA_API_URL``, else the balena CLI's ``balenaUrl`` setting as the CLI
reads it (``BALENARC_BALENA_URL``, else ``balenaUrl`` in ``~/.balenarc.yml``), which means
``https://api.<balenaUrl>``, else ``https://api.balena-cloud.com``. The API root is given without a
version: a trailing ``/v7`` is dropped, any other version (``/v6``) is refused.
Token: ``--token-file``, else ``BALENA_API_KEY``, else ``BALENA_TOKEN``, else the file the balena CLI
keeps after ``balena login`` (``$BALENARC_DATA_DIRECTORY/token``, by default ``~/.balena/token``).
The token never appears in a repr or a message.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bulkops.errors import InputError

__all__ = ["DEFAULT_API_URL", "Settings", "api_root", "check_api_url", "load_settings", "token_file"]

DEFAULT_API_URL: Final = "https://api.balena-cloud.com"
TOKEN_VARIABLES: Final = ("BALENA_API_KEY", "BALENA_TOKEN")
_VERSION = re.compile(r"/v(\d+)$")


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


def api_root(url: str, *, source: str) -> str:
    """``url`` without a trailing ``/`` or ``/v7``; a URL naming another API version is refused."""
    root = url.strip().rstrip("/")
    m = _VERSION.search(root)
    if m and m.group(1) == "7":
        return root[: m.start()]
    if m:
        raise InputError(
            f"the API URL {url!r} (from {source}) ends in /v{m.group(1)}: bulkops speaks balena API v7 and "
            f"adds the version itself; give the API root, e.g. {root[: m.start()] or DEFAULT_API_URL!r}"
        )
    return root


def _api_url(api_url: str | None, env: Mapping[str, str], home: Path) -> str:
    if api_url:
        return api_root(api_url, source="--api-url")
    if env.get("BALENA_API_URL", "").strip():
        return api_root(env["BALENA_API_URL"], source="BALENA_API_URL")
    found = balena_url(env, home)
    if found is not None:
        value, source = found
        return api_root(f"https://api.{value}", source=source)
    return DEFAULT_API_URL


def _read_token_file(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"the token file {path} does not exist (given with --token-file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"the token file {path} cannot be read ({type(exc).__name__})") from None
    if not value:
        raise InputError(f"the token file {path} is empty (given with --token-file)")
    if any(c.isspace() for c in value):
        raise InputError(f"the token file {path} holds more than one word: it must hold the API key alone")
    return value


def load_settings(
    api_url: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    *,
    allow_insecure_http: bool = False,
    token_path: str | Path | None = None,
) -> Settings:
    """Resolve the API URL and the token; ``InputError`` naming every place looked at when no token."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    url = _api_url(api_url, env, home)
    if token_path is not None:
        return Settings(url, _read_token_file(Path(token_path)), allow_insecure_http)
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


# --- the balena CLI's settings file ----------------------------------------------------------------

BALENARC: Final = ".balenarc.yml"
_YAML_KEY = re.compile(r"""^(?:balenaUrl|'balenaUrl'|"balenaUrl")[ \t]*:(?:[ \t]+(.*?))?[ \t]*$""")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?")


def _yaml_scalar(raw: str) -> str | None:
    """A one-line YAML scalar: plain (an optional `` #`` comment after it), '…' or "…" without escapes;
    None when it is anything else (a block, a flow collection, an alias, an escape sequence)."""
    if raw[:1] == "'":
        m = re.fullmatch(r"'((?:[^']|'')*)'[ \t]*(?:#.*)?", raw)
        return m.group(1).replace("''", "'") if m else None
    if raw[:1] == '"':
        m = re.fullmatch(r'"([^"\\]*)"[ \t]*(?:#.*)?', raw)
        return m.group(1) if m else None
    plain = re.split(r"[ \t]+#", raw, maxsplit=1)[0].strip()
    if not plain or plain[0] in "[]{}&*!|>%@`#,?:-" or ": " in plain:
        return None
    return plain


def balena_url(env: Mapping[str, str], home: Path) -> tuple[str, str] | None:
    """The balena CLI's ``balenaUrl`` and where it came from: ``BALENARC_BALENA_URL``, else the
    ``balenaUrl:`` line of ``~/.balenarc.yml``; None when neither sets it. Read strictly: a line the
    reader does not understand is an error, never a silent fallback to balenaCloud. (A ``balenarc.yml``
    in the working directory, which the balena CLI also reads, is ignored: a checked-out repository
    must not be able to send the token elsewhere.)"""
    value = env.get("BALENARC_BALENA_URL", "").strip()
    source = "BALENARC_BALENA_URL"
    if not value:
        path = home / BALENARC
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the balena CLI settings {path} ({type(exc).__name__})") from None
        source = f"balenaUrl in {path}"
        found = [(n, m.group(1) or "") for n, line in enumerate(text.splitlines(), 1)
                 if (m := _YAML_KEY.match(line))]
        if len(found) > 1:
            raise InputError(f"{path}: balenaUrl is set twice (lines {found[0][0]} and {found[1][0]})")
        if not found:
            if "balenaUrl" in text:
                raise InputError(f"{path}: cannot read balenaUrl; write it on a line of its own at the top "
                                 "level, e.g. balenaUrl: 'openbalena.example.com'")
            return None
        line, raw = found[0]
        scalar = _yaml_scalar(raw)
        if scalar is None:
            raise InputError(f"{path}, line {line}: balenaUrl must be a plain or quoted domain on one line, "
                             f"e.g. balenaUrl: 'openbalena.example.com', got {raw[:60]!r}")
        value = scalar.strip()
    if not _HOST.fullmatch(value):
        raise InputError(f"{source} must be a domain such as 'balena-cloud.com' (the API is then "
                         f"https://api.<balenaUrl>), got {value[:80]!r}")
    return value, source


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

"""API URL and token resolution: flag, environment, the balena CLI's token file; no token in reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.config import DEFAULT_API_URL, Settings, load_settings
from bulkops.errors import InputError

TOKEN = "tok-5f4dcc3b5aa765d61d8327deb882cf99"


def write_token(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token"
    path.write_text(text, encoding="utf-8")
    return path


def test_api_key_variable_wins(tmp_path: Path) -> None:
    """BALENA_API_KEY is used before BALENA_TOKEN and the token file."""
    write_token(tmp_path / ".balena", "from-file")
    s = load_settings(None, {"BALENA_API_KEY": TOKEN, "BALENA_TOKEN": "other"}, tmp_path)
    assert s == Settings(DEFAULT_API_URL, TOKEN, False)


def test_balena_token_variable(tmp_path: Path) -> None:
    """BALENA_TOKEN is used when BALENA_API_KEY is unset or blank."""
    assert load_settings(None, {"BALENA_API_KEY": " ", "BALENA_TOKEN": TOKEN}, tmp_path).token == TOKEN


def test_cli_token_file(tmp_path: Path) -> None:
    """Without variables, ~/.balena/token (stripped) is read."""
    write_token(tmp_path / ".balena", f"{TOKEN}\n")
    assert load_settings(None, {}, tmp_path).token == TOKEN


def test_balenarc_data_directory(tmp_path: Path) -> None:
    """BALENARC_DATA_DIRECTORY moves the token file."""
    write_token(tmp_path / "data", TOKEN)
    write_token(tmp_path / ".balena", "not-this-one")
    env = {"BALENARC_DATA_DIRECTORY": str(tmp_path / "data")}
    assert load_settings(None, env, tmp_path).token == TOKEN


def test_api_url_order(tmp_path: Path) -> None:
    """--api-url beats BALENA_API_URL, which beats the default; a trailing slash is dropped."""
    env = {"BALENA_API_KEY": TOKEN, "BALENA_API_URL": "https://env.example.com/"}
    assert load_settings(None, env, tmp_path).api_url == "https://env.example.com"
    assert load_settings("https://flag.example.com", env, tmp_path).api_url == "https://flag.example.com"
    assert load_settings(None, {"BALENA_API_KEY": TOKEN}, tmp_path).api_url == DEFAULT_API_URL


def test_allow_insecure_http_is_carried(tmp_path: Path) -> None:
    """The insecure-http choice ends up in the settings."""
    s = load_settings("http://10.0.0.5", {"BALENA_API_KEY": TOKEN}, tmp_path, allow_insecure_http=True)
    assert s.allow_insecure_http is True


def test_no_token_anywhere(tmp_path: Path) -> None:
    """No variable and no file: InputError naming both variables and the file."""
    with pytest.raises(InputError) as info:
        load_settings(None, {}, tmp_path)
    assert str(info.value) == (
        "no API token: set BALENA_API_KEY (or BALENA_TOKEN) to a balena API key, or log in with the balena "
        f"CLI so that {tmp_path / '.balena' / 'token'} holds a token"
    )


def test_empty_token_file(tmp_path: Path) -> None:
    """An empty token file counts as no token."""
    write_token(tmp_path / ".balena", "\n")
    with pytest.raises(InputError, match=r"^no API token: "):
        load_settings(None, {}, tmp_path)


def test_unreadable_token_file(tmp_path: Path) -> None:
    """A token 'file' that cannot be read is reported with its path, never its content."""
    (tmp_path / ".balena" / "token").mkdir(parents=True)
    with pytest.raises(InputError) as info:
        load_settings(None, {}, tmp_path)
    assert str(info.value) == (
        "no API token: BALENA_API_KEY and BALENA_TOKEN are unset, and the balena CLI token file "
        f"{tmp_path / '.balena' / 'token'} cannot be read (IsADirectoryError)"
    )


def test_repr_redacts_the_token(tmp_path: Path) -> None:
    """Settings' repr shows token='***'."""
    s = load_settings(None, {"BALENA_API_KEY": TOKEN}, tmp_path)
    assert repr(s) == f"Settings(api_url='{DEFAULT_API_URL}', token='***', allow_insecure_http=False)"
    assert TOKEN not in repr(s) and TOKEN not in str(s)


def test_defaults_read_the_process_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Called without env and home, the process environment and home directory are used."""
    monkeypatch.setenv("BALENA_API_KEY", TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("BALENA_API_URL", raising=False)
    assert load_settings().token == TOKEN

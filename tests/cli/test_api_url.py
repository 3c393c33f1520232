"""The API URL and the token as balena users give them: a /v7 suffix, another version, --token-file, and
the balena CLI's ~/.balenarc.yml balenaUrl (openBalena) when no flag or variable names the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.cli.main import main
from bulkops.config import DEFAULT_API_URL, load_settings
from bulkops.errors import ExitCode, InputError
from bulkops.sim.server import SimServer
from tests.conftest import human

TOKEN = "tok-5f4dcc3b5aa765d61d8327deb882cf99"
ENV = {"BALENA_API_KEY": TOKEN}

JOB = """name = "j"
[target]
resource = "device"
fleet = "acme/sensor"
[action]
type = "set_env"
name = "X"
value = "1"
"""


@pytest.mark.parametrize("url", ["https://api.example.com/v7", "https://api.example.com/v7/",
                                 "https://api.example.com/"])
def test_a_v7_suffix_is_dropped(tmp_path: Path, url: str) -> None:
    """An API URL ending in /v7 (as balena's docs write it) means its root: bulkops adds /v7 itself."""
    assert load_settings(url, ENV, tmp_path).api_url == "https://api.example.com"


def test_another_version_is_refused(tmp_path: Path) -> None:
    """An API URL ending in /v6 is refused, naming where it came from and the root to give."""
    with pytest.raises(InputError) as info:
        load_settings(None, {**ENV, "BALENA_API_URL": "https://api.example.com/v6"}, tmp_path)
    assert str(info.value) == (
        "the API URL 'https://api.example.com/v6' (from BALENA_API_URL) ends in /v6: bulkops speaks balena"
        " API v7 and adds the version itself; give the API root, e.g. 'https://api.example.com'")


def test_token_file_wins_and_is_checked(tmp_path: Path) -> None:
    """--token-file is read before the variables; a missing, empty or multi-word file is refused by path."""
    good = tmp_path / "key"
    good.write_text(f"{TOKEN}\n")
    assert load_settings(None, {"BALENA_API_KEY": "other"}, tmp_path, token_path=good).token == TOKEN
    for text, message in (("", "is empty (given with --token-file)"),
                          ("a b\n", "holds more than one word: it must hold the API key alone")):
        good.write_text(text)
        with pytest.raises(InputError) as info:
            load_settings(None, ENV, tmp_path, token_path=good)
        assert str(info.value) == f"the token file {good} {message}"
    with pytest.raises(InputError) as info:
        load_settings(None, ENV, tmp_path, token_path=tmp_path / "nope")
    assert str(info.value) == f"the token file {tmp_path / 'nope'} does not exist (given with --token-file)"


@pytest.mark.parametrize("line", ["balenaUrl: 'openbalena.example.com'",
                                  'balenaUrl: "openbalena.example.com"',
                                  "balenaUrl: openbalena.example.com   # our server"])
def test_balenarc_balena_url_is_honoured(tmp_path: Path, line: str) -> None:
    """Without a flag or BALENA_API_URL, ~/.balenarc.yml's balenaUrl gives https://api.<balenaUrl>, as the
    balena CLI does; BALENARC_BALENA_URL beats the file, and BALENA_API_URL beats both."""
    (tmp_path / ".balenarc.yml").write_text(f"# balena CLI settings\ndataDirectory: /tmp/x\n{line}\n")
    assert load_settings(None, ENV, tmp_path).api_url == "https://api.openbalena.example.com"
    env = {**ENV, "BALENARC_BALENA_URL": "other.example.org"}
    assert load_settings(None, env, tmp_path).api_url == "https://api.other.example.org"
    env["BALENA_API_URL"] = "https://api.direct.example.net"
    assert load_settings(None, env, tmp_path).api_url == "https://api.direct.example.net"
    assert load_settings(None, ENV, tmp_path / "elsewhere").api_url == DEFAULT_API_URL


@pytest.mark.parametrize(("text", "message"), [
    ("balenaUrl: [a, b]\n", "{p}, line 1: balenaUrl must be a plain or quoted domain on one line, e.g."
                            " balenaUrl: 'openbalena.example.com', got '[a, b]'"),
    ("balenaUrl:\n  host: x\n", "{p}, line 1: balenaUrl must be a plain or quoted domain on one line, e.g."
                                " balenaUrl: 'openbalena.example.com', got ''"),
    ("balenaUrl: a.com\nbalenaUrl: b.com\n", "{p}: balenaUrl is set twice (lines 1 and 2)"),
    ("{balenaUrl: a.com}\n", "{p}: cannot read balenaUrl; write it on a line of its own at the top level,"
                             " e.g. balenaUrl: 'openbalena.example.com'"),
    ("balenaUrl: https://a.com\n", "balenaUrl in {p} must be a domain such as 'balena-cloud.com' (the API is"
                                   " then https://api.<balenaUrl>), got 'https://a.com'"),
], ids=["flow-list", "block", "twice", "flow-map", "with-scheme"])
def test_balenarc_reader_is_strict(tmp_path: Path, text: str, message: str) -> None:
    """A balenaUrl the tiny reader does not understand is an error naming the file, never balenaCloud."""
    path = tmp_path / ".balenarc.yml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_settings(None, ENV, tmp_path)
    assert str(info.value) == message.format(p=path)


@pytest.fixture
def sim_env(sim: SimServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    monkeypatch.delenv("BALENA_API_URL", raising=False)
    monkeypatch.delenv("BALENA_API_KEY", raising=False)
    monkeypatch.delenv("BALENA_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(home))
    return sim


def test_cli_with_v7_url_and_token_file(sim_env: SimServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --api-url URL/v7 --token-file F` plans against the simulator (no /v7/v7), and the plan records
    the API root."""
    key = tmp_path / "key"
    key.write_text(sim_env.api_key)
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    args = ["plan", str(job), "-o", str(tmp_path / "p.json"), "--api-url", f"{sim_env.url}/v7",
            "--token-file", str(key)]
    assert main(args) == ExitCode.OK
    assert f"api      {sim_env.url}\n" in capsys.readouterr().out
    assert all(not e.url.startswith("/v7/v7") for e in sim_env.request_log.entries())


def test_cli_without_token_names_the_token_file(sim_env: SimServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--token-file pointing nowhere fails with exit 2 before any request."""
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    before = len(sim_env.request_log.entries())
    assert main(["plan", str(job), "--api-url", sim_env.url, "--token-file", str(tmp_path / "k")]) == 2
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the token file {tmp_path / 'k'} does not exist (given with --token-file)\n")
    assert len(sim_env.request_log.entries()) == before


def test_cli_follows_balenarc(sim_env: SimServer, home: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """With only ~/.balenarc.yml naming the server, the CLI's API is https://api.<balenaUrl>: a plan made
    against the simulator is refused there by name, before any request."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".balenarc.yml").write_text("balenaUrl: 'openbalena.example.com'\n")
    key = tmp_path / "key"
    key.write_text(sim_env.api_key)
    job, plan = tmp_path / "job.toml", tmp_path / "p.json"
    job.write_text(JOB)
    assert main(["plan", str(job), "-o", str(plan), "--api-url", sim_env.url, "--token-file", str(key)]) == 0
    capsys.readouterr()
    before = len(sim_env.request_log.entries())
    assert main(["apply", str(plan), "--yes", "--token-file", str(key)]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the plan was made against {sim_env.url}, not https://api.openbalena.example.com;"
        " make a new plan\n")
    assert len(sim_env.request_log.entries()) == before

"""Fuzzing the job-file loader: random and mutated input never crashes it; every refusal is clear."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.errors import InputError, JobFileError
from bulkops.job.load import load_job, parse_job
from bulkops.model import Job

JOBS = sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.toml"))
SOURCES = [p.read_text(encoding="utf-8") for p in JOBS]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "fuzz.toml"


def outcome(text: str) -> Job | InputError:
    """Load ``text``; a refusal must be an InputError whose message names the file."""
    try:
        return parse_job(text, path=NAME)
    except InputError as exc:
        assert str(exc).startswith(f"{NAME}: ")
        assert str(exc) != f"{NAME}: "
        if isinstance(exc, JobFileError):
            assert exc.path == NAME
            assert exc.detail
        return exc


SNIPPETS = st.sampled_from([
    "", " ", "\n", "=", '"', "'", "[", "]", "{", "}", ",", "#", "\\", "0", "-1", "1.10", "true", "nan", "inf",
    "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", '"""', "'''", "\x00", "\r", "é", "🚀", "[[x]]", "a.b",
    "device", "fleet", "set_env", "BALENA_X", "io.balena.k", "90d", "10%", "(", ")", "/any(", "eq", "'x'",
])


@st.composite
def mutated_job(draw: st.DrawFn) -> str:
    """One of the jobs/ files with a few random edits: delete, duplicate, swap, insert or replace."""
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "line", "value"]))
        if op == "delete":
            text = text[:i] + text[i + 1 + draw(st.integers(0, 8)):]
        elif op == "duplicate":
            text = text[:i] + text[i] * draw(st.integers(2, 3)) + text[i + 1:]
        elif op == "swap" and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif op == "insert":
            text = text[:i] + draw(st.one_of(SNIPPETS, st.text(max_size=5))) + text[i:]
        elif op == "line":
            lines = text.split("\n")
            j = draw(st.integers(0, len(lines) - 1))
            lines.insert(j, lines[j]) if draw(st.booleans()) else lines.pop(j)
            text = "\n".join(lines)
        else:
            values = list(re.finditer(r'(?<== )("[^"\n]*"|\d[^\s,}]*|true|false|\[[^\]\n]*\])', text))
            if values:
                m = draw(st.sampled_from(values))
                new = draw(st.one_of(SNIPPETS, st.integers().map(str), st.text(max_size=8).map(repr)))
                text = text[: m.start()] + new + text[m.end():]
    return text


@FUZZ
@given(st.text(max_size=400))
def test_random_text_never_crashes(text: str) -> None:
    """Arbitrary text is either a Job or an InputError naming the file."""
    outcome(text)


@FUZZ
@given(mutated_job())
def test_mutated_examples_never_crash(text: str) -> None:
    """The example jobs with random edits load or are refused with a message naming the file."""
    got = outcome(text)
    if isinstance(got, Job):
        assert got.name
        assert got.target.fleets or got.target.filter or got.target.offline_for


@FUZZ
@given(
    st.lists(st.sampled_from(["name", "target", "action", "options", "expect", "type", "value"]), max_size=6),
    st.lists(st.one_of(SNIPPETS, st.integers().map(str)), max_size=6),
)
def test_toml_shaped_noise_never_crashes(keys: list[str], values: list[str]) -> None:
    """Key/value lines and table headers in random order never crash the loader."""
    lines = []
    for key, value in zip(keys, values, strict=False):
        lines.append(f"[{key}]" if value == "" else f"{key} = {value}")
    outcome("\n".join(lines))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_from_a_file_never_crash(data: bytes) -> None:
    """Any bytes in a job file, UTF-8 or not, load or give an InputError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / NAME
        path.write_bytes(data)
        try:
            load_job(path)
        except InputError as exc:
            assert str(exc).startswith(f"{path}: ")

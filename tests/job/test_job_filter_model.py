"""A job's filter that names only known fields but does not fit the v7 model is refused at validate, with
the job file and key named; `plan` refuses it before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode, FilterModelError, JobFileError
from bulkops.job.load import parse_job
from bulkops.sim.server import SimServer
from tests.conftest import human
from tests.job.test_job_filter import job_with_filter

CASES = [
    ("device_tag/tag_key eq 'ring'",
     "'device_tag' on resource 'device' is a collection (a device has many device_tag rows): a path through "
     "it needs any() or all() (balena answers each device once per matching row); did you mean "
     "device_tag/any(t:t/tag_key eq 'ring')?"),
    ("is_online eq 1",
     "'is_online' on resource 'device' is a boolean (compare it with true or false), got the number 1"),
    ("overall_status eq 'offline'",
     "'overall_status' on resource 'device' never takes the value 'offline' (it takes 'inactive', "
     "'post-provisioning', 'configuring', 'disconnected', 'updating', 'reduced-functionality' or "
     "'operational'; 'offline' is the /v6 value); did you mean 'disconnected'?"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_job_filter_that_does_not_fit_the_model(text: str, message: str) -> None:
    """The filter's model error is a JobFileError on target.filter, caused by FilterModelError."""
    with pytest.raises(JobFileError) as info:
        parse_job(job_with_filter(text), path="job.toml")
    assert str(info.value) == f"job.toml: [target.filter] {message} (in the filter)"
    assert info.value.key == "target.filter"
    assert isinstance(info.value.__cause__, FilterModelError)


@pytest.mark.parametrize(("text", "message"), CASES)
def test_validate_refuses_it_with_one_line(text: str, message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`bulkops validate` exits 2 with one error line naming the file, the key and the fix."""
    job = tmp_path / "job.toml"
    job.write_text(job_with_filter(text))
    assert main(["validate", str(job)]) == ExitCode.INVALID_INPUT
    err = human(capsys.readouterr().err)
    assert err == f"bulkops: error: {job}: [target.filter] {message} (in the filter)\n"


def test_plan_refuses_it_before_any_request(sim: SimServer, home: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`bulkops plan` of such a job exits 2 and sends nothing (it used to fail after six HTTP 500s)."""
    monkeypatch.setenv("BALENA_API_URL", sim.url)
    monkeypatch.setenv("BALENA_API_KEY", sim.api_key)
    job = tmp_path / "job.toml"
    job.write_text(job_with_filter(CASES[0][0]))
    before = len(sim.request_log.entries())
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.INVALID_INPUT
    assert len(sim.request_log.entries()) == before
    assert "did you mean device_tag/any(t:t/tag_key eq 'ring')?" in human(capsys.readouterr().err)
    assert not (tmp_path / "p.json").exists()

"""One-liners (env, tag, move, pin): the job file each stands for, the same loader, plan, preview, guards
and journal as a job file; and plan --detailed-exitcode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.job.load import read_job_text
from bulkops.sim.server import SimServer
from tests.conftest import human, rows

CANARIES = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"


def test_print_job_is_the_equivalent_job_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--print-job prints the job file the one-liner runs, sends nothing, and the loader reads it back."""
    args = ["env", "set", "LOG_LEVEL", 'de"bug', "--service", "main", "--fleet", "acme/gateway",
            "--fleet", "acme/gateway-next", "--filter", CANARIES, "--expect-max", "500", "--print-job"]
    assert main(args) == ExitCode.OK
    text = capsys.readouterr().out
    assert text == (
        "# bulkops env set: the job this one-liner runs\n"
        'name = "env-set-LOG_LEVEL"\n\n'
        "[target]\n"
        'resource = "device"\n'
        'fleets = ["acme/gateway", "acme/gateway-next"]\n'
        f'filter = "{CANARIES}"\n'
        "expect = { max = 500 }\n\n"
        "[action]\n"
        'type = "set_service_env"\n'
        'service = "main"\n'
        'name = "LOG_LEVEL"\n'
        'value = "de\\"bug"\n')
    job = read_job_text(text).job
    assert (job.action.service, job.action.value, job.target.fleets) == (
        "main", 'de"bug', ("acme/gateway", "acme/gateway-next"))


@pytest.mark.parametrize(("args", "action"), [
    (["move", "--to", "acme/gateway-next"], '[action]\ntype = "move"\nto_fleet = "acme/gateway-next"\n'),
    (["pin", "1.5.0"], '[action]\ntype = "pin"\nrelease = "1.5.0"\n'),
    (["tag", "rm", "ring"], '[action]\ntype = "remove_tag"\nkey = "ring"\n'),
    (["env", "rm", "X", "--resource", "fleet"], '[action]\ntype = "remove_env"\nname = "X"\n'),
], ids=["move", "pin", "tag-rm", "env-rm-fleet"])
def test_each_one_liner_prints_its_job(args: list[str], action: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Every one-liner has its job file, ending in the [action] table it stands for."""
    assert main([*args, "--fleet", "acme/gateway", "--print-job"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert text.endswith(action)
    assert read_job_text(text).job.action.type.value in action


def test_a_one_liner_runs_through_plan_preview_and_journal(env: SimServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`tag set` previews, applies, journals a run named after it; `runs --json` lists it."""
    args = ["tag", "set", "channel", "beta", "--fleet", "acme/gateway", "--filter", CANARIES, "--yes"]
    assert main(args) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("plan     ") and "action   set_tag channel=beta on device" in out
    assert "state    done" in out
    tagged = rows(env, "SELECT COUNT(*) FROM device_tag WHERE tag_key = 'channel' AND value = 'beta'")[0][0]
    assert tagged > 0
    assert main(["runs", "--json"]) == ExitCode.OK
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["job"], r["action"], r["counts"]["applied"]) for r in listed] == [
        ("tag-set-channel", "set_tag", tagged)]


def test_one_liners_meet_the_same_guards(env: SimServer, capsys: pytest.CaptureFixture[str]) -> None:
    """expect bounds and the no-selection rule hold for one-liners as for job files."""
    assert main(["env", "set", "X", "1", "--fleet", "acme/gateway", "--expect-max", "3", "--yes"]) == 3
    assert human(capsys.readouterr().err).startswith(
        "bulkops: error: expect.max is 3 but the job targets ")
    assert main(["env", "set", "X", "1", "--yes"]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err) == (
        "bulkops: error: give a selection: --fleet SLUG, --filter ODATA, --uuid UUID, --uuids-file FILE or"
        " --id ID (a one-liner never targets everything)\n")
    assert main(["env", "set", "9X", "1", "--fleet", "acme/gateway", "--yes"]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err) == (
        "bulkops: error: <bulkops env set>: [action.name] invalid env var name '9X': Environment variable"
        " names can only contain alphanumeric characters and underscores.\n")
    assert [e for e in env.request_log.entries() if e.method != "GET"] == []


def test_detailed_exitcode(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --detailed-exitcode: 2 while changes are pending, 0 once there are none, 1 for invalid input
    (which is 2 without the flag)."""
    job = tmp_path / "job.toml"
    job.write_text(f'name = "j"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n'
                   f'filter = "{CANARIES}"\n[action]\ntype = "set_tag"\nkey = "channel"\nvalue = "beta"\n')
    plan = str(tmp_path / "p.json")
    assert main(["plan", str(job), "-o", plan, "--detailed-exitcode"]) == 2
    assert main(["apply", plan, "--yes"]) == ExitCode.OK
    assert main(["plan", str(job), "-o", plan, "--detailed-exitcode"]) == 0
    assert main(["plan", str(job), "-o", plan]) == 0
    one = ["tag", "set", "channel", "beta", "--fleet", "acme/gateway", "--filter", CANARIES, "--plan-only"]
    assert main([*one, "-o", plan, "--detailed-exitcode"]) == 0
    job.write_text(job.read_text().replace('"channel"', '"chan nel"'))
    assert main(["plan", str(job), "--detailed-exitcode"]) == 1
    assert main(["plan", str(job)]) == ExitCode.INVALID_INPUT
    capsys.readouterr()

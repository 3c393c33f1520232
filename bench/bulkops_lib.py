"""bulkops through its library API, for when the ``bulkops`` command cannot run a job here:

    BALENA_API_KEY=... python -m bench.bulkops_lib JOB --api-url URL [--plan-only -o PLAN]

The same pipeline as ``bulkops run JOB --yes``: load the job, plan, check, journal, apply (no preview
printed, no confirmation asked).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from bulkops import check_apply, load_job, make_plan, new_run, open_client, run_plan, write_plan


async def main(job_path: str, api_url: str, token: str, plan_out: str | None) -> int:
    job = load_job(job_path)
    async with open_client(api_url, token, job.options) as client:
        plan = await make_plan(job, client, api_url=api_url)
        if plan_out is not None:
            write_plan(plan, Path(plan_out))
            print(f"planned {len(plan.items)} targets: {plan.counts()}")
            return 0
        check_apply(plan, api_url=api_url)
        journal = new_run(plan)
        try:
            summary = await run_plan(plan, client, journal, handle_signals=False)
        finally:
            journal.close()
    print(
        f"run {summary.run_id}: {summary.state.value} {dict(summary.counts)} requests={summary.requests} "
        f"throttled={summary.throttled} elapsed={summary.elapsed:.2f}"
    )
    return 0 if summary.state.value == "done" else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--plan-only", action="store_true")
    parser.add_argument("-o", "--output", help="plan file (with --plan-only)")
    args = parser.parse_args()
    plan_out = (args.output or "plan.json") if args.plan_only else None
    sys.exit(anyio.run(main, args.job, args.api_url, os.environ["BALENA_API_KEY"], plan_out))


if __name__ == "__main__":
    cli()

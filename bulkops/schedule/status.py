"""What ``bulkops schedule DIR --list`` and ``--status`` show, as data (JSON-ready dicts) and as text.

``--list``: each job's schedule and its next slots, in the job's time zone and in UTC.
``--status``: each job's last slot and its outcome, the next slot, and the skipped slots with reasons;
jobs the store knows that are no longer in the directory are listed too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bulkops.job.schedule import zone
from bulkops.model import Schedule
from bulkops.schedule.jobs import JobDir
from bulkops.schedule.locks import job_running
from bulkops.schedule.slots import due_at, iter_slots, next_slots, slot_key
from bulkops.schedule.store import OPEN, SlotStore

SKIPPED_SHOWN = 20


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def schedule_json(s: Schedule) -> dict[str, Any]:
    return {"cron": s.cron, "timezone": s.timezone, "jitter": _span(s.jitter), "missed": s.missed.value,
            "catch_up": _span(s.catch_up),
            "grow_limit": {"factor": s.grow_limit.factor, "add": s.grow_limit.add}}


def slot_json(job: str, s: Schedule, slot: datetime) -> dict[str, Any]:
    local = slot.astimezone(zone(s.timezone))
    due = due_at(job, s, slot)
    return {"slot": slot_key(slot), "local": local.strftime("%Y-%m-%d %H:%M:%S %Z"), "due": slot_key(due)}


def listing(jobs: JobDir, now: datetime, count: int) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for path, entry in sorted(jobs.files.items()):
        if entry.job is None or entry.job.schedule is None:
            continue
        s = entry.job.schedule
        out.append({"job": entry.job.name, "path": str(path), "schedule": schedule_json(s),
                    "next": [slot_json(entry.job.name, s, t) for t in next_slots(s, now, count)]})
    unscheduled = [str(p) for p, f in sorted(jobs.files.items())
                   if f.job is not None and f.job.schedule is None]
    invalid = [{"path": str(f.path), "error": f.error} for f in jobs.invalid()]
    return {"at": slot_key(now), "jobs": out, "unscheduled": unscheduled, "invalid": invalid}


def listing_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for job in data["jobs"]:
        s = job["schedule"]
        extra = f"  jitter {s['jitter']}" if s["jitter"] != "0s" else ""
        lines.append(f"{job['job']}  ({job['path']})")
        lines.append(f"  cron {s['cron']}  timezone {s['timezone']}  missed {s['missed']}  "
                     f"catch_up {s['catch_up']}{extra}")
        for i, nxt in enumerate(job["next"]):
            due = f"   due {nxt['due']}" if nxt["due"] != nxt["slot"] else ""
            lines.append(f"  {'next' if i == 0 else '    '}  {nxt['local']:<26} {nxt['slot']}{due}")
        if not job["next"]:
            lines.append("  next  (none: the expression names no later time)")
    if data["unscheduled"]:
        names = ", ".join(Path(p).name for p in data["unscheduled"])
        lines.append(f"without a schedule (left alone): {names}")
    for bad in data["invalid"]:
        lines.append(f"invalid: {bad['error']}")
    return "\n".join(lines) if lines else "no job files with a schedule"


def status(jobs: JobDir, store: SlotStore, now: datetime) -> dict[str, Any]:
    scheduled = jobs.scheduled()
    paths = {f.job.name: str(p) for p, f in jobs.files.items() if f.job is not None}
    out: list[dict[str, Any]] = []
    for name in sorted(set(scheduled) | set(store.jobs())):
        job = scheduled.get(name)
        last = store.last(name)
        skipped, total = store.skipped(name, SKIPPED_SHOWN)
        entry: dict[str, Any] = {
            "job": name, "path": paths.get(name, ""), "in_directory": job is not None,
            "schedule": schedule_json(job.schedule) if job is not None and job.schedule else None,
            "last": last.to_json() if last else None, "next": None,
            "skipped_total": total, "skipped": [r.to_json() for r in skipped],
        }
        if last is not None and last.state in OPEN and not job_running(name):
            entry["last"]["note"] = ("no process holds the job: the process that ran this slot ended "
                                     "without finishing it" + (f"; see `bulkops runs` and `bulkops resume "
                                                               f"{last.run_id}`" if last.run_id else ""))
        if job is not None and job.schedule is not None:
            after = max(store.cursor(name) or now, now)
            upcoming = next(iter_slots(job.schedule, after), None)
            entry["next"] = slot_json(name, job.schedule, upcoming) if upcoming else None
        out.append(entry)
    invalid = [{"path": str(f.path), "error": f.error} for f in jobs.invalid()]
    return {"at": slot_key(now), "jobs": out, "invalid": invalid}


def status_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for job in data["jobs"]:
        where = job["path"] or "(no longer in the directory)"
        lines.append(f"{job['job']}  {where}")
        last = job["last"]
        if last is None:
            lines.append("  last     (no slot has run yet)")
        else:
            run = f"  run {last['run_id']}" if last["run_id"] else ""
            lines.append(f"  last     {last['slot']}  {last['state']}{run}")
            if last["detail"]:
                lines.append(f"           {last['detail']}")
            if last.get("note"):
                lines.append(f"           {last['note']}")
        if job["next"] is not None:
            lines.append(f"  next     {job['next']['slot']}  ({job['next']['local']})")
        if job["skipped_total"]:
            shown = len(job["skipped"])
            more = f", newest {shown} shown" if shown < job["skipped_total"] else ""
            total = job["skipped_total"]
            lines.append(f"  skipped  {total} slot{'s' if total != 1 else ''}{more}")
            for r in job["skipped"]:
                lines.append(f"    {r['slot']}  {r['reason']:<10}  {r['detail']}")
    for bad in data["invalid"]:
        lines.append(f"invalid: {bad['error']}")
    return "\n".join(lines) if lines else "no scheduled jobs and no slots recorded"

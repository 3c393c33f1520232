"""The run's progress display: what it says during a rate-limit pause, its ETA from the rate the limiter
learned (on virtual time), JSON progress events off a terminal, and the extra status line for rollouts."""

from __future__ import annotations

import itertools
import json

import anyio
import pytest

from bulkops.api.limiter import AdaptiveLimiter, Ticket
from bulkops.cli.display import RunProgress, Snapshot, estimate_requests, progress_display, render_lines
from bulkops.model import ChangeKind, PlanItem, Progress
from tests.api.test_limiter import LATENCY, FixedWindowServer, VirtualClock


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pause_is_shown_with_its_seconds() -> None:
    """Before any 429 the ETA uses the rate seen so far; once a 429 pauses the limiter the display says
    so and counts down, and shows no ETA until the limit is learned (the burst rate would lie)."""
    clock = Clock()
    limiter = AdaptiveLimiter(clock=clock)
    progress = RunProgress(limiter, total=400, expected_requests=300, clock=clock)
    clock.now += 10
    progress(Progress(100, 400, 90, 0, 10.0))
    lines = render_lines(progress.snapshot())
    assert lines == ["applied 100/400 (25%)   elapsed 0:10   ETA 0:23",  # 210 requests left at 9/s
                     "rate 9.0 req/s (no limit met yet)   in flight 0   429s 0   requests 90"]
    limiter.on_throttled(Ticket(sent_at=clock.now), 7.0)
    lines = render_lines(progress.snapshot())
    assert lines == ["applied 100/400 (25%)   elapsed 0:10   ETA —",
                     "rate — (learning the limit)   in flight 0   429s 1   requests 90",
                     "waiting for the rate limit: 7 s"]
    clock.now += 4.5
    assert render_lines(progress.snapshot())[2] == "waiting for the rate limit: 3 s"
    clock.now += 3
    assert all(not line.startswith("waiting") for line in render_lines(progress.snapshot()))


def test_a_paced_limit_is_shown_as_a_rate() -> None:
    """A limit that answers Retry-After 0 time after time (a token bucket) is paced, not learnt as a
    window: the display says so, with the rate it paces at, and the ETA comes from that rate."""
    clock = Clock()
    limiter = AdaptiveLimiter(clock=clock)
    progress = RunProgress(limiter, total=4000, expected_requests=4000, clock=clock)
    for _ in range(2):
        for _ in range(30):
            limiter.on_success(Ticket(sent_at=clock.now))
        clock.now += 0.3
        limiter.on_throttled(Ticket(sent_at=clock.now), 0)
    stats = limiter.statistics()
    assert stats.estimated_budget is None
    assert stats.rate == pytest.approx(30 / 0.3 * 0.97)  # what got through between the 429s, less 3 %
    clock.now += 5
    progress(Progress(3000, 4000, 3000, 2, 5.6))
    snap = progress.snapshot()
    assert render_lines(snap)[1] == (
        f"rate {stats.rate:.1f} req/s (paced: the limit is a rate, not a window)   in flight 0   429s 2   "
        "requests 3,000")
    assert snap.eta == pytest.approx(1000 / stats.rate)


def test_status_line_for_a_rollout() -> None:
    """set_status adds one line under the numbers (a rollout's stage and gate); None removes it."""
    clock = Clock()
    progress = RunProgress(AdaptiveLimiter(clock=clock), total=10, expected_requests=10, clock=clock)
    progress.set_status("stage 2/4 · gate: waiting for 95 % online")
    assert render_lines(progress.snapshot())[-1] == "stage 2/4 · gate: waiting for 95 % online"
    progress.set_status(None)
    assert len(render_lines(progress.snapshot())) == 2


@pytest.mark.anyio
async def test_eta_comes_from_the_learned_rate() -> None:
    """Against 50 requests per 5 s, once the limiter has learned the limit the display shows it and its
    ETA is the requests left at that rate (virtual time: no real waiting)."""
    clock = VirtualClock()
    server = FixedWindowServer(clock, 50, 5.0)
    limiter = AdaptiveLimiter(max_concurrency=8, clock=clock.time, sleep=clock.sleep)
    progress = RunProgress(limiter, total=1000, expected_requests=1000, clock=clock.time)
    counter = itertools.count()
    done = anyio.Event()
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while next(counter) < 400:
            while True:
                async with limiter.slot() as ticket:
                    await clock.sleep(LATENCY)
                    retry_after = server.handle()
                    if retry_after is None:
                        limiter.on_success(ticket)
                        break
                    limiter.on_throttled(ticket, retry_after)
            sent += 1
            progress(Progress(sent, 1000, len(server.log), 0, clock.now))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive, done)
        for _ in range(8):
            tg.start_soon(worker)
        await done.wait()
        tg.cancel_scope.cancel()
    snap = progress.snapshot()
    assert snap.learned and snap.budget == 50 and snap.window is not None and abs(snap.window - 5.0) < 0.6
    assert snap.rate is not None and 9.0 < snap.rate < 11.0
    assert snap.eta == pytest.approx((1000 - len(server.log)) / snap.rate + snap.waiting)
    assert render_lines(snap)[1].startswith(f"rate {snap.rate:.1f} req/s (learned limit: 50 per ")


def test_render_lines_before_any_rate() -> None:
    """With no rate known yet the display says so instead of guessing."""
    snap = Snapshot(0, 20, 0, 0, 0, None, False, None, None, 0.0, None, 0.2, "")
    assert render_lines(snap) == ["applied 0/20 (0%)   elapsed 0:00   ETA —",
                                  "rate —   in flight 0   429s 0   requests 0"]


def test_expected_requests() -> None:
    """A POST per create; a write and a read-back per batch of changes or deletes sharing their
    after-value."""
    def item(kind: ChangeKind, after: str | None) -> PlanItem:
        return PlanItem(1, "u", kind, "device_tag", 1, None, None if after is None else {"value": after})

    items = [item(ChangeKind.CREATE, "a")] * 3 + [item(ChangeKind.CHANGE, "a")] * 450 + \
            [item(ChangeKind.DELETE, None)] * 10 + [item(ChangeKind.NOOP, "a")] * 99
    assert estimate_requests(items, 200) == 3 + 2 * 3 + 2 * 1


@pytest.mark.anyio
async def test_json_progress_events_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal the display is a bulkops.apply.progress JSON line at the start, every few seconds
    (here every 0.05 s) and at the end; an error of the run comes out unwrapped."""
    limiter = AdaptiveLimiter()
    with pytest.raises(KeyError):
        async with progress_display(limiter, total=5, expected_requests=5, done=1, every=0.05) as (p, _):
            p(Progress(3, 5, 2, 0, 0.1))
            await anyio.sleep(0.18)
            raise KeyError("boom")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {e["event"] for e in events} == {"bulkops.apply.progress"}
    assert len(events) >= 4
    first, last = events[0], events[-1]
    assert (first["done"], last["done"], last["total"], last["requests"]) == (1, 3, 5, 2)


def test_rollout_status_line() -> None:
    """A staged rollout's stage, phase and gate go on the status line the display leaves for them."""
    from bulkops.cli.display import rollout_line  # noqa: PLC0415 - beside the test that needs it
    from bulkops.model import RolloutProgress  # noqa: PLC0415

    assert rollout_line(RolloutProgress(1, 3, "writing", 5)) == "stage 1/3 · writing · 5 targets"
    gating = RolloutProgress(2, 3, "gating", 71, gate_passed=40, gate_failed=2, gate_pending=29, failures=2,
                             attempted=76, allowed=3)
    assert rollout_line(gating) == ("stage 2/3 · gating · 71 targets · gate: 40 passed, 2 failed, 29"
                                    " pending · failures 2 of 76 (tolerated 3)")
    clock = Clock()
    progress = RunProgress(AdaptiveLimiter(clock=clock), total=76, expected_requests=80, clock=clock)
    progress.set_status(rollout_line(gating))
    assert render_lines(progress.snapshot())[-1] == rollout_line(gating)

"""Plan → server: batches and creates through a worker pool, every step journaled, every item an outcome.

Order of work: items left 'sent' by an earlier, interrupted run are read back first; then the pending
items are cut into units (:mod:`bulkops.batches`) and fed by a producer through a bounded memory
object stream to the workers. Each unit journals its request before sending it and its answer and
outcomes after. A failed item is an outcome; only a fatal error (token refused, a Retry-After above
the bound, the journal failing) or a stop request ends the run early: dispatch stops, requests in
flight get ``grace`` seconds to finish, the rest stays pending for ``bulkops resume``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from bulkops.api import readback
from bulkops.api.readback import State
from bulkops.apply.units import Unit, UnitKind, id_filter, make_units
from bulkops.errors import (
    AuthError,
    BulkopsError,
    ConflictError,
    JournalError,
    RemoteError,
    RetryAfterTooLongError,
)
from bulkops.journal.journal import DONE, SENT, Journal, Outcomes
from bulkops.log import get_logger
from bulkops.model import ChangeKind, ItemResult, Outcome, Plan, PlanItem, Progress, RunState, RunSummary
from bulkops.odata.ast import Node, and_, eq
from bulkops.odata.render import render

if TYPE_CHECKING:
    from bulkops.api.client import Client

log = get_logger("bulkops.apply")
FATAL = (AuthError, RetryAfterTooLongError, JournalError)
ProgressCallback = Callable[[Progress], None]


class RunControl:
    """Stop requests from outside the engine (signals, tests). Create it inside the event loop."""

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self.stop_requested = anyio.Event()
        self.abort_requested = anyio.Event()

    def stop(self) -> None:
        """Stop dispatching; in-flight requests get ``grace`` seconds to finish."""
        self.stop_requested.set()

    def abort(self) -> None:
        """Cancel in-flight requests now (their items stay 'sent' and are read back on resume)."""
        self.stop_requested.set()
        self.abort_requested.set()


def _describe(resource: str, filt: Node | None) -> str:
    return f"/{resource}" if filt is None else f"/{resource}?$filter={render(filt)}"


class _Engine:
    def __init__(self, plan: Plan, client: Client, journal: Journal, on_progress: ProgressCallback | None,
                 control: RunControl) -> None:
        self.plan, self.client, self.journal = plan, client, journal
        self.items: tuple[PlanItem, ...] = plan.items
        self.on_progress, self.control = on_progress, control
        self.fatal: BaseException | None = None
        self.done = 0
        self.started = time.monotonic()

    # --- bookkeeping -----------------------------------------------------------------------------

    def record(self, outcomes: list[Outcomes]) -> None:
        if not outcomes:
            return
        self.journal.record(outcomes)
        self.done += len(outcomes)
        for o in outcomes:
            if o.outcome is not Outcome.APPLIED:
                log.info("bulkops.apply.item", index=o.index, outcome=o.outcome.value, status=o.status,
                         error=o.error)
        if self.on_progress is not None:
            stats = self.client.statistics()
            self.on_progress(Progress(self.done, len(self.items), stats.requests, stats.throttled,
                                      time.monotonic() - self.started))

    def _outcome(self, i: int, state: State, status: int | None, err: BaseException | None) -> Outcomes:
        it = self.items[i]
        if state is State.IN_PLACE:
            return Outcomes(i, Outcome.APPLIED, status)
        if state is State.GONE:
            return Outcomes(i, Outcome.DRIFTED, status, "the row no longer exists")
        if state is State.DRIFTED:
            return Outcomes(i, Outcome.DRIFTED, status, "its value is no longer the planned before-value")
        reason = str(err) if err is not None else f"the server did not apply the {it.kind.value}"
        return Outcomes(i, Outcome.FAILED, status if err is None else getattr(err, "status", status), reason)

    # --- requests --------------------------------------------------------------------------------

    def _answered_fatal(self, attempt: int, exc: BaseException) -> None:
        """A request that ended the run: its answer goes in the journal; its items stay 'sent'."""
        if isinstance(exc, RemoteError):
            self.journal.mark_answered(attempt, status=exc.status, error=str(exc))

    async def _send(
        self, unit: Unit, indices: tuple[int, ...], filt: Node
    ) -> tuple[int | None, BaseException | None]:
        method = "DELETE" if unit.change is ChangeKind.DELETE else "PATCH"
        attempt = self.journal.mark_sent(indices, method=method, path=_describe(unit.resource, filt))
        try:
            if unit.change is ChangeKind.DELETE:
                await self.client.delete(unit.resource, filter=filt)
            else:
                assert unit.after is not None
                await self.client.patch(unit.resource, dict(unit.after), filter=filt)
        except FATAL as exc:
            self._answered_fatal(attempt, exc)
            raise
        except RemoteError as exc:
            self.journal.mark_answered(attempt, status=exc.status, error=str(exc))
            return exc.status, exc
        self.journal.mark_answered(attempt, status=200)
        return 200, None

    async def _batch(self, unit: Unit) -> None:
        indices = unit.indices
        outcomes: list[Outcomes] = []
        if unit.kind is UnitKind.CHECKED:
            states = await readback.current_states(self.client, {i: self.items[i] for i in indices})
            ready = []
            for i in indices:
                if states[i] is State.AS_PLANNED:
                    ready.append(i)
                elif states[i] is State.IN_PLACE:
                    already = Outcome.APPLIED if self.items[i].kind is ChangeKind.DELETE else Outcome.NOOP
                    outcomes.append(Outcomes(i, already, None, None))
                else:
                    outcomes.append(self._outcome(i, states[i], None, None))
            self.record(outcomes)
            outcomes = []
            indices = tuple(ready)
            if not indices:
                return
        row_ids = [self.items[i].row_id or 0 for i in indices]
        status, err = await self._send(unit, indices, id_filter(row_ids, unit.condition))
        after = await readback.current_states(self.client, {i: self.items[i] for i in indices})
        self.record([self._outcome(i, after[i], status, err) for i in indices])

    async def _create(self, unit: Unit) -> None:
        (i,) = unit.indices
        it = self.items[i]
        body: dict[str, Any] = {**it.key, **(it.after or {})}
        before = self.journal.item_attempts(i)
        attempt = self.journal.mark_sent([i], method="POST", path=f"/{it.resource}")
        try:
            await self.client.post(it.resource, body)
        except FATAL as exc:
            self._answered_fatal(attempt, exc)
            raise
        except ConflictError as exc:
            self.journal.mark_answered(attempt, status=409, error=str(exc))
            # refused at the very first POST this run ever sent for it: the row was there already
            theirs = before == 0 and getattr(exc, "attempts", 1) == 1
            await self._resolve_create(i, 409, exc, theirs=theirs)
            return
        except RemoteError as exc:
            self.journal.mark_answered(attempt, status=exc.status, error=str(exc))
            await self._resolve_create(i, exc.status, exc)
            return
        self.journal.mark_answered(attempt, status=201)
        self.record([Outcomes(i, Outcome.APPLIED, 201)])

    async def _resolve_create(self, i: int, status: int | None, exc: RemoteError, *,
                              theirs: bool = False) -> None:
        """After a 409 or an unanswered POST: read the row by its natural key. ``theirs``: the row existed
        before this run sent anything for it, so a row as planned is a no-op, not this run's doing."""
        it = self.items[i]
        filt = and_(*[eq(k, v) for k, v in sorted(it.key.items())])
        rows = await self.client.get(it.resource, filter=filt, select=("id", "value"))
        state = readback.classify(it, rows[0] if rows else None)
        if state is State.IN_PLACE:
            self.record([Outcomes(i, Outcome.NOOP if theirs else Outcome.APPLIED, status)])
        elif state is State.DRIFTED:
            self.record([Outcomes(i, Outcome.DRIFTED, status, "a row with another value exists")])
        else:
            self.record([Outcomes(i, Outcome.FAILED, status, str(exc))])

    async def _unit(self, unit: Unit) -> None:
        try:
            if unit.kind is UnitKind.CREATE:
                await self._create(unit)
            else:
                await self._batch(unit)
        except FATAL as exc:
            if self.fatal is None:
                self.fatal = exc
            log.warning("bulkops.apply.stopped", reason=str(exc))
            self.control.stop()
        except RemoteError as exc:  # a read-back failed: the items' outcomes are not known
            left = [i for i in unit.indices if self.journal.item_state(i) != DONE]
            self.record([Outcomes(i, Outcome.FAILED, exc.status, f"could not read back: {exc}")
                         for i in left])

    # --- the run ---------------------------------------------------------------------------------

    async def _resume_sent(self, sent: list[int]) -> None:
        """Items whose request was sent but never answered: read back; retry only what is not in place."""
        states = await readback.current_states(self.client, {i: self.items[i] for i in sent})
        again = [i for i in sent if states[i] is State.AS_PLANNED]
        self.journal.reset(again)
        self.record([self._outcome(i, s, None, None) for i, s in states.items() if s is not State.AS_PLANNED])
        log.info("bulkops.apply.resumed", read_back=len(sent), retry=len(again))

    async def _worker(self, receive: MemoryObjectReceiveStream[Unit]) -> None:
        async with receive:
            async for unit in receive:
                if self.control.stop_requested.is_set():
                    continue
                await self._unit(unit)

    async def _watch(self, scope: anyio.CancelScope) -> None:
        await self.control.stop_requested.wait()
        with anyio.move_on_after(self.control.grace):
            await self.control.abort_requested.wait()
        scope.cancel()

    async def run(self) -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._watch, scope)
                await self._dispatch()
                outer.cancel_scope.cancel()

    async def _dispatch(self) -> None:
        states = self.journal.states()
        self.done = sum(1 for state in states.values() if state == DONE)
        sent = [index for index, state in states.items() if state == SENT]
        if sent:
            await self._resume_sent(sent)
            states = self.journal.states()
        pending = [index for index, state in states.items() if state != DONE]
        units = make_units(self.items, pending, self.plan.options.batch_size, self.client.url_length)
        log.info("bulkops.apply.start", pending=len(pending), units=len(units))
        workers = max(1, min(self.plan.options.max_concurrency, len(units)))
        send, receive = anyio.create_memory_object_stream[Unit](workers)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(self._worker, receive.clone())
            receive.close()
            async with send:
                for unit in units:
                    if self.control.stop_requested.is_set():
                        break
                    await send.send(unit)


async def apply_plan(
    plan: Plan, client: Client, journal: Journal, *, on_progress: ProgressCallback | None = None,
    control: RunControl | None = None,
) -> RunSummary:
    """Apply ``plan`` (already checked by :func:`bulkops.guards.check_apply`), recording everything in
    ``journal``. Also resumes: items the journal has done are skipped, 'sent' ones read back first."""
    control = control or RunControl()
    engine = _Engine(plan, client, journal, on_progress, control)
    journal.lock()
    journal.set_state(RunState.RUNNING)
    started = time.monotonic()
    try:
        await engine.run()
    except* BulkopsError as group:
        engine.fatal = engine.fatal or group.exceptions[0]
    if engine.fatal is not None:
        state, message = RunState.STOPPED, str(engine.fatal)
    elif control.stop_requested.is_set() and any(state != DONE for state in journal.states().values()):
        state, message = RunState.INTERRUPTED, "stop requested: dispatch stopped, journal flushed"
    else:
        state, message = RunState.DONE, ""
    journal.set_state(state, message)
    journal.unlock()
    return summarize(journal, client_stats=client.statistics(), elapsed=time.monotonic() - started,
                     state=state, message=message)


def summarize(journal: Journal, *, client_stats: Any = None, elapsed: float = 0.0,
              state: RunState | None = None, message: str | None = None) -> RunSummary:
    results = tuple(
        ItemResult(j.index, j.target_id, j.label, j.outcome or Outcome.NOT_ATTEMPTED, j.status, j.attempts,
                   j.error)
        for j in journal.items()
    )
    counts: Mapping[str, int] = journal.counts()
    return RunSummary(
        run_id=journal.run_id, state=state or journal.state(), counts=counts, results=results,
        requests=getattr(client_stats, "requests", 0), throttled=getattr(client_stats, "throttled", 0),
        elapsed=elapsed, message=journal.message() if message is None else message,
    )

"""Plan → server: batches and creates through a worker pool, every step journaled, every item an outcome.

Order of work: items left 'sent' by an earlier, interrupted run are read back first; then the pending
items are cut into units (:mod:`bulkops.apply.units`) and fed by a producer through a bounded memory
object stream to the workers. Each unit journals its request before sending it and its answer and
outcomes after. Every PATCH and DELETE is conditional (:mod:`bulkops.apply.conditions`) and read back
once; what it left alone is explained (:mod:`bulkops.apply.drift`). A failed item is an outcome; a write
whose read-back failed stays 'sent' (the change may be on the server) and the run stops for ``resume``
to read it. Only a fatal error (token refused, a Retry-After above the bound, the journal failing) or a
stop request ends the run early: dispatch stops, requests in flight get ``grace`` seconds to finish,
the rest stays pending for ``bulkops resume``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bulkops.api import readback
from bulkops.api.readback import State
from bulkops.apply import drift
from bulkops.apply.conditions import Selection
from bulkops.apply.control import RunControl
from bulkops.apply.control import leaf as inner
from bulkops.apply.units import Unit, UnitKind, make_units
from bulkops.errors import (
    AuthError,
    BulkopsError,
    ConflictError,
    ConnectError,
    InputError,
    JournalError,
    RemoteError,
    RetryAfterTooLongError,
    TransportError,
)
from bulkops.journal.journal import DONE, PLANNED, SENT, Journal, Outcomes
from bulkops.log import get_logger
from bulkops.model import ChangeKind, Outcome, Plan, PlanItem, Progress, RunState, RunSummary
from bulkops.odata.ast import Node, and_, eq
from bulkops.odata.render import render
from bulkops.plan.guards import noun

if TYPE_CHECKING:
    from bulkops.api.client import Client

from bulkops.apply.summary import summarize

__all__ = ["FATAL", "WINDOW", "ProgressCallback", "RecordCallback", "RunControl", "apply_plan"]

log = get_logger("bulkops.apply")
FATAL = (AuthError, RetryAfterTooLongError, JournalError)
ProgressCallback = Callable[[Progress], None]
RecordCallback = Callable[[Sequence[Outcomes]], None]  # every batch of outcomes, as it is journaled
WINDOW = 20_000  # pending items cut into units at a time
BeforeUnit = Callable[[], Awaitable[None]]  # awaited before each unit is dispatched; may call control.stop()


def _describe(resource: str, filt: Node | None) -> str:
    return f"/{resource}" if filt is None else f"/{resource}?$filter={render(filt)}"


class _Engine:
    def __init__(self, plan: Plan, client: Client, journal: Journal, on_progress: ProgressCallback | None,
                 control: RunControl, *, only: Collection[int] | None = None,
                 on_record: RecordCallback | None = None, before_unit: BeforeUnit | None = None) -> None:
        self.plan, self.client, self.journal = plan, client, journal
        self.items: Sequence[PlanItem] = plan.items
        self.on_progress, self.control = on_progress, control
        self.selection = Selection.of(plan.target_resource, plan.precondition)
        self.only = None if only is None else frozenset(only)  # the item indices this apply may dispatch
        self.on_record, self.before_unit = on_record, before_unit
        self.fatal: BaseException | None = None
        self.unread_error = ""  # the last read-back that failed after a write was answered
        self.done = 0
        self.started = time.monotonic()

    # --- bookkeeping -----------------------------------------------------------------------------

    def record(self, outcomes: list[Outcomes]) -> None:
        if not outcomes:
            return
        self.journal.record(outcomes)
        self.done += len(outcomes)
        if self.on_record is not None:
            self.on_record(outcomes)
        for o in outcomes:
            if o.outcome is not Outcome.APPLIED:
                log.info("bulkops.apply.item", index=o.index, outcome=o.outcome.value, status=o.status,
                         error=o.error)
        if self.on_progress is not None:
            stats = self.client.statistics()
            self.on_progress(Progress(self.done, len(self.items), stats.requests, stats.throttled,
                                      time.monotonic() - self.started))

    def _outcome(self, i: int, state: State, row: Mapping[str, Any] | None, status: int | None,
                 err: BaseException | None) -> Outcomes:
        return drift.outcome(i, self.items[i], state, row, status=status, err=err)

    def _unread(self, indices: tuple[int, ...], exc: RemoteError, err: BaseException | None) -> None:
        """A read-back after a write failed. A write the server refused changed nothing: failed, with the
        refusal. Otherwise the change may be on the server: the items stay 'sent' for resume to read."""
        if isinstance(err, RemoteError) and err.status is not None and not 200 <= err.status < 300:
            self.record([Outcomes(i, Outcome.FAILED, err.status, str(err)) for i in indices])
            return
        self.unread_error = str(exc)
        log.warning("bulkops.apply.unread", items=len(indices), reason=str(exc))

    # --- requests --------------------------------------------------------------------------------

    def _answered_fatal(self, attempt: int, exc: BaseException) -> None:
        """A request that ended the run: its answer goes in the journal; its items stay 'sent'."""
        if isinstance(exc, RemoteError):
            self.journal.mark_answered(attempt, status=exc.status, error=str(exc))

    async def _send(self, unit: Unit) -> tuple[int | None, BaseException | None]:
        method = "DELETE" if unit.change is ChangeKind.DELETE else "PATCH"
        filt = unit.filter
        assert filt is not None
        attempt = self.journal.mark_sent(unit.indices, method=method, path=_describe(unit.resource, filt))
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
        """One conditional write, then one read-back: the server itself left alone what changed."""
        if unit.kind is UnitKind.UNCOMPARABLE:
            self.record([Outcomes(i, Outcome.FAILED, None, drift.UNCOMPARABLE) for i in unit.indices])
            return
        status, err = await self._send(unit)
        items = {i: self.items[i] for i in unit.indices}
        try:
            found = await readback.current_rows(self.client, items)
        except FATAL:
            raise
        except RemoteError as exc:
            self._unread(unit.indices, exc, err)
            return
        unexplained = {i: items[i] for i, (state, _) in found.items()
                       if state is State.AS_PLANNED and err is None and self.selection is not None}
        self.record([self._outcome(i, state, row, status, err) for i, (state, row) in found.items()
                     if i not in unexplained])
        if not unexplained:
            return
        assert self.selection is not None
        try:
            reasons = await drift.explain(self.client, self.selection, unexplained)
        except FATAL:
            raise
        except RemoteError as exc:
            self._unread(tuple(unexplained), exc, None)
            return
        self.record([Outcomes(i, Outcome.DRIFTED, status, reasons[i]) if i in reasons
                     else self._outcome(i, State.AS_PLANNED, None, status, None) for i in unexplained])

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
            await self._settle_create(i, 409, exc, None, theirs=theirs)
        except TransportError as exc:  # never sent (ConnectError): left for resume; else read, resend if gone
            self.journal.mark_answered(attempt, status=None, error=str(exc))
            if isinstance(exc, ConnectError):
                self.journal.reset([i])
                self.unread_error = str(exc)
            elif await self._settle_create(i, None, exc, exc, again=True):
                await self._create(unit)
        except RemoteError as exc:
            self.journal.mark_answered(attempt, status=exc.status, error=str(exc))
            await self._settle_create(i, exc.status, exc, exc)
        else:
            self.journal.mark_answered(attempt, status=201)
            self.record([Outcomes(i, Outcome.APPLIED, 201)])

    async def _settle_create(self, i: int, status: int | None, exc: RemoteError, refusal: RemoteError | None,
                             *, theirs: bool = False, again: bool = False) -> bool:
        """After a 409 or an unanswered POST: read the row by its natural key (``again``: True, nothing
        recorded, if it is absent). ``theirs``: it was there before this run sent anything: a no-op."""
        it = self.items[i]
        filt = and_(*[eq(k, v) for k, v in sorted(it.key.items())])
        try:
            rows = await self.client.get(it.resource, filter=filt, select=("id", "value"))
        except FATAL:
            raise
        except RemoteError as read_error:  # a 409 means a row exists: maybe ours; resume reads it
            self._unread((i,), read_error, refusal)
            return False
        row = rows[0] if rows else None
        state = readback.classify(it, row)
        if state is State.IN_PLACE:
            self.record([Outcomes(i, Outcome.NOOP if theirs else Outcome.APPLIED, status)])
        elif state is State.DRIFTED:
            self.record([self._outcome(i, state, row, status, None)])
        elif again and self.journal.item_attempts(i) < self.plan.options.max_attempts:
            return True
        else:
            self.record([Outcomes(i, Outcome.FAILED, status, str(exc))])
        return False

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

    # --- the run ---------------------------------------------------------------------------------

    async def _resume_sent(self, sent: list[int]) -> None:
        """Items whose request was sent but never answered: read back; retry only what is not in place."""
        found = await readback.current_rows(self.client, {i: self.items[i] for i in sent})
        again = [i for i in sent if found[i][0] is State.AS_PLANNED]
        self.journal.reset(again)
        self.record([self._outcome(i, state, row, None, None) for i, (state, row) in found.items()
                     if state is not State.AS_PLANNED])
        log.info("bulkops.apply.resumed", read_back=len(sent), retry=len(again))

    def _skip(self) -> None:
        """Items the plan marks skipped (an undo or retry of a target deleted since): recorded, never sent."""
        reasons = {i: it.skip for i, it in enumerate(self.items) if it.skip}
        if not reasons:
            return
        have = {j.index: j.outcome for j in self.journal.iter_items(reasons)}
        self.journal.record([Outcomes(i, Outcome.SKIPPED, None, why) for i, why in reasons.items()
                             if have.get(i) is not Outcome.SKIPPED])

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

    def _mine(self, indices: list[int]) -> list[int]:
        """Those of ``indices`` this apply dispatches: not skipped, and in ``only`` when it is given."""
        return [i for i in indices if (self.only is None or i in self.only) and not self.items[i].skip]

    async def _dispatch(self) -> None:
        self._skip()
        self.done = self.journal.tally()[DONE]
        sent = self._mine(self.journal.indices(state=SENT))
        if sent:
            await self._resume_sent(sent)
        workers = max(1, self.plan.options.max_concurrency)
        send, receive = anyio.create_memory_object_stream[Unit](workers)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(self._worker, receive.clone())
            receive.close()
            async with send:
                await self._feed(send)

    async def _feed(self, send: MemoryObjectSendStream[Unit]) -> None:
        """The pending items, a window of ``WINDOW`` indices at a time from the journal, cut into units and
        sent to the workers: the units of one window are all that is held beside the workers' own."""
        after, units_made, pending_seen = -1, 0, 0
        log.info("bulkops.apply.start", pending=self.journal.left())
        while not self.control.stop_requested.is_set():
            window = self.journal.indices(not_state=DONE, after=after, limit=WINDOW)
            if not window:
                break
            after = window[-1]
            pending = self._mine(window)
            units = make_units(self.items, pending, self.plan.options.batch_size, self.client.url_length,
                               selection=self.selection)
            pending_seen, units_made = pending_seen + len(pending), units_made + len(units)
            for unit in units:
                if self.before_unit is not None:
                    await self.before_unit()
                if self.control.stop_requested.is_set():
                    break
                await send.send(unit)
        log.info("bulkops.apply.dispatched", pending=pending_seen, units=units_made)

    def final_state(self) -> tuple[RunState, str]:
        """How the run ended: stopped by a fatal error, interrupted, stopped with writes not read back,
        or done."""
        if self.fatal is not None:
            return RunState.STOPPED, str(self.fatal)
        tally = self.journal.tally()
        if not tally[PLANNED] and not tally[SENT]:
            return RunState.DONE, ""
        if self.control.stop_requested.is_set():
            return RunState.INTERRUPTED, "stop requested: dispatch stopped, journal flushed"
        if self.only is None:
            left, sent = tally[PLANNED] + tally[SENT], tally[SENT]
        else:
            mine = self.journal.iter_items(self.only)
            states = [j.state for j in mine if j.state != DONE]
            left, sent = len(states), states.count(SENT)
        why = f" ({self.unread_error})" if self.unread_error else ""
        if sent:
            return RunState.STOPPED, (f"{noun('target', sent)} {'was' if sent == 1 else 'were'} written but "
                                      f"could not be read back; resume the run to read them back{why}")
        if self.only is not None and not left:
            return RunState.RUNNING, ""  # one stage of a rollout is done: the rollout decides what follows
        return RunState.STOPPED, f"{noun('target', left)} not attempted{why}"


async def apply_plan(
    plan: Plan, client: Client, journal: Journal, *, on_progress: ProgressCallback | None = None,
    control: RunControl | None = None, only: Collection[int] | None = None,
    on_record: RecordCallback | None = None, before_unit: BeforeUnit | None = None,
) -> RunSummary:
    """Apply ``plan`` (already checked by :func:`bulkops.guards.check_apply`), recording everything in
    ``journal``. Also resumes: items the journal has done are skipped, 'sent' ones read back first.

    Whatever happens, the run ends with a state and its lock released: an exception nothing expected
    leaves it ``stopped`` (``internal error: …``) and reaches the caller; cancellation leaves it
    ``interrupted``.


    ``only`` limits the apply to those item indices (one rollout stage; the run stays ``running`` while
    other items are left); ``on_record`` sees every batch of outcomes as it is journaled; ``before_unit``
    is awaited before each unit is dispatched. A rollout plan is applied by
    :func:`bulkops.apply.rollout.apply_rollout`, stage by stage, never here in one go."""
    if plan.rollout is not None and only is None:
        raise InputError("the plan is a staged rollout: apply it with run_plan or apply_rollout, which run "
                         "one stage at a time with its gates")
    control = control or RunControl()
    engine = _Engine(plan, client, journal, on_progress, control, only=only, on_record=on_record,
                     before_unit=before_unit)
    journal.lock()
    started = time.monotonic()
    state, message = RunState.STOPPED, "internal error"
    try:
        journal.set_state(RunState.RUNNING)
        try:
            await engine.run()
        except* BulkopsError as group:
            engine.fatal = engine.fatal or group.exceptions[0]
        state, message = engine.final_state()
    except BaseException as exc:
        leaf = inner(exc)
        if isinstance(leaf, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
            state, message = RunState.INTERRUPTED, "cancelled: dispatch stopped, journal flushed"
            raise
        state, message = RunState.STOPPED, (
            str(leaf) if isinstance(leaf, BulkopsError) else f"internal error: {type(leaf).__name__}: {leaf}")
        log.error("bulkops.apply.crashed", error=message)  # noqa: TRY400 - the caller gets the traceback
        if leaf is not exc and isinstance(leaf, Exception):
            raise leaf from exc
        raise
    finally:
        try:
            journal.set_state(state, message)
        finally:
            journal.unlock()
    return summarize(journal, client_stats=client.statistics(), elapsed=time.monotonic() - started,
                     state=state, message=message)

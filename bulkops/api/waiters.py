"""The requests waiting for the limiter, first come first served, none of them polling.

Only the head of the line waits for something to happen — a time (a pause, the next send of a window's
budget) or an answer (a window's first request, or one at a time past the first window's count). The
others sleep until it is their turn, or until a pause changes and each may have to give up. So a
request wakes about once per request admitted before it, however many are waiting.
"""

from __future__ import annotations

from collections import deque

import anyio


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()


class Waiters:
    """The line of requests waiting to be let through; ``wakeups`` counts every time one woke up."""

    def __init__(self) -> None:
        self._line: deque[_Waiter] = deque()
        self._released: anyio.Event | None = None
        self.wakeups = 0

    def join(self) -> _Waiter:
        waiter = _Waiter()
        self._line.append(waiter)
        return waiter

    def is_head(self, waiter: _Waiter) -> bool:
        return self._line[0] is waiter

    async def wait_turn(self, waiter: _Waiter) -> None:
        """Sleep until the waiter is the head of the line, or a pause changed."""
        await waiter.event.wait()
        waiter.event = anyio.Event()
        self.wakeups += 1

    async def wait_answer(self) -> None:
        """Sleep until a request in flight leaves its slot."""
        if self._released is None:
            self._released = anyio.Event()
        await self._released.wait()
        self.wakeups += 1

    def leave(self, waiter: _Waiter) -> None:
        """The waiter was let through or gave up; the next one is woken if it is now the head."""
        head = self._line[0] is waiter
        self._line.remove(waiter)
        if head and self._line:
            self._line[0].event.set()

    def released(self) -> None:
        """A slot was released: the head, if it waits for an answer, checks again."""
        released, self._released = self._released, None
        if released is not None:
            released.set()

    def pause_changed(self) -> None:
        """A pause began or grew: every waiter checks whether it may wait that long."""
        for waiter in self._line:
            waiter.event.set()

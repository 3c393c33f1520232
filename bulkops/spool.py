"""A sequence kept on disk: how a plan's items and a run's results stay out of memory.

A plan can hold a million targets; each :class:`~bulkops.model.PlanItem` is about 1.5 KB as Python objects,
a few hundred bytes as JSON. A :class:`Spool` keeps every element encoded in an unlinked temporary file
(mode 0600, gone when the process ends) and in memory only an 8-byte offset per element, so the planner,
the plan file reader, the apply engine and a run's summary hold one page or one batch of decoded elements
at a time whatever the fleet's size. It is written once (``append``), then read as often as wanted:
``len``, indexing, slicing and iteration decode elements on demand.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
V = TypeVar("V")

_READ_AHEAD = 1 << 20  # bytes per read while iterating


class Spool(Sequence[T], Generic[T]):
    """Append-then-read elements encoded one after another in an unlinked temporary file."""

    __slots__ = ("__weakref__", "_decode", "_dirty", "_encode", "_file", "_memo", "_offsets")

    def __init__(self, encode: Callable[[T], bytes], decode: Callable[[bytes], T],
                 items: Iterable[T] = ()) -> None:
        self._encode, self._decode = encode, decode
        self._file = tempfile.TemporaryFile(prefix="bulkops-spool-")  # noqa: SIM115 - lives with the spool
        weakref.finalize(self, self._file.close)  # closed (and gone) with the spool
        self._offsets = array("Q", [0])  # element n is bytes [offsets[n], offsets[n + 1])
        self._dirty = False  # written since the last flush
        self._memo: dict[str, tuple[int, Any]] = {}  # key -> (length when made, value): see derived()
        self.extend(items)

    # --- writing ---------------------------------------------------------------------------------

    def append(self, item: T) -> None:
        self.append_encoded(self._encode(item))

    def append_encoded(self, data: bytes) -> None:
        """Append an element given as the bytes ``encode`` would make of it."""
        self._file.write(data)  # buffered; only ever appended to (reads use pread)
        self._offsets.append(self._offsets[-1] + len(data))
        self._dirty = True

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def _flush(self) -> None:
        if self._dirty:
            self._file.flush()
            self._dirty = False

    # --- reading ---------------------------------------------------------------------------------

    def derived(self, key: str, make: Callable[[Spool[T]], V]) -> V:
        """``make(self)``, made once and kept until an element is appended: for a value computed from
        every element (a plan's counts, its digest) that several steps ask for. Do not change it."""
        kept = self._memo.get(key)
        if kept is not None and kept[0] == len(self):
            value: V = kept[1]
            return value
        value = make(self)
        self._memo[key] = (len(self), value)
        return value

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _raw(self, start: int, end: int) -> bytes:
        self._flush()
        return os.pread(self._file.fileno(), end - start, start)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("spool index out of range")
        return self._decode(self._raw(self._offsets[index], self._offsets[index + 1]))

    def __iter__(self) -> Iterator[T]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[T]:
        """The elements from index ``start`` on, read a megabyte at a time."""
        n, offsets = len(self), self._offsets
        i = max(0, start)
        while i < n:
            j = i + 1
            while j < n and offsets[j + 1] - offsets[i] <= _READ_AHEAD:
                j += 1
            block, base = self._raw(offsets[i], offsets[j]), offsets[i]
            for k in range(i, j):
                yield self._decode(block[offsets[k] - base:offsets[k + 1] - base])
            i = j

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Spool of {len(self)}>"

    def __reduce__(self) -> Any:
        return (_rebuild, (self._encode, self._decode, list(self)))

    def close(self) -> None:
        self._file.close()


def _rebuild(encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], items: list[Any]) -> Spool[Any]:
    return Spool(encode, decode, items)

"""The on-disk sequence that keeps plan items and run results out of memory."""

from __future__ import annotations

import copy
import os
import pickle

import orjson
import pytest

from bulkops.spool import Spool


def ints(values: list[int] | range = ()) -> Spool[int]:  # type: ignore[assignment]
    return Spool(orjson.dumps, orjson.loads, values)


def test_reads_back_what_was_appended_in_order() -> None:
    s = ints(range(5000))
    assert len(s) == 5000
    assert list(s) == list(range(5000))
    assert (s[0], s[4999], s[-1], s[-5000]) == (0, 4999, 4999, 0)
    assert s[10:15] == [10, 11, 12, 13, 14]
    assert s[::1000] == [0, 1000, 2000, 3000, 4000]
    assert list(s.iter_from(4997)) == [4997, 4998, 4999]


def test_out_of_range_is_an_index_error() -> None:
    s = ints([1, 2])
    with pytest.raises(IndexError):
        s[2]
    with pytest.raises(IndexError):
        s[-3]
    assert list(ints()) == [] and len(ints()) == 0


def test_equals_the_sequence_it_holds() -> None:
    assert ints([1, 2, 3]) == (1, 2, 3)
    assert ints([1, 2, 3]) == (1, 2, 3)
    assert ints([1, 2, 3]) != (1, 2)
    assert ints([1, 2, 3]) != [1, 2, 4]
    assert ints([1]) != "x"


def test_reads_interleaved_with_appends_see_every_element() -> None:
    s = ints()
    for n in range(300):
        s.append(n)
        assert s[n] == n and len(s) == n + 1


def test_elements_larger_than_a_read_block() -> None:
    big = "x" * (3 << 20)
    s: Spool[str] = Spool(lambda v: v.encode(), bytes.decode, ["a", big, "b"])
    assert list(s) == ["a", big, "b"]


def test_copies_and_pickles_as_its_elements() -> None:
    s: Spool[int] = Spool(orjson.dumps, orjson.loads, [3, 1, 2])
    assert pickle.loads(pickle.dumps(s)) == [3, 1, 2]
    assert copy.deepcopy(s) == [3, 1, 2]


def test_its_file_has_no_name_and_is_owner_only() -> None:
    s = ints([1])
    fd = s._file.fileno()
    link = os.readlink(f"/proc/self/fd/{fd}")
    assert link.endswith("(deleted)") or (link.startswith("/") and not os.path.exists(link))
    assert os.fstat(fd).st_mode & 0o077 == 0


def test_a_dropped_spool_closes_its_file() -> None:
    s = ints([1])
    fd = s._file.fileno()
    del s
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_derived_value_is_made_once_and_again_after_an_append() -> None:
    """``derived`` keeps what was computed from every element until the spool grows."""
    s = ints(range(10))
    made: list[int] = []

    def total(spool: Spool[int]) -> int:
        made.append(len(spool))
        return sum(spool)

    assert s.derived("total", total) == 45
    assert s.derived("total", total) == 45
    assert made == [10]
    s.append(100)
    assert s.derived("total", total) == 145
    assert made == [10, 11]
    assert s.derived("count", len) == 11  # another key, another value

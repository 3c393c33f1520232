"""Property tests: render and parse are inverse on every tree, and parse fails only with FilterSyntaxError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.errors import FilterSyntaxError
from bulkops.odata import (
    BinOp,
    Call,
    Count,
    In,
    Lambda,
    Literal,
    LiteralKind,
    Node,
    Not,
    Op,
    Path,
    eq,
    parse,
    render,
)
from bulkops.odata.lexer import FUNCTIONS, KEYWORDS

BOUNDED = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies --------------------------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
paths = st.lists(identifiers, min_size=1, max_size=3).map(lambda segs: Path(tuple(segs)))

TRICKY = ["", "'", "''", "a'b", "%", "%25", "&", "#", "+", " ", "a=b;c", "(x)", "O'Brien", "😀", "日本語",
          "\t", "\n", "\\", "/", "$count", "eq", "datetime'x'", "'; drop table device; --"]
strings = st.one_of(
    st.sampled_from(TRICKY),
    st.text(),
    st.text(alphabet=st.sampled_from(list("'%&#+ ()=,;/$@:aZ09\t😀é"))),
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
datetimes = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.one_of(st.just(UTC), offsets)
)
durations = st.builds(
    lambda sign, d, h, m, s: f"{sign}P{d}{'T' if h or m or s else ''}{h}{m}{s}",
    st.sampled_from(["", "-", "+"]),
    st.sampled_from(["", "1D", "30D"]),
    st.sampled_from(["", "2H"]),
    st.sampled_from(["", "0M", "45M"]),
    st.sampled_from(["", "5S", "1.25S"]),
).filter(lambda text: not text.endswith("P"))

literals = st.one_of(
    strings.map(lambda s: Literal(LiteralKind.STRING, s)),
    st.integers().map(lambda n: Literal(LiteralKind.NUMBER, n)),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: Literal(LiteralKind.NUMBER, d)),
    st.booleans().map(lambda v: Literal(LiteralKind.BOOL, v)),
    st.just(Literal(LiteralKind.NULL, None)),
    datetimes.map(lambda v: Literal(LiteralKind.DATETIME, v)),
    st.dates().map(lambda v: Literal(LiteralKind.DATE, v.isoformat())),
    durations.map(lambda v: Literal(LiteralKind.DURATION, v)),
)


def _calls(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def with_arity(item: tuple[str, tuple[int, int]]) -> st.SearchStrategy[Node]:
        name, (low, high) = item
        return st.lists(children, min_size=low, max_size=high).map(lambda args: Call(name, tuple(args)))

    return st.sampled_from(sorted(FUNCTIONS.items())).flatmap(with_arity)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(BinOp, st.sampled_from(list(Op)), children, children),
        st.builds(Not, children),
        st.builds(In, children, st.lists(literals, min_size=1, max_size=4).map(tuple)),
        _calls(children),
        st.builds(Lambda, paths, st.sampled_from(["any", "all"]), identifiers, children),
        st.builds(Count, paths, children),
    )


trees: st.SearchStrategy[Node] = st.recursive(
    st.one_of(literals, paths, st.builds(Count, paths)), _extend, max_leaves=12
)

# --- properties --------------------------------------------------------------------------------


@BOUNDED
@given(trees)
def test_parse_inverts_render(tree: Node) -> None:
    """For every tree, parse(render(tree)) gives the same tree."""
    assert parse(render(tree)) == tree


@BOUNDED
@given(trees)
def test_render_is_canonical(tree: Node) -> None:
    """Rendering the parsed text again yields the same text."""
    text = render(tree)
    assert render(parse(text)) == text


@BOUNDED
@given(strings)
def test_string_literal_survives_exactly(value: str) -> None:
    """Any string, quotes and all, comes back from parse(render(eq('name', s))) exactly."""
    node = parse(render(eq("name", value)))
    assert isinstance(node, BinOp) and isinstance(node.right, Literal)
    assert node.right.kind is LiteralKind.STRING
    assert node.right.value == value


@BOUNDED
@given(st.decimals(allow_nan=False, allow_infinity=False) | st.integers())
def test_numbers_survive_by_value(value: Decimal | int) -> None:
    """Numbers round-trip by value, with no exponent in the text."""
    text = render(eq("n", value))
    assert "E" not in text and "e" not in text.removeprefix("n eq")
    node = parse(text)
    assert isinstance(node, BinOp) and isinstance(node.right, Literal)
    assert node.right.value == value


FILTERISH = st.lists(
    st.sampled_from(
        ["a", "b/c", " ", "eq", " and ", " or ", "not", "(", ")", "'", "''", ",", "in", "1", "-2.5", ":",
         "/any(", "/$count", "tolower(", "datetime'", "2020-01-01T00:00:00Z", "null", "$filter=", "@", "#"]
    ),
    max_size=30,
).map("".join)


@BOUNDED
@given(st.one_of(st.text(), FILTERISH))
def test_parse_fails_only_with_filter_syntax_error(text: str) -> None:
    """Arbitrary text either parses or raises FilterSyntaxError with a position inside the text."""
    try:
        parse(text)
    except FilterSyntaxError as exc:
        assert 0 <= exc.position <= len(text)
        assert exc.text == text

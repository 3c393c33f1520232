"""bulkops.odata.parse: balena's $filter dialect, accepted forms and rejected forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

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
    lit,
    parse,
    path,
)


def b(op: Op, left: Node, right: Node) -> BinOp:
    return BinOp(op, left, right)


A, B, C, D = path("a"), path("b"), path("c"), path("d")
ONE, TWO = lit(1), lit(2)


# --- forms the balena API accepts --------------------------------------------------------------

ACCEPTED: list[tuple[str, Node]] = [
    ("id eq 5", eq("id", 5)),
    ("id ne 5", b(Op.NE, path("id"), lit(5))),
    ("id gt 5", b(Op.GT, path("id"), lit(5))),
    ("id ge 5", b(Op.GE, path("id"), lit(5))),
    ("id lt 5", b(Op.LT, path("id"), lit(5))),
    ("id le 5", b(Op.LE, path("id"), lit(5))),
    ("id eq 1 and id eq 2", b(Op.AND, eq("id", 1), eq("id", 2))),
    ("id eq 1 or id eq 2", b(Op.OR, eq("id", 1), eq("id", 2))),
    ("not(id eq 1)", Not(eq("id", 1))),
    ("not (id eq 1)", Not(eq("id", 1))),
    ("not is_online", Not(path("is_online"))),
    ("id in (1,3,5)", In(path("id"), (lit(1), lit(3), lit(5)))),
    ("id in (1, 3, 5)", In(path("id"), (lit(1), lit(3), lit(5)))),
    ("device_name in ('a','b')", In(path("device_name"), (lit("a"), lit("b")))),
    ("id in (7)", In(path("id"), (lit(7),))),
    ("startswith(device_name,'gw')", Call("startswith", (path("device_name"), lit("gw")))),
    ("endswith(device_name,'-01')", Call("endswith", (path("device_name"), lit("-01")))),
    ("contains(device_name,'x')", Call("contains", (path("device_name"), lit("x")))),
    ("substringof('x',device_name)", Call("substringof", (lit("x"), path("device_name")))),
    ("tolower(device_name) eq 'gw'", b(Op.EQ, Call("tolower", (path("device_name"),)), lit("gw"))),
    ("now() gt created_at", b(Op.GT, Call("now", ()), path("created_at"))),
    ("substring(a, 1, 2) eq 'x'", b(Op.EQ, Call("substring", (A, ONE, TWO)), lit("x"))),
    ("replace(a,'x','y') eq 'z'", b(Op.EQ, Call("replace", (A, lit("x"), lit("y"))), lit("z"))),
    ("isof(a)", Call("isof", (A,))),
    (
        "belongs_to__application/any(a:a/app_name eq 'fleet')",
        Lambda(path("belongs_to__application"), "any", "a", eq("a/app_name", "fleet")),
    ),
    (
        "device_tag/all(t: t/value ne '')",
        Lambda(path("device_tag"), "all", "t", b(Op.NE, path("t/value"), lit(""))),
    ),
    ("device_tag/any(dau:true)", Lambda(path("device_tag"), "any", "dau", lit(True))),
    (
        "owns__device/any(d:d/device_tag/any(t:t/tag_key eq 'k'))",
        Lambda(path("owns__device"), "any", "d",
               Lambda(path("d/device_tag"), "any", "t", eq("t/tag_key", "k"))),
    ),
    ("belongs_to__application/app_name eq 'fleet'", eq("belongs_to__application/app_name", "fleet")),
    ("belongs_to__application eq 2", eq("belongs_to__application", 2)),
    ("note eq null", eq("note", None)),
    ("note ne null", b(Op.NE, path("note"), lit(None))),
    ("is_online eq true", eq("is_online", True)),
    ("is_online eq false", eq("is_online", False)),
    ("created_at gt '2020-01-01T00:00:00Z'", b(Op.GT, path("created_at"), lit("2020-01-01T00:00:00Z"))),
    (
        "created_at gt datetime'2020-01-01T00:00:00Z'",
        b(Op.GT, path("created_at"), lit(datetime(2020, 1, 1, tzinfo=UTC))),
    ),
    (
        "created_at gt datetime'2020-01-01T02:30:00.25+02:30'",
        b(Op.GT, path("created_at"), lit(datetime(2020, 1, 1, 0, 0, 0, 250000, tzinfo=UTC))),
    ),
    (
        "created_at gt datetime'2020-01-01T00:00-0100'",
        b(Op.GT, path("created_at"), lit(datetime(2020, 1, 1, 1, 0, tzinfo=UTC))),
    ),
    ("d eq date'2020-02-29'", b(Op.EQ, D, Literal(LiteralKind.DATE, "2020-02-29"))),
    ("d eq duration'P1DT2H3M4.5S'", b(Op.EQ, D, Literal(LiteralKind.DURATION, "P1DT2H3M4.5S"))),
    ("d eq duration'-PT1M'", b(Op.EQ, D, Literal(LiteralKind.DURATION, "-PT1M"))),
    ("name eq 'O''Brien'", eq("name", "O'Brien")),
    ("name eq ''''", eq("name", "'")),
    ("name eq ''", eq("name", "")),
    ("name eq '50% & #1 + a=b; (x)'", eq("name", "50% & #1 + a=b; (x)")),
    ("name eq 'héllo 🚀'", eq("name", "héllo 🚀")),
    ("a eq -5", eq("a", -5)),
    ("a eq +5", eq("a", 5)),
    ("a eq 1.50", eq("a", Decimal("1.50"))),
    ("a eq -0.5", eq("a", Decimal("-0.5"))),
    ("a sub -1 eq 0", b(Op.EQ, b(Op.SUB, A, lit(-1)), lit(0))),
    ("owns__device/$count gt 2", b(Op.GT, Count(path("owns__device")), TWO)),
    (
        "owns__device/$count($filter=is_online eq true) ge 1",
        b(Op.GE, Count(path("owns__device"), eq("is_online", True)), ONE),
    ),
    ("(a)", A),
    ("((a eq 1))", eq("a", 1)),
    ("\ta eq 1\t", eq("a", 1)),
    ("_x1/Y_2 eq 1", eq("_x1/Y_2", 1)),
    ("date eq 1", eq("date", 1)),
    ("date(created_at) eq date'2020-01-01'", b(
        Op.EQ, Call("date", (path("created_at"),)), Literal(LiteralKind.DATE, "2020-01-01"))),
    ("a/any eq 1", eq("a/any", 1)),
]


@pytest.mark.parametrize(("text", "tree"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted_forms_parse_to_the_expected_tree(text: str, tree: Node) -> None:
    """Every $filter form balena accepts parses to its tree."""
    assert parse(text) == tree


def test_datetime_value_is_aware_utc() -> None:
    """A datetime literal with an offset becomes the same instant in UTC."""
    node = parse("t eq datetime'2020-06-01T12:00:00.123456-05:00'")
    assert isinstance(node, BinOp) and isinstance(node.right, Literal)
    value = node.right.value
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)
    assert value == datetime(2020, 6, 1, 17, 0, 0, 123456, tzinfo=UTC)


def test_integer_and_decimal_types() -> None:
    """Numbers without a point are ints; with a point, Decimals keeping their digits."""
    assert parse("a eq 10") == BinOp(Op.EQ, A, Literal(LiteralKind.NUMBER, 10))
    node = parse("a eq 10.10")
    assert isinstance(node, BinOp) and isinstance(node.right, Literal)
    assert type(node.right.value) is Decimal and str(node.right.value) == "10.10"


# --- precedence: balena's ranks, not OData v4's ------------------------------------------------

PRECEDENCE: list[tuple[str, Node]] = [
    ("a or b and c", b(Op.AND, b(Op.OR, A, B), C)),
    ("a and b or c", b(Op.OR, b(Op.AND, A, B), C)),
    ("a or (b and c)", b(Op.OR, A, b(Op.AND, B, C))),
    ("a and b and c", b(Op.AND, b(Op.AND, A, B), C)),
    ("a eq 1 or b eq 2 and c eq 1", b(Op.AND, b(Op.OR, eq("a", 1), eq("b", 2)), eq("c", 1))),
    ("a add b eq c", b(Op.EQ, b(Op.ADD, A, B), C)),
    ("a sub b add c", b(Op.SUB, A, b(Op.ADD, B, C))),
    ("a add b sub c", b(Op.SUB, b(Op.ADD, A, B), C)),
    ("a mul b add c", b(Op.ADD, b(Op.MUL, A, B), C)),
    ("a add b mul c", b(Op.ADD, A, b(Op.MUL, B, C))),
    ("a mod b div c", b(Op.MOD, A, b(Op.DIV, B, C))),
    ("a div b mul c", b(Op.DIV, A, b(Op.MUL, B, C))),
    ("a sub b sub c", b(Op.SUB, b(Op.SUB, A, B), C)),
    ("a eq b eq c", b(Op.EQ, b(Op.EQ, A, B), C)),
    ("not a eq b", b(Op.EQ, Not(A), B)),
    ("not not a", Not(Not(A))),
    ("a eq b in (1)", b(Op.EQ, A, In(B, (ONE,)))),
    ("a in (1) eq b", b(Op.EQ, In(A, (ONE,)), B)),
    ("not a in (1)", In(Not(A), (ONE,))),
    ("a in (1) in (2)", In(In(A, (ONE,)), (TWO,))),
    ("(a add b) mul c", b(Op.MUL, b(Op.ADD, A, B), C)),
]


@pytest.mark.parametrize(("text", "tree"), PRECEDENCE, ids=[t for t, _ in PRECEDENCE])
def test_precedence_follows_balena_ranks(text: str, tree: Node) -> None:
    """and/or share one rank, left to right; sub < add < mod < div < mul; not and in bind one value."""
    assert parse(text) == tree


# --- forms the balena API rejects ---------------------------------------------------------------

REJECTED: list[tuple[str, str, int]] = [
    ("", "empty filter", 0),
    ("   ", "empty filter", 0),
    ("id eq", "expected a value after 'eq'", 5),
    ("id eq 1 and", "expected a value after 'and'", 11),
    ("id eq 1 or ", "expected a value after 'or'", 11),
    ("id eq and", "expected a value after 'eq'", 6),
    ("not", "expected a value after 'not'", 3),
    ("eq 1", "expected a value, found 'eq'", 0),
    ("(id eq 1", "unbalanced parenthesis", 0),
    ("((id eq 1)", "unbalanced parenthesis", 0),
    ("id eq 1)", "unbalanced parenthesis", 7),
    ("tolower(a", "unbalanced parenthesis", 7),
    ("a/any(x:x eq 1", "unbalanced parenthesis", 5),
    ("id in (1,2", "unbalanced parenthesis", 6),
    ("()", "expected a value after '('", 1),
    ("id === 1", "expected an operator, found '='", 3),
    ("id == 1", "expected an operator, found '='", 3),
    ("id eq 1 2", "expected an operator, found '2'", 8),
    ("(a eq 1 b)", "expected an operator or ')', found 'b'", 8),
    ("id in ()", "expected a literal after '('", 7),
    ("id in (1,)", "expected a literal after ','", 9),
    ("id in (a)", "expected a literal after '('", 7),
    ("id in 1", "expected '(' after 'in'", 6),
    ("id in (1;2)", "expected ',' or ')' in the 'in' list, found ';'", 8),
    ("name eq 'abc", "unterminated string literal", 8),
    ("name eq 'it''s", "unterminated string literal", 8),
    ("t gt datetime'2020-01-01", "unterminated string literal", 5),
    ("t gt 2020-01-01T00:00:00Z",
     "unquoted datetime 2020-01-01T00:00:00Z: write datetime'2020-01-01T00:00:00Z'", 5),
    ("t gt 2020-01-01", "unquoted date 2020-01-01: write date'2020-01-01'", 5),
    ("t gt datetime'yesterday'", "invalid datetime literal 'yesterday'", 5),
    ("t gt datetime'2020-13-01T00:00:00Z'", "invalid datetime literal '2020-13-01T00:00:00Z'", 5),
    ("t gt datetime'2020-01-01T00:00:00'",
     "datetime literal '2020-01-01T00:00:00' needs a time zone (Z or ±HH:MM)", 5),
    ("t gt date'2020-02-30'", "invalid date literal '2020-02-30'", 5),
    ("t gt duration'P'", "invalid duration literal 'P'", 5),
    ("t gt duration'P1DT'", "invalid duration literal 'P1DT'", 5),
    ("t gt duration'1D'", "invalid duration literal '1D'", 5),
    ("a eq 5abc", "invalid number '5abc'", 5),
    ("a eq 1.", "invalid number '1.'", 5),
    ("a eq 1e5", "invalid number '1e5'", 5),
    ("a eq .5", "unexpected character '.'", 5),
    ("a eq #", "unexpected character '#'", 5),
    ("a\neq 1", "unexpected character '\n'", 1),
    ("a eq -b", "unexpected character '-'", 5),
    ("foo(a) eq 1", "unknown function 'foo'", 0),
    ("any(x:true)", "unknown function 'any'", 0),
    ("tolower(a,b) eq 'x'", "function 'tolower' takes 1 argument, got 2", 0),
    ("contains(a) eq 'x'", "function 'contains' takes 2 arguments, got 1", 0),
    ("substring(a)", "function 'substring' takes 2 or 3 arguments, got 1", 0),
    ("now(1) gt a", "function 'now' takes no arguments, got 1", 0),
    ("contains(a,)", "expected a value after ','", 11),
    ("contains(a b)", "expected an operator, ',' or ')', found 'b'", 11),
    ("a/tolower(b)", "only any() and all() may follow a navigation, found 'tolower('", 2),
    ("a/any(x)", "expected ':' after the lambda variable 'x'", 7),
    ("a/any(:true)", "expected a lambda variable after 'any('", 6),
    ("a/any()", "expected a lambda variable after 'any('", 6),
    ("a/ eq 1", "expected a name after '/'", 3),
    ("a/and eq 1", "expected a name after '/'", 2),
    ("a/$count($top=1) gt 1", "expected '$filter=' after '$count('", 9),
    ("$count gt 1", "expected a value, found '$count'", 0),
    ("@id eq 1", "expected a value, found '@id'", 0),
    ("a eq 'x' b", "expected an operator, found 'b'", 9),
    ("a eq x'1'", "expected an operator, found ''1''", 6),
    ("Eq eq 1 AND b eq 2", "expected an operator, found 'AND'", 8),
]


@pytest.mark.parametrize(("text", "message", "position"), REJECTED, ids=[t for t, _, _ in REJECTED])
def test_rejected_forms_raise_with_message_and_position(text: str, message: str, position: int) -> None:
    """Malformed filters raise FilterSyntaxError naming what was expected and where."""
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    assert info.value.detail == message
    assert info.value.position == position
    assert info.value.text == text


def test_error_message_shows_the_position() -> None:
    """The full error message points into the text at the offending token."""
    with pytest.raises(FilterSyntaxError) as info:
        parse("id eq 1 and")
    assert str(info.value) == "expected a value after 'and' at position 11: id eq 1 and⟶"


def test_keywords_are_case_sensitive() -> None:
    """Upper-case operator words are names, not operators, as in balena."""
    assert parse("EQ eq 1") == eq("EQ", 1)
    with pytest.raises(FilterSyntaxError) as info:
        parse("a EQ 1")
    assert info.value.detail == "expected an operator, found 'EQ'"
    assert info.value.position == 2


def test_in_keeps_literal_kinds() -> None:
    """The values of an 'in' list keep their own kinds: null, booleans, datetimes, strings."""
    node = parse("a in (null, true, 'x', datetime'2020-01-01T00:00:00Z', 1.5)")
    assert node == In(A, (
        Literal(LiteralKind.NULL, None), lit(True), lit("x"), lit(datetime(2020, 1, 1, tzinfo=UTC)),
        lit(Decimal("1.5")),
    ))


def test_path_segments_split_on_slash() -> None:
    """A navigation path keeps each segment, in order."""
    assert parse("a/b/c eq 1") == BinOp(Op.EQ, Path(("a", "b", "c")), ONE)


def test_nesting_is_bounded() -> None:
    """Nesting deeper than 50 levels is refused with a syntax error, not a RecursionError."""
    assert parse("(" * 49 + "a" + ")" * 49) == A
    text = "(" * 51 + "a" + ")" * 51
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    assert info.value.detail == "filter nested too deeply (more than 50 levels)"
    assert info.value.position == 50


def test_long_flat_chains_parse_without_recursion() -> None:
    """A chain of 5,000 and-ed comparisons parses (left to right) without deep recursion."""
    node = parse(" and ".join(f"id ne {i}" for i in range(5000)))
    depth = 0
    while isinstance(node, BinOp) and node.op is Op.AND:
        assert node.right == BinOp(Op.NE, path("id"), lit(4999 - depth))
        node = node.left
        depth += 1
    assert depth == 4999
    assert node == BinOp(Op.NE, path("id"), lit(0))

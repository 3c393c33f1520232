"""bulkops.odata.render: canonical $filter text that parses back to the same tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

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
    and_,
    any_,
    eq,
    in_,
    lit,
    or_,
    parse,
    path,
    render,
    render_literal,
)

A, B, C = path("a"), path("b"), path("c")


def b(op: Op, left: Node, right: Node) -> BinOp:
    return BinOp(op, left, right)


CANONICAL: list[tuple[Node, str]] = [
    (eq("device_name", "O'Brien"), "device_name eq 'O''Brien'"),
    (eq("note", None), "note eq null"),
    (eq("is_online", True), "is_online eq true"),
    (eq("a", -5), "a eq -5"),
    (eq("a", Decimal("1.50")), "a eq 1.50"),
    (eq("a", Decimal("1E+2")), "a eq 100"),
    (eq("a", Decimal("1E-3")), "a eq 0.001"),
    (in_("id", [1, 2, 3]), "id in (1,2,3)"),
    (and_(eq("a", 1), eq("b", 2), eq("c", 3)), "a eq 1 and b eq 2 and c eq 3"),
    (or_(eq("a", 1), eq("b", 2)), "a eq 1 or b eq 2"),
    (b(Op.AND, b(Op.OR, A, B), C), "(a or b) and c"),
    (b(Op.OR, b(Op.AND, A, B), C), "(a and b) or c"),
    (b(Op.OR, A, b(Op.AND, B, C)), "a or (b and c)"),
    (b(Op.AND, A, b(Op.AND, B, C)), "a and (b and c)"),
    (b(Op.AND, b(Op.AND, A, B), C), "a and b and c"),
    (b(Op.EQ, b(Op.ADD, A, B), C), "a add b eq c"),
    (b(Op.ADD, b(Op.SUB, A, B), C), "(a sub b) add c"),
    (b(Op.SUB, A, b(Op.ADD, B, C)), "a sub (b add c)"),
    (b(Op.SUB, b(Op.ADD, A, B), C), "a add b sub c"),
    (b(Op.MUL, b(Op.ADD, A, B), C), "(a add b) mul c"),
    (b(Op.EQ, b(Op.EQ, A, B), C), "(a eq b) eq c"),
    (b(Op.EQ, A, b(Op.EQ, B, C)), "a eq (b eq c)"),
    (b(Op.AND, Not(eq("a", 1)), B), "not(a eq 1) and b"),
    (b(Op.EQ, Not(A), B), "not(a) eq b"),
    (In(b(Op.ADD, A, B), (lit(1),)), "(a add b) in (1)"),
    (In(Not(A), (lit(1),)), "not(a) in (1)"),
    (b(Op.EQ, A, In(B, (lit(1),))), "a eq b in (1)"),
    (any_("device_tag", "t", and_(eq("t/tag_key", "k"), eq("t/value", "v"))),
     "device_tag/any(t:t/tag_key eq 'k' and t/value eq 'v')"),
    (Lambda(path("device_tag"), "all", "t", lit(True)), "device_tag/all(t:true)"),
    (b(Op.GT, Count(path("owns__device")), lit(2)), "owns__device/$count gt 2"),
    (b(Op.GT, Count(path("owns__device"), eq("is_online", True)), lit(2)),
     "owns__device/$count($filter=is_online eq true) gt 2"),
    (Call("startswith", (path("device_name"), lit("gw"))), "startswith(device_name,'gw')"),
    (b(Op.GT, path("created_at"), Call("now", ())), "created_at gt now()"),
    (eq("t", datetime(2026, 11, 27, 8, 25, 11, 618000, tzinfo=UTC)),
     "t eq datetime'2026-11-27T08:25:11.618Z'"),
    (eq("t", datetime(2026, 11, 27, 8, 25, 11, tzinfo=UTC)),
     "t eq datetime'2026-11-27T08:25:11.000Z'"),
    (eq("t", datetime(2026, 11, 27, 8, 25, 11, 123456, tzinfo=UTC)),
     "t eq datetime'2026-11-27T08:25:11.123456Z'"),
    (eq("t", datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))),
     "t eq datetime'2025-12-31T23:00:00.000Z'"),
    (b(Op.EQ, A, Literal(LiteralKind.DATE, "2020-01-31")), "a eq date'2020-01-31'"),
    (b(Op.EQ, A, Literal(LiteralKind.DURATION, "P1DT2H")), "a eq duration'P1DT2H'"),
]


@pytest.mark.parametrize(("tree", "text"), CANONICAL, ids=[t for _, t in CANONICAL])
def test_canonical_text_and_round_trip(tree: Node, text: str) -> None:
    """Each tree renders to its canonical text, which parses back to the same tree."""
    assert render(tree) == text
    assert parse(text) == tree


def test_and_or_mix_never_relies_on_precedence() -> None:
    """Mixed and/or always carries parentheses, so both balena and OData v4 read it the same."""
    tree = and_(eq("a", 1), or_(eq("b", 2), eq("c", 3)))
    assert render(tree) == "a eq 1 and (b eq 2 or c eq 3)"
    tree = or_(and_(eq("a", 1), eq("b", 2)), eq("c", 3))
    assert render(tree) == "(a eq 1 and b eq 2) or c eq 3"


def test_render_literal_quotes_by_doubling() -> None:
    """render_literal doubles single quotes and leaves every other character alone."""
    assert render_literal(lit("it's 50% & #1 + x")) == "'it''s 50% & #1 + x'"
    assert render_literal(lit("''")) == "''''''"
    assert render_literal(lit("")) == "''"


NOT_AN_IDENTIFIER = "expected an identifier ([A-Za-z_][A-Za-z0-9_]*) that is not a keyword"
UNRENDERABLE: list[tuple[Node, str]] = [
    (eq("a b", 1), "cannot render the name 'a b': " + NOT_AN_IDENTIFIER),
    (eq("a or id", 1),
     "cannot render the name 'a or id': " + NOT_AN_IDENTIFIER),
    (eq("and", 1), "cannot render the name 'and': " + NOT_AN_IDENTIFIER),
    (b(Op.EQ, Path(()), lit(1)), "cannot render an empty path"),
    (eq("t", datetime(2020, 1, 1)),
     "cannot render the naive datetime 2020-01-01T00:00:00: give it a time zone"),
    (eq("a", Decimal("NaN")), "cannot render the number NaN: only finite numbers exist in OData"),
    (b(Op.EQ, A, Literal(LiteralKind.NUMBER, True)), "cannot render a number literal holding True"),
    (b(Op.EQ, A, Literal(LiteralKind.STRING, 5)), "cannot render a string literal holding 5"),
    (b(Op.EQ, A, Literal(LiteralKind.DATE, "2020-1-1")), "cannot render a date literal holding '2020-1-1'"),
    (b(Op.EQ, A, Literal(LiteralKind.DURATION, "1 day")), "cannot render a duration literal holding '1 day'"),
    (In(A, ()), "cannot render 'in' with no values: balena rejects 'in ()'"),
    (Call("eval", (A,)), "cannot render the unknown function 'eval'"),
    (Call("tolower", ()), "cannot render tolower() with 0 arguments"),
    (Lambda(A, "some", "x", lit(True)), "cannot render the lambda kind 'some': expected 'any' or 'all'"),
    (Lambda(A, "any", "x y", lit(True)),
     "cannot render the lambda variable 'x y': " + NOT_AN_IDENTIFIER),
]


@pytest.mark.parametrize(("tree", "message"), UNRENDERABLE, ids=[m for _, m in UNRENDERABLE])
def test_unrenderable_trees_raise_value_error(tree: Node, message: str) -> None:
    """A tree no text could express raises ValueError instead of emitting text that means something else."""
    with pytest.raises(ValueError) as info:
        render(tree)
    assert str(info.value) == message


def test_long_and_chain_renders_without_recursion() -> None:
    """and_() of 5,000 terms (a left-deep tree) renders flat and parses back to the same text."""
    tree = and_(*(BinOp(Op.NE, path("id"), lit(i)) for i in range(5000)))
    text = render(tree)
    assert text == " and ".join(f"id ne {i}" for i in range(5000))
    assert render(parse(text)) == text

"""Conformance: filter semantics checked against a reference evaluation of balena's rules — eq/ne are
null-safe (ne matches nulls), ordering comparisons with null are unknown, not/and/or use three-valued
logic, in uses plain SQL equality — over random trees rendered, sent, parsed and compiled."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.odata.ast import BinOp, In, Literal, Node, Not, Op, Path, lit
from bulkops.odata.render import render
from tests.sim.conftest import Api

FIELDS: dict[str, Any] = {
    "id": st.integers(0, 22),
    "note": st.sampled_from([None, "note 2", "note 5", "note 12", "zzz"]),
    "is_online": st.sampled_from([None, True, False]),
}
COMPARE = [Op.EQ, Op.NE, Op.GT, Op.GE, Op.LT, Op.LE]


@st.composite
def comparison(draw: st.DrawFn) -> Node:
    name = draw(st.sampled_from(sorted(FIELDS)))
    if draw(st.integers(0, 4)) == 0 and name != "is_online":
        values = draw(st.lists(FIELDS[name].filter(lambda v: v is not None), min_size=1, max_size=3))
        return In(Path((name,)), tuple(lit(v) for v in values))
    op = draw(st.sampled_from(COMPARE if name != "is_online" else [Op.EQ, Op.NE]))
    return BinOp(op, Path((name,)), lit(draw(FIELDS[name])))


def trees() -> st.SearchStrategy[Node]:
    return st.recursive(
        comparison(),
        lambda inner: st.one_of(
            st.builds(Not, inner),
            st.builds(BinOp, st.sampled_from([Op.AND, Op.OR]), inner, inner),
        ),
        max_leaves=6,
    )


def evaluate(node: Node, row: dict[str, Any]) -> bool | None:
    """Three-valued evaluation with balena's null rules."""
    if isinstance(node, Not):
        inner = evaluate(node.operand, row)
        return None if inner is None else not inner
    if isinstance(node, In):
        assert isinstance(node.left, Path)
        value = row[node.left.segments[0]]
        return None if value is None else value in [v.value for v in node.values]
    assert isinstance(node, BinOp)
    if node.op in (Op.AND, Op.OR):
        a, b = evaluate(node.left, row), evaluate(node.right, row)
        if node.op is Op.AND:
            return False if a is False or b is False else None if a is None or b is None else True
        return True if a is True or b is True else None if a is None or b is None else False
    assert isinstance(node.left, Path) and isinstance(node.right, Literal)
    x, y = row[node.left.segments[0]], node.right.value
    if node.op is Op.EQ:
        return x == y if x is not None and y is not None else x is y
    if node.op is Op.NE:
        return x != y if x is not None and y is not None else x is not y
    if x is None or y is None:
        return None
    return {Op.GT: x > y, Op.GE: x >= y, Op.LT: x < y, Op.LE: x <= y}[node.op]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_random_filters_match_the_reference(api: Api, tree: Node) -> None:
    """Random comparisons, in-lists, not/and/or over nullable fields select what balena would."""
    rows = api.get("/v7/device?$select=id,note,is_online&$orderby=id asc").d
    expected = [r["id"] for r in rows if evaluate(tree, r) is True]
    answer = api.get("/v7/device?$select=id&$orderby=id asc&$filter=" + quote(render(tree), safe="(),'/"))
    assert answer.status == 200, (render(tree), answer.body)
    assert [r["id"] for r in answer.d] == expected, render(tree)

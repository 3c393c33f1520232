"""The OData ``$filter`` grammar, written once: parse to a tree, render it, compile it (simulator)."""

from bulkops.odata.ast import (
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
    path,
)

__all__ = [
    "BinOp", "Call", "Count", "In", "Lambda", "Literal", "LiteralKind", "Node", "Not", "Op", "Path",
    "and_", "any_", "eq", "in_", "lit", "or_", "path",
]

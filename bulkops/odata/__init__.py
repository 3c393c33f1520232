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
from bulkops.odata.parser import parse
from bulkops.odata.query import (
    ExpandItem,
    Key,
    KeyAlias,
    KeyFields,
    KeyValue,
    OrderItem,
    QueryOptions,
    parse_expand,
    parse_key,
    parse_options,
    parse_orderby,
    parse_select,
    parse_top_skip,
)
from bulkops.odata.render import render, render_literal

__all__ = [
    "BinOp", "Call", "Count", "ExpandItem", "In", "Key", "KeyAlias", "KeyFields", "KeyValue", "Lambda",
    "Literal", "LiteralKind", "Node", "Not", "Op", "OrderItem", "Path", "QueryOptions",
    "and_", "any_", "eq", "in_", "lit", "or_", "parse", "parse_expand", "parse_key", "parse_options",
    "parse_orderby", "parse_select", "parse_top_skip", "path", "render", "render_literal",
]

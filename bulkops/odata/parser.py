"""Parse balena's OData ``$filter`` text (pinejs dialect, already URL-decoded) into an ``ast`` tree.

A lazy tokenizer feeds a precedence-climbing parser that follows balena's grammar ranks, low to high:
``or`` = ``and`` < comparisons < ``sub`` < ``add`` < ``mod`` < ``div`` < ``mul``; every rank groups left
to right, so ``a or b and c`` is ``(a or b) and c``. ``not`` binds to the single value after it, and
``x in (…)`` binds to the single value before it, as in balena. Every error is a ``FilterSyntaxError``
naming the 0-based position of the offending token.
"""

from __future__ import annotations

from bulkops.errors import FilterSyntaxError
from bulkops.odata.ast import BinOp, Call, Count, In, Lambda, Literal, LiteralKind, Node, Not, Op, Path
from bulkops.odata.lexer import (
    FUNCTIONS,
    KEYWORDS,
    LAMBDA_KINDS,
    MAX_DEPTH,
    RANK,
    Tok,
    Token,
    _error,
    describe,
    tokens,
)

# --- parser ------------------------------------------------------------------------------------


class Parser:
    """Recursive descent over a token stream; also used by ``bulkops.odata.query``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._stream = tokens(text)
        self._ahead: list[Token] = []
        self.prev: Token | None = None
        self._depth = 0

    def peek(self, k: int = 0) -> Token:
        while len(self._ahead) <= k:
            self._ahead.append(next(self._stream))
        return self._ahead[k]

    def advance(self) -> Token:
        self.peek()
        self.prev = self._ahead.pop(0)
        return self.prev

    def error(self, message: str, position: int) -> FilterSyntaxError:
        return _error(self.text, message, position)

    def expected(self, what: str) -> FilterSyntaxError:
        tok = self.peek()
        if self.prev is None:
            return self.error(f"expected {what}, found {describe(tok)}", tok.pos)
        return self.error(f"expected {what} after '{self.prev.text}'", tok.pos)

    def close(self, opening: Token, alternatives: str = "an operator or ')'") -> None:
        """Consume the ``)`` matching ``opening``."""
        tok = self.peek()
        if tok.kind is Tok.RPAREN:
            self.advance()
            return
        if tok.kind is Tok.EOF:
            raise self.error("unbalanced parenthesis", opening.pos)
        raise self.error(f"expected {alternatives}, found {describe(tok)}", tok.pos)

    def finish(self) -> None:
        tok = self.peek()
        if tok.kind is Tok.RPAREN:
            raise self.error("unbalanced parenthesis", tok.pos)
        if tok.kind is not Tok.EOF:
            raise self.error(f"expected an operator, found {describe(tok)}", tok.pos)

    def name(self, what: str = "a name") -> str:
        tok = self.peek()
        if tok.kind is not Tok.NAME or tok.text in KEYWORDS:
            raise self.expected(what)
        return self.advance().text

    def path(self) -> Path:
        """``a/b/c`` (no lambdas, no ``$count``), as in ``$select`` and ``$orderby``."""
        segments = [self.name()]
        while self.peek().kind is Tok.SLASH:
            self.advance()
            segments.append(self.name("a name"))
        return Path(tuple(segments))

    def literal(self) -> Literal | None:
        """A literal token (string, number, typed, true/false/null), or None if the next token is not one."""
        tok = self.peek()
        if tok.literal is not None:
            self.advance()
            return tok.literal
        if tok.kind is Tok.NAME and tok.text in ("true", "false", "null"):
            self.advance()
            if tok.text == "null":
                return Literal(LiteralKind.NULL, None)
            return Literal(LiteralKind.BOOL, tok.text == "true")
        return None

    # expression := value (('in' list) | (op expression))*   -- by precedence climbing
    def expression(self, min_rank: int = 0) -> Node:
        left = self.value()
        while True:
            tok = self.peek()
            if tok.kind is not Tok.NAME:
                return left
            if tok.text == "in":
                self.advance()
                left = In(left, self.in_list())
                continue
            op = _OPS.get(tok.text)
            if op is None or RANK[op] < min_rank:
                return left
            self.advance()
            left = BinOp(op, left, self.expression(RANK[op] + 1))

    def value(self) -> Node:
        tok = self.peek()
        if self._depth >= MAX_DEPTH:
            raise self.error(f"filter nested too deeply (more than {MAX_DEPTH} levels)", tok.pos)
        self._depth += 1
        try:
            return self._value(tok)
        finally:
            self._depth -= 1

    def _value(self, tok: Token) -> Node:
        if tok.kind is Tok.LPAREN:
            self.advance()
            inner = self.expression()
            self.close(tok)
            return inner
        if tok.kind is Tok.NAME and tok.text == "not":
            self.advance()
            return Not(self.value())
        literal = self.literal()
        if literal is not None:
            return literal
        if tok.kind is not Tok.NAME or tok.text in KEYWORDS:
            raise self.expected("a value")
        self.advance()
        after = self.peek()
        if after.kind is Tok.LPAREN and after.pos == tok.end:
            return self.call(tok)
        return self.navigation(tok)

    def call(self, name: Token) -> Call:
        opening = self.advance()
        arity = FUNCTIONS.get(name.text)
        if arity is None:
            raise self.error(f"unknown function '{name.text}'", name.pos)
        args: list[Node] = []
        if self.peek().kind is Tok.RPAREN:
            self.advance()
        else:
            while True:
                args.append(self.expression())
                if self.peek().kind is Tok.COMMA:
                    self.advance()
                    continue
                self.close(opening, "an operator, ',' or ')'")
                break
        low, high = arity
        if not low <= len(args) <= high:
            wanted = "no" if high == 0 else str(low) if low == high else f"{low} or {high}"
            plural = "argument" if (low, high) == (1, 1) else "arguments"
            raise self.error(f"function '{name.text}' takes {wanted} {plural}, got {len(args)}", name.pos)
        return Call(name.text, tuple(args))

    def navigation(self, first: Token) -> Node:
        """A path, ``nav/any(v: …)``, ``nav/all(v: …)``, ``nav/$count`` or ``nav/$count($filter=…)``."""
        segments = [first.text]
        while self.peek().kind is Tok.SLASH:
            self.advance()
            tok = self.peek()
            if tok.kind is Tok.DOLLAR and tok.text == "$count":
                self.advance()
                return self.count(Path(tuple(segments)), tok)
            segment = self.name("a name")
            after = self.peek()
            if after.kind is Tok.LPAREN and after.pos == tok.end:
                if segment not in LAMBDA_KINDS:
                    raise self.error(f"only any() and all() may follow a navigation, found '{segment}('",
                                     tok.pos)
                return self.lambda_(Path(tuple(segments)), segment)
            segments.append(segment)
        return Path(tuple(segments))

    def lambda_(self, nav: Path, kind: str) -> Lambda:
        opening = self.advance()
        tok = self.peek()
        if tok.kind is not Tok.NAME or tok.text in KEYWORDS:
            raise self.error(f"expected a lambda variable after '{kind}('", tok.pos)
        var = self.advance().text
        colon = self.peek()
        if colon.kind is not Tok.COLON:
            raise self.error(f"expected ':' after the lambda variable '{var}'", colon.pos)
        self.advance()
        body = self.expression()
        self.close(opening)
        return Lambda(nav, kind, var, body)

    def count(self, nav: Path, dollar: Token) -> Count:
        opening = self.peek()
        if opening.kind is not Tok.LPAREN or opening.pos != dollar.end:
            return Count(nav)
        self.advance()
        option = self.peek()
        if option.kind is not Tok.DOLLAR or option.text != "$filter" or self.peek(1).kind is not Tok.EQUALS:
            raise self.error("expected '$filter=' after '$count('", option.pos)
        self.advance()
        self.advance()
        body = self.expression()
        self.close(opening)
        return Count(nav, body)

    def in_list(self) -> tuple[Literal, ...]:
        opening = self.peek()
        if opening.kind is not Tok.LPAREN:
            raise self.error("expected '(' after 'in'", opening.pos)
        self.advance()
        values: list[Literal] = []
        while True:
            literal = self.literal()
            if literal is None:
                raise self.expected("a literal")
            values.append(literal)
            if self.peek().kind is Tok.COMMA:
                self.advance()
                continue
            self.close(opening, "',' or ')' in the 'in' list")
            return tuple(values)


_OPS: dict[str, Op] = {op.value: op for op in Op}


def parse(text: str) -> Node:
    """Parse a decoded ``$filter`` into its tree; raises ``FilterSyntaxError`` naming the position."""
    parser = Parser(text)
    if parser.peek().kind is Tok.EOF:
        raise _error(text, "empty filter", 0)
    node = parser.expression()
    parser.finish()
    return node

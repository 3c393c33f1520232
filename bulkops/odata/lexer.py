"""The tokens of balena's OData ``$filter`` text (pinejs dialect): the grammar's tables (functions,
operator ranks, keywords), literal checks shared with the renderer, and a lazy tokenizer. Every error is
a ``FilterSyntaxError`` naming the 0-based position of the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

from bulkops.errors import FilterSyntaxError
from bulkops.odata.ast import Literal, LiteralKind, Op

# name -> (fewest, most) arguments, as balena's parser lists them
FUNCTIONS: dict[str, tuple[int, int]] = {
    "cast": (1, 2), "ceiling": (1, 1), "concat": (2, 2), "contains": (2, 2), "date": (1, 1),
    "day": (1, 1), "endswith": (2, 2), "floor": (1, 1), "fractionalseconds": (1, 1), "hour": (1, 1),
    "indexof": (2, 2), "isof": (1, 2), "length": (1, 1), "maxdatetime": (0, 0), "mindatetime": (0, 0),
    "minute": (1, 1), "month": (1, 1), "now": (0, 0), "replace": (3, 3), "round": (1, 1),
    "second": (1, 1), "startswith": (2, 2), "substringof": (2, 2), "substring": (2, 3), "time": (1, 1),
    "tolower": (1, 1), "totaloffsetminutes": (1, 1), "totalseconds": (1, 1), "toupper": (1, 1),
    "trim": (1, 1), "year": (1, 1),
}

RANK: dict[Op, int] = {
    Op.OR: 0, Op.AND: 0,
    Op.EQ: 1, Op.NE: 1, Op.GT: 1, Op.GE: 1, Op.LT: 1, Op.LE: 1,
    Op.SUB: 2, Op.ADD: 3, Op.MOD: 4, Op.DIV: 5, Op.MUL: 6,
}

KEYWORDS = frozenset({op.value for op in Op} | {"not", "in", "true", "false", "null"})
LAMBDA_KINDS = frozenset({"any", "all"})
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_UNQUOTED_DATE = re.compile(r"[+-]?[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9A-Za-z:.+-]*)?")
_WORDISH = re.compile(r"[A-Za-z0-9_.]*")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DURATION = re.compile(
    r"[+-]?P(?P<d>[0-9]+D)?(?P<t>T(?P<h>[0-9]+H)?(?P<m>[0-9]+M)?(?P<s>[0-9]+(?:\.[0-9]+)?S)?)?"
)
_BLANK = " \t"
MAX_DEPTH = 50  # nesting of parentheses, not, calls and lambdas; keeps far from the recursion limit
_TYPED = {"datetime": LiteralKind.DATETIME, "date": LiteralKind.DATE, "duration": LiteralKind.DURATION}


class Tok(StrEnum):
    NAME = "name"
    STRING = "string"
    NUMBER = "number"
    TYPED = "typed"  # datetime'…', date'…', duration'…'
    DOLLAR = "dollar"  # $count, $filter, …
    AT = "at"  # @alias
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    SLASH = "/"
    COLON = ":"
    EQUALS = "="
    SEMI = ";"
    AMP = "&"
    STAR = "*"
    EOF = "end"


_PUNCT = {t.value: t for t in (Tok.LPAREN, Tok.RPAREN, Tok.COMMA, Tok.SLASH, Tok.COLON, Tok.EQUALS,
                               Tok.SEMI, Tok.AMP, Tok.STAR)}


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # the source text of the token
    pos: int
    literal: Literal | None = None  # for STRING, NUMBER, TYPED

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


# --- literal checks, shared with the renderer ----------------------------------------------------


def parse_datetime(raw: str) -> datetime | None:
    """The UTC instant of an ISO-8601 datetime with ``Z`` or an offset (or a bare date: midnight UTC);
    None if ``raw`` is not one."""
    m = _DATETIME.fullmatch(raw)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if hour is not None and zone is None:
        return None
    tz: timezone = UTC
    if zone is not None and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        hh, mm = int(zone[1:3]), int(zone[-2:])
        if hh > 23 or mm > 59:
            return None
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    micro = int((frac or "").ljust(6, "0")[:6])
    try:
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         int(second or 0), micro, tzinfo=tz)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def is_date(raw: str) -> bool:
    """``YYYY-MM-DD`` naming a real day."""
    if DATE_SHAPE.fullmatch(raw) is None:
        return False
    try:
        date.fromisoformat(raw)
    except ValueError:
        return False
    return True


def is_duration(raw: str) -> bool:
    """``[-]P[nD][T[nH][nM][n[.n]S]]`` with at least one part, and a part after any ``T``."""
    m = _DURATION.fullmatch(raw)
    if m is None:
        return False
    has_time = bool(m["h"] or m["m"] or m["s"])
    return bool(m["d"] or has_time) and (m["t"] is None or has_time)


# --- tokenizer ---------------------------------------------------------------------------------


def _error(text: str, message: str, position: int) -> FilterSyntaxError:
    return FilterSyntaxError(message, text=text, position=position)


def _quoted(text: str, quote: int, start: int) -> tuple[str, int]:
    """The content of the quoted text opening at ``quote`` (doubled quotes undone) and its end."""
    parts: list[str] = []
    j = quote + 1
    while True:
        k = text.find("'", j)
        if k < 0:
            raise _error(text, "unterminated string literal", start)
        if text.startswith("''", k):
            parts.append(text[j : k + 1])
            j = k + 2
            continue
        parts.append(text[j:k])
        return "".join(parts), k + 1


def _typed(text: str, prefix: str, raw: str, start: int) -> Literal:
    kind = _TYPED[prefix]
    if kind is LiteralKind.DATETIME:
        value = parse_datetime(raw)
        if value is None:
            shape = _DATETIME.fullmatch(raw)
            if shape is not None and shape[4] is not None and shape[8] is None:
                raise _error(text, f"datetime literal '{raw}' needs a time zone (Z or ±HH:MM)", start)
            raise _error(text, f"invalid datetime literal '{raw}'", start)
        return Literal(kind, value)
    valid = is_date(raw) if kind is LiteralKind.DATE else is_duration(raw)
    if not valid:
        raise _error(text, f"invalid {prefix} literal '{raw}'", start)
    return Literal(kind, raw)


def _number(text: str, i: int) -> Token:
    unquoted = _UNQUOTED_DATE.match(text, i)
    if unquoted is not None:
        raw = unquoted.group()
        kind = "datetime" if "T" in raw else "date"
        raise _error(text, f"unquoted {kind} {raw}: write {kind}'{raw.lstrip('+')}'", i)
    m = _NUMBER.match(text, i)
    assert m is not None
    end = m.end()
    if end < len(text) and (text[end] in "._" or text[end].isalnum()):
        tail = _WORDISH.match(text, end)
        bad = text[i : tail.end() if tail else end]
        raise _error(text, f"invalid number '{bad}'", i)
    raw = m.group()
    value: int | Decimal = Decimal(raw) if "." in raw else int(raw)
    return Token(Tok.NUMBER, raw, i, Literal(LiteralKind.NUMBER, value))


def tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text``, then EOF tokens forever; raises on the first malformed token."""
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _BLANK:
            i += 1
        if i >= n:
            while True:
                yield Token(Tok.EOF, "", n)
        c = text[i]
        if c == "'":
            value, end = _quoted(text, i, i)
            yield Token(Tok.STRING, text[i:end], i, Literal(LiteralKind.STRING, value))
        elif (m := IDENTIFIER.match(text, i)) is not None:
            end = m.end()
            if m.group() in _TYPED and text.startswith("'", end):
                raw, end = _quoted(text, end, i)
                yield Token(Tok.TYPED, text[i:end], i, _typed(text, m.group(), raw, i))
            else:
                yield Token(Tok.NAME, m.group(), i)
        elif c in "0123456789" or (c in "+-" and text[i + 1 : i + 2] in tuple("0123456789")):
            tok = _number(text, i)
            end = tok.end
            yield tok
        elif c in "$@" and (m := IDENTIFIER.match(text, i + 1)) is not None:
            end = m.end()
            yield Token(Tok.DOLLAR if c == "$" else Tok.AT, text[i:end], i)
        elif c in _PUNCT:
            end = i + 1
            yield Token(_PUNCT[c], c, i)
        else:
            raise _error(text, f"unexpected character '{c}'", i)
        i = end


def describe(tok: Token) -> str:
    return "the end of the text" if tok.kind is Tok.EOF else f"'{tok.text}'"



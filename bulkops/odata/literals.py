"""Which literal a field takes in a ``$filter`` comparison, and the values an enumerated field takes.

balena's OData stack compares a column with a literal of another type in ways that mislead: a string
on an integer column is a 500 (``id eq 'abc'``), a number on a text column silently matches nothing
(``device_name eq 5``), a boolean column compared with ``1`` is not what it looks like, and a value an
enumerated column never holds (``overall_status eq 'offline'``, the /v6 value) matches nothing. So
each literal compared with a field must be of the field's type, and a string compared with an
enumerated field one of its values. ``null`` is accepted everywhere (``eq null`` / ``ne null``).
"""

from __future__ import annotations

import difflib
from datetime import date, datetime

from bulkops import v7
from bulkops.errors import FilterModelError
from bulkops.odata.ast import Literal, LiteralKind
from bulkops.odata.render import render_literal
from bulkops.v7 import FieldDef, FieldType, Navigation

K = LiteralKind
_INTEGER = "an integer (compare it with a number such as 5)"
_TEXT = "text (compare it with a quoted string such as 'x')"
_BOOLEAN = "a boolean (compare it with true or false)"
_DATETIME = ("a date and time (compare it with an ISO-8601 string such as '2024-01-01T00:00:00Z' or "
             "datetime'2024-01-01T00:00:00Z')")


def describe(literal: Literal) -> str:
    """``the number 1``, ``the string 'x'``, ``true``, ``datetime'…'`` — as a message shows a literal."""
    shown = render_literal(literal)
    if literal.kind is K.NUMBER:
        return f"the number {shown}"
    if literal.kind is K.STRING:
        return f"the string {shown}"
    return shown


def _is_integer(literal: Literal) -> bool:
    return literal.kind is K.NUMBER and isinstance(literal.value, int)  # 1.5 on an integer column: a 500


def _is_iso(text: str) -> bool:
    for parse in (datetime.fromisoformat, date.fromisoformat):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def _fits(type_: FieldType, literal: Literal) -> bool:
    kind = literal.kind
    if type_ in (FieldType.SERIAL, FieldType.INTEGER, FieldType.FK):
        return _is_integer(literal)
    if type_ is FieldType.BIG_INTEGER:
        return _is_integer(literal) or (kind is K.STRING and str(literal.value).isdigit())
    if type_ is FieldType.BOOLEAN:
        return kind is K.BOOL
    if type_ is FieldType.DATETIME:
        return kind in (K.DATETIME, K.DATE) or (kind is K.STRING and _is_iso(str(literal.value)))
    if type_ is FieldType.JSON:
        return True
    return kind is K.STRING  # text, short text, hashed


def _wanted(member: FieldDef | Navigation, name: str) -> str:
    if isinstance(member, Navigation):
        target = member.target
        return (f"a link to {target} (compare it with {_article(target)} {target} id such as 5, or go "
                f"through it: {name}/<field> eq …)")
    if member.type is FieldType.FK and member.references is not None:
        return _wanted(Navigation(name, member.references, False, name), name)
    if member.type in (FieldType.SERIAL, FieldType.INTEGER, FieldType.BIG_INTEGER):
        return _INTEGER
    if member.type is FieldType.BOOLEAN:
        return _BOOLEAN
    if member.type is FieldType.DATETIME:
        return _DATETIME
    return _TEXT


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def check_literal(member: FieldDef | Navigation, owner: str, literal: Literal) -> None:
    """Raise ``FilterModelError`` unless ``literal`` may be compared with ``member`` of ``owner``."""
    if literal.kind is K.NULL:
        return
    type_ = FieldType.FK if isinstance(member, Navigation) else member.type
    if not _fits(type_, literal):
        wanted = _wanted(member, member.name)
        raise FilterModelError(f"{member.name!r} on resource {owner!r} is {wanted}, got {describe(literal)}")
    if isinstance(member, FieldDef) and member.enum and isinstance(literal.value, str):
        _check_value(member, owner, literal.value)


def check_count(nav: str, literal: Literal) -> None:
    """``nav/$count`` is compared with an integer."""
    if not _is_integer(literal):
        raise FilterModelError(f"{nav}/$count is a number of rows (compare it with an integer such as 0), "
                               f"got {describe(literal)}")


def _check_value(field: FieldDef, owner: str, value: str) -> None:
    if value in field.enum:
        return
    former = v7.FORMER_VALUES.get((owner, field.name), {}).get(value, ())
    hint = f"; {value!r} is the /v6 value" if former else ""
    matches = former or tuple(v for v in field.enum if v.lower() == value.lower()) or tuple(
        difflib.get_close_matches(value, field.enum, n=2, cutoff=0.6))
    suggest = "; did you mean " + " or ".join(repr(v) for v in matches) + "?" if matches else ""
    values = ", ".join(repr(v) for v in field.enum[:-1]) + f" or {field.enum[-1]!r}"
    raise FilterModelError(
        f"{field.name!r} on resource {owner!r} never takes the value {value!r} (it takes {values}{hint})"
        f"{suggest}"
    )

"""Query parameters: the one place where a value becomes SQL text.

Queries are written with ClickHouse's own placeholders, ``{name:Type}``.
The embedded engine binds them natively (server-side); `native_params`
checks each value and encodes it the way ClickHouse reads parameter
values (its "Escaped" text format, where a backslash starts an escape).
The 18.16 server predates server-side parameters, so for it `bind` turns
each value into a typed literal here, after the same checks. Values are
substituted in one pass, and placeholders are only looked for outside
string literals, quoted identifiers and comments, so a value that looks
like a placeholder is never expanded. Nothing else in the project formats
a value into SQL.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping

from camcount.warehouse.errors import QueryError

# Literals and comments first, so a placeholder inside them is skipped.
_TOKENS = re.compile(
    r"'(?:[^'\\]|\\.)*'"
    r'|"(?:[^"\\]|\\.)*"'
    r"|`(?:[^`\\]|\\.)*`"
    r"|--[^\n]*"
    r"|/\*.*?\*/"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):(?P<type>[A-Za-z0-9]+)\}",
    re.DOTALL,
)

_INT_RANGES: dict[str, tuple[int, int]] = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}
_FLOATS = {"Float32", "Float64"}
SUPPORTED_TYPES = frozenset({"String", *_INT_RANGES, *_FLOATS})


def placeholders(sql: str) -> dict[str, str]:
    """Name -> declared type of every placeholder; one name, one type."""
    found: dict[str, str] = {}
    for m in _TOKENS.finditer(sql):
        name, type_name = m.group("name"), m.group("type")
        if name is None:
            continue
        if type_name not in SUPPORTED_TYPES:
            raise QueryError(f"parameter {name!r} has unsupported type {type_name}")
        if found.setdefault(name, type_name) != type_name:
            raise QueryError(f"parameter {name!r} declared as both {found[name]} and {type_name}")
    return found


def check_params(sql: str, params: Mapping[str, object]) -> dict[str, object]:
    """The parameters, each checked against its declared type.

    Missing and unexpected names are errors: a typo in a filter must not
    silently widen a query.
    """
    declared = placeholders(sql)
    missing = sorted(set(declared) - set(params))
    extra = sorted(set(params) - set(declared))
    if missing or extra:
        raise QueryError(f"parameters missing: {missing}, unexpected: {extra}")
    return {name: _checked(name, declared[name], params[name]) for name in declared}


def bind(sql: str, params: Mapping[str, object]) -> str:
    """``sql`` with each ``{name:Type}`` replaced by a typed literal."""
    values = check_params(sql, params)

    def literal(m: re.Match[str]) -> str:
        if m.group("name") is None:
            return m.group(0)
        return _literal(m.group("type"), values[m.group("name")])

    return _TOKENS.sub(literal, sql)


def native_params(sql: str, params: Mapping[str, object]) -> dict[str, str]:
    """Checked values as text for server-side binding (chDB): ClickHouse
    reads a parameter value in its Escaped format, so a backslash and
    control characters are escaped here."""
    values = check_params(sql, params)
    return {name: _escaped(v) for name, v in values.items()}


def _escaped(value: object) -> str:
    if isinstance(value, str):
        out = []
        for ch in value:
            code = ord(ch)
            if ch == "\\":
                out.append("\\\\")
            elif code < 0x20 or code == 0x7F:
                out.append(f"\\x{code:02X}")
            else:
                out.append(ch)
        return "".join(out)
    return repr(value) if isinstance(value, float) else str(value)


def quote_string(value: str) -> str:
    """A ClickHouse string literal holding exactly ``value``.

    Backslash and quote are escaped; control characters become ``\\xHH``,
    so the literal is one line of printable text whatever the input.
    """
    out = ["'"]
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02X}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def _checked(name: str, type_name: str, value: object) -> object:
    if type_name == "String":
        if not isinstance(value, str):
            raise QueryError(f"parameter {name!r} must be a string, got {type(value).__name__}")
        return value
    if type_name in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise QueryError(f"parameter {name!r} must be an integer, got {value!r}")
        lo, hi = _INT_RANGES[type_name]
        if not lo <= int(value) <= hi:
            raise QueryError(f"parameter {name!r}={value} is outside {type_name} [{lo}, {hi}]")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise QueryError(f"parameter {name!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise QueryError(f"parameter {name!r} must be finite, got {value!r}")
    return number


def _literal(type_name: str, value: object) -> str:
    """Numbers go in bare (18.16 takes no expression after LIMIT), checked
    against the declared type already; a negative one in parentheses, so
    ``a-{x:Int32}`` can never become a ``--`` comment."""
    if type_name == "String":
        return quote_string(str(value))
    text = str(value) if type_name in _INT_RANGES else repr(value)
    return f"({text})" if text.startswith("-") else text

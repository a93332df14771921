"""Expression template values (pymilvus ``expr_params``) from protobuf to Python.

A value is a bool, int64, double, string or array; an array holds one typed
list, nested arrays (``array_data``) or, for a mixed-type list, one JSON text
per element (``json_data``). Anything malformed is InvalidParameter naming
the variable, never an unexpected error: a json_data element that is not
UTF-8 JSON, an integer outside int64 (only JSON can spell one), or arrays and
JSON nested deeper than MAX_NESTING (the filter compiler and its cache walk
values recursively).
"""

from __future__ import annotations

import json

from vecdb.errors import InvalidParameter
from vecdb.expr.lexer import INT64_MAX, INT64_MIN, clip
from vecdb.expr.limits import MAX_NESTING


def template_values(proto_map) -> dict:
    return {k: _value(k, v) for k, v in proto_map.items()}


def _value(name: str, tv):
    kind = tv.WhichOneof("val")
    if kind == "array_val":
        return _array(name, tv.array_val, 1)
    return getattr(tv, kind) if kind else None


def _array(name: str, arr, depth: int) -> list:
    if depth > MAX_NESTING:
        raise _bad(name, f"arrays nested more than {MAX_NESTING} levels deep")
    which = arr.WhichOneof("data")
    if which is None:
        return []
    data = getattr(arr, which).data
    if which == "array_data":
        return [_array(name, a, depth + 1) for a in data]
    if which == "json_data":  # a mixed-type list: each element is JSON text
        return [_json(name, text, depth + 1) for text in data]
    return list(data)


def _json(name: str, raw: bytes, depth: int):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(name, f"json_data element {clip(repr(raw))} is not UTF-8") from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the decoder's stack
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _bad(name, f"json_data element {clip(text)!r} is not valid JSON: {detail}") from None
    _check(name, value, depth)
    return value


def _check(name: str, value, depth: int) -> None:
    """Integers within int64 and lists/objects at most MAX_NESTING deep (an explicit stack)."""
    stack = [(value, depth)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
            raise _bad(name, f"integer {clip(str(v))} out of int64 range")
        if isinstance(v, (list, dict)):
            if d > MAX_NESTING:
                raise _bad(name, f"arrays nested more than {MAX_NESTING} levels deep")
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))


def _bad(name: str, detail: str) -> InvalidParameter:
    return InvalidParameter(f"invalid value of expression template variable {name}: {detail}")

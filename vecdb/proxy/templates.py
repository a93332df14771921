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


# --- the other way: the REST API's JSON ``exprParams`` to the protobuf map -------------------------
def template_proto(values: dict) -> dict:
    """``exprParams`` of a REST request (a JSON object) as SearchRequest / QueryRequest's
    ``expr_template_values``, encoded as pymilvus encodes its ``filter_params``; 1100 on a value that is
    neither a scalar nor a list."""
    if not isinstance(values, dict):
        raise InvalidParameter(f"exprParams must be a JSON object, got {clip(json.dumps(values))}")
    return {str(k): _template(str(k), v) for k, v in values.items()}


def _template(name: str, v):
    from pymilvus.grpc_gen import schema_pb2  # noqa: PLC0415 - only the REST API encodes

    if isinstance(v, bool):
        return schema_pb2.TemplateValue(bool_val=v)
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise _bad(name, f"integer {clip(str(v))} out of int64 range")
        return schema_pb2.TemplateValue(int64_val=v)
    if isinstance(v, float):
        return schema_pb2.TemplateValue(float_val=v)
    if isinstance(v, str):
        return schema_pb2.TemplateValue(string_val=v)
    if isinstance(v, list):
        _check(name, v, 1)
        return schema_pb2.TemplateValue(array_val=_template_array(v))
    raise _bad(name, f"{clip(json.dumps(v))} is neither a number, a string, a bool nor a list")


def _template_array(items: list):
    """One typed list where every element has the type (ints widened to doubles beside floats), nested
    lists as arrays, otherwise one JSON text per element (pymilvus's rules)."""
    from pymilvus.grpc_gen import schema_pb2  # noqa: PLC0415 - only the REST API encodes

    arr = schema_pb2.TemplateArrayValue()
    if items and all(isinstance(x, bool) for x in items):
        arr.bool_data.data.extend(items)
    elif items and all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        arr.long_data.data.extend(items)
    elif items and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        arr.double_data.data.extend(float(x) for x in items)
    elif items and all(isinstance(x, str) for x in items):
        arr.string_data.data.extend(items)
    elif items and all(isinstance(x, list) for x in items):
        arr.array_data.data.extend(_template_array(x) for x in items)
    elif items:
        arr.json_data.data.extend(json.dumps(x).encode() for x in items)
    return arr

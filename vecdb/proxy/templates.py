"""Expression template values (pymilvus ``expr_params``) from protobuf to Python."""

from __future__ import annotations

import json


def _value(tv):
    kind = tv.WhichOneof("val")
    if kind == "array_val":
        arr = tv.array_val
        which = arr.WhichOneof("data")
        if which is None:
            return []
        inner = getattr(arr, which)
        if which == "array_data":
            return [_array(a) for a in inner.data]
        if which == "json_data":  # a mixed-type list: each element is JSON text
            return [json.loads(v) for v in inner.data]
        return list(inner.data)
    return getattr(tv, kind) if kind else None


def _array(arr):
    which = arr.WhichOneof("data")
    return list(getattr(arr, which).data) if which else []


def template_values(proto_map) -> dict:
    return {k: _value(v) for k, v in proto_map.items()}

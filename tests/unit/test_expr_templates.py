"""Template values (pymilvus ``expr_params``) decoded from protobuf: good values round-trip,
malformed ones are InvalidParameter (code 1100) naming the variable."""

from __future__ import annotations

import json

import pytest
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.expr.limits import MAX_NESTING
from vecdb.proxy.templates import template_values


def roundtrip(values: dict) -> dict:
    return template_values(Prepare.prepare_expression_template(values))


@pytest.mark.parametrize("values", [
    {"x": 1, "f": 2.5, "s": "hé", "b": True},
    {"ids": [1, 2, 3], "names": ["a", "b"], "flags": [True], "fs": [1.5, 2.0], "empty": []},
    {"mixed": [1, 2.5, None, [1, 2], {"k": "v"}]},  # json_data, one JSON text per element
    {"nested": [[1, 2], [3]], "deep": [[["a"], ["b", "c"]]]},  # array_data inside array_data
    {"big": [2**63 - 1, -(2**63), 0.5]},
])
def test_values_round_trip(values):
    assert roundtrip(values) == values


def json_template(*elements: bytes) -> dict:
    tv = schema_pb2.TemplateValue()
    tv.array_val.json_data.data.extend(elements)
    return {"v": tv}


def error_of(proto_map) -> str:
    with pytest.raises(InvalidParameter) as ei:
        template_values(proto_map)
    assert ei.value.code == 1100
    return str(ei.value)


@pytest.mark.parametrize("raw,detail", [
    (b"{bad", "json_data element '{bad' is not valid JSON: Expecting property name enclosed in double quotes"),
    (b"", "json_data element '' is not valid JSON: Expecting value: line 1 column 1"),
    (b"\xff\xfe1", "json_data element b'\\xff\\xfe1' is not UTF-8"),
    (b"1" * 5000, "json_data element '" + "1" * 64 + "... (5000 characters)' is not valid JSON: Exceeds the limit"),
    (b"99999999999999999999", "integer 99999999999999999999 out of int64 range"),
    (b"[1, [-99999999999999999999]]", "integer -99999999999999999999 out of int64 range"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON: nested too deeply"),
    (b"[" * MAX_NESTING + b"]" * MAX_NESTING, f"arrays nested more than {MAX_NESTING} levels deep"),
    (json.dumps(json.loads('{"a": ' * 500 + "1" + "}" * 500)).encode(), "nested more than"),
])
def test_bad_json_data(raw, detail):
    msg = error_of(json_template(b"1", raw))
    assert msg.startswith("invalid value of expression template variable v: ")
    assert detail in msg
    assert len(msg) < 400


def test_json_just_below_the_depth_limit():
    deep = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    assert template_values(json_template(deep.encode(), b'"s"'))["v"][1] == "s"


def test_array_data_nested_too_deeply():
    tv = schema_pb2.TemplateValue()
    arr = tv.array_val
    for _ in range(MAX_NESTING + 5):
        arr = arr.array_data.data.add()
    arr.long_data.data.append(1)
    assert f"arrays nested more than {MAX_NESTING} levels deep" in error_of({"v": tv})


def test_rest_expr_params_encode_as_pymilvus_and_decode_back():
    """The REST API's exprParams (vecdb.proxy.templates.template_proto) decode to the same values, with
    pymilvus's typed lists (ints widened beside floats, nested lists, mixed lists as JSON)."""
    from vecdb.proxy.templates import template_proto

    values = {"i": 3, "f": 0.5, "s": "x", "b": False, "ints": [1, 2], "nums": [1, 2.5], "strs": ["a"],
              "nested": [[1, 2], [3]], "mixed": [1, "a", {"k": 1}], "empty": []}
    ours = template_proto(values)
    assert template_values(ours) == {**values, "nums": [1.0, 2.5]}
    plain = {k: v for k, v in values.items() if k not in ("mixed", "empty")}  # (what pymilvus encodes too)
    theirs = Prepare.prepare_expression_template(plain)
    for k in plain:
        assert ours[k].WhichOneof("val") == theirs[k].WhichOneof("val"), k
    with pytest.raises(InvalidParameter, match="neither a number"):
        template_proto({"o": {"a": 1}})
    with pytest.raises(InvalidParameter, match="out of int64 range"):
        template_proto({"big": 2**63})
    with pytest.raises(InvalidParameter, match="must be a JSON object"):
        template_proto([1])

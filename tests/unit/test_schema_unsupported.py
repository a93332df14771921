"""Schema parts vecdb does not implement are refused at create time, never silently dropped."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import IllegalSchema
from vecdb.schema import CollectionSchema, DataType


def _schema() -> schema_pb2.CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="4")
    pb.fields.add(name="s", data_type=DataType.VARCHAR).type_params.add(key="max_length", value="8")
    return pb


def test_plain_schema_is_accepted_and_ignorable_parts_pass():
    pb = _schema()
    pb.dbName, pb.version = "other", 3
    pb.properties.add(key="k", value="v")
    pb.fields[2].type_params.add(key="mmap_enabled", value="true")
    pb.fields[2].type_params.add(key="enable_match", value="false")
    schema = CollectionSchema.from_proto(pb, "c")
    assert [f.name for f in schema.fields] == ["id", "v", "s"]


def _function(pb):  # an embedding function (BM25 is taken: tests/unit/test_analyzer.py)
    pb.functions.add(name="emb", type=schema_pb2.FunctionType.TextEmbedding,
                     input_field_names=["s"], output_field_names=["v"])


def _struct(pb):  # array-of-struct fields are taken (tests/unit/test_struct_array.py), not Float16 lists yet
    sub = pb.struct_array_fields.add(name="st").fields.add(
        name="e", data_type=DataType.ARRAY_OF_VECTOR, element_type=DataType.FLOAT16_VECTOR)
    sub.type_params.add(key="dim", value="4")
    sub.type_params.add(key="max_capacity", value="4")


@pytest.mark.parametrize("change,message", [
    (_function, r"collection schema functions other than BM25 \(embedding functions: emb\) is not supported by "
                r"vecdb yet"),
    (_struct, r"ArrayOfVector of Float16Vector \(field e\) is not supported by vecdb yet"),
])  # (multi_analyzer_params is taken: tests/unit/test_multi_analyzer.py; enable_namespace:
#     tests/e2e/test_namespaces_e2e.py; external_source: tests/unit/test_external_spec.py)
def test_unsupported_parts_are_refused(change, message):
    pb = _schema()
    change(pb)
    with pytest.raises(IllegalSchema, match=message) as e:
        CollectionSchema.from_proto(pb, "c")
    assert e.value.code == 105

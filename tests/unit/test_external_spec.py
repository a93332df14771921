"""External collections' source URL, spec and schema checks (vecdb.external_spec, vecdb.schema)."""

from __future__ import annotations

import json

import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.external_spec import parse_external, parse_spec, redacted_spec
from vecdb.schema import VIRTUAL_PK_FIELD, CollectionSchema, DataType

SPEC = json.dumps({"format": "parquet", "extfs": {"access_key_id": "ak", "access_key_value": "sk",
                                                  "use_ssl": "false", "region": "eu-west-1"}})


def test_endpoint_then_bucket():
    t = parse_external("s3://127.0.0.1:9000/bucket/some/prefix/", SPEC)
    assert (t.endpoint, t.bucket, t.prefix, t.format) == ("http://127.0.0.1:9000", "bucket", "some/prefix/", "parquet")
    assert (t.access_key, t.secret_key, t.region) == ("ak", "sk", "eu-west-1")


def test_address_in_the_spec_makes_the_host_the_bucket():
    spec = json.dumps({"extfs": {"address": "minio:9000", "use_ssl": "true"}})
    t = parse_external("minio://bucket/key", spec)
    assert (t.endpoint, t.bucket, t.prefix) == ("https://minio:9000", "bucket", "key/")
    t = parse_external("aws://bucket", "")
    assert (t.endpoint, t.bucket, t.prefix, t.format) == (None, "bucket", "", "parquet")


@pytest.mark.parametrize("source,message", [
    ("", "external_source is empty"),
    ("bucket/prefix", "explicit scheme"),
    ("http://h:1/b/p", 'external_source scheme "http" is not allowed; allowed schemes: aws, gcs, gs, minio, oss, s3'),
    ("s3://ak:sk@h:1/b/p", r"must not embed credentials in the URL \(use extfs.access_key_id"),
    ("oss://b/p", 'scheme "oss" is not supported by vecdb yet'),
    ("gcs://b/p", 'scheme "gcs" is not supported by vecdb yet'),
    ("s3://h:9000/", "names no bucket"),
])
def test_bad_sources(source, message):
    with pytest.raises(InvalidParameter, match=message) as e:
        parse_external(source, "")
    assert e.value.code == 1100


@pytest.mark.parametrize("spec,message", [
    ("{", "invalid external spec JSON"),
    ("[1]", "invalid external spec JSON"),
    (json.dumps({"format": "vortex"}), "format vortex is not supported by vecdb yet"),
    (json.dumps({"format": "iceberg-table"}), "format iceberg-table is not supported by vecdb yet"),
    (json.dumps({"format": "orc"}), 'unsupported format "orc", supported formats: parquet'),
    (json.dumps({"extfs": {"secret": "x"}}), 'extfs key "secret" is not allowed; allowed keys: use_iam'),
    (json.dumps({"extfs": {"use_iam": "True"}}), 'extfs.use_iam must be "true" or "false"'),
    (json.dumps({"extfs": {"region": 1}}), "extfs.region must be a string"),
])
def test_bad_specs(spec, message):
    with pytest.raises(InvalidParameter, match=message):
        parse_spec(spec)


def test_empty_spec_is_parquet():
    assert parse_spec("") == ("parquet", {})
    assert parse_spec(json.dumps({"format": "", "extfs": {"load_frequency": "60"}})) == (
        "parquet", {"load_frequency": "60"})


def test_redacted_spec():
    out = json.loads(redacted_spec(SPEC))
    assert out["extfs"]["access_key_id"] == "***" and out["extfs"]["access_key_value"] == "***"
    assert out["extfs"]["region"] == "eu-west-1"
    assert redacted_spec("not json") == "not json"


def _external(**kw) -> schema_pb2.CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c", external_source="s3://h:9000/b/p/", external_spec=SPEC, **kw)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR, external_field="emb").type_params.add(
        key="dim", value="4")
    pb.fields.add(name="s", data_type=DataType.VARCHAR, external_field="s").type_params.add(
        key="max_length", value="8")
    return pb


def test_external_schema_gets_the_virtual_pk_and_nullable_fields():
    schema = CollectionSchema.from_proto(_external(), "c")
    assert schema.is_external and schema.primary_field.name == VIRTUAL_PK_FIELD
    assert schema.primary_field.auto_id and schema.primary_field.dtype == DataType.INT64
    assert schema.field("s").nullable and schema.field("s").external_field == "s"
    again = CollectionSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    pb = schema_pb2.CollectionSchema()
    schema.to_proto(pb)
    assert pb.external_source == "s3://h:9000/b/p/" and [f.external_field for f in pb.fields] == ["emb", "s", ""]


def _pk(pb):
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True, external_field="id")


def _unmapped(pb):
    pb.fields.add(name="x", data_type=DataType.INT64)


def _duplicate(pb):
    pb.fields.add(name="x", data_type=DataType.INT64, external_field="s")


def _dynamic(pb):
    pb.enable_dynamic_field = True


def _partition_key(pb):
    pb.fields.add(name="k", data_type=DataType.INT64, external_field="k", is_partition_key=True)


def _sparse(pb):
    pb.fields.add(name="sp", data_type=DataType.SPARSE_FLOAT_VECTOR, external_field="sp")


def _no_vector(pb):
    del pb.fields[0]


def _namespace(pb):
    pb.enable_namespace = True


def _spec_only(pb):
    pb.external_source = ""


@pytest.mark.parametrize("change,message", [
    (_pk, "external collection c does not support primary key field id"),
    (_unmapped, "field 'x' in external collection c must have external_field mapping"),
    (_duplicate, "duplicate external_field"),
    (_dynamic, "does not support dynamic field"),
    (_partition_key, "does not support partition key"),
    (_sparse, "does not support sparse vector"),
    (_no_vector, "at least one vector field"),
    (_namespace, "does not support namespace"),
    (_spec_only, "external_source is empty"),
])
def test_bad_external_schemas(change, message):
    pb = _external()
    change(pb)
    with pytest.raises(InvalidParameter, match=message):
        CollectionSchema.from_proto(pb, "c")


def test_virtual_pk_name_and_external_field_elsewhere_are_refused():
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name=VIRTUAL_PK_FIELD, data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="4")
    with pytest.raises(InvalidParameter, match='field name "__virtual_pk__" is reserved for internal use'):
        CollectionSchema.from_proto(pb, "c")
    pb.fields[0].name = "id"
    pb.fields[1].external_field = "emb"
    with pytest.raises(InvalidParameter, match="only for the fields of an external collection"):
        CollectionSchema.from_proto(pb, "c")

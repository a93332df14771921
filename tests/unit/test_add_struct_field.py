"""AddCollectionStructField's rules (Milvus 3.0 ``add_collection_struct_field``): the proxy's check of
the struct (vecdb.struct_fields.added_struct_field: nullable, a new name, sub-fields as at create,
Milvus's messages with 1100) and the coord's change (vecdb.coord.schema_change through DdlManager, on
the memory backends, and as the JSON the coord's RPC carries): ids above every id given, the schema
version, repeats; rows written before read every sub-field as an empty list (segment files, growing
segments taking the schema, log records appended after)."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb import errors
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.schema_change import SchemaChange
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.querynode.segment import Segment
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryMetaStore, MemoryObjectStore
from vecdb.struct_fields import added_struct_field


def _schema() -> CollectionSchema:
    return CollectionSchema("c", [
        FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2),
    ])


def _spb(name: str = "chunks", nullable: bool = True, cap: int = 3) -> schema_pb2.StructArrayFieldSchema:
    spb = schema_pb2.StructArrayFieldSchema(name=name, nullable=nullable)
    spb.fields.add(name="text", data_type=DataType.ARRAY, element_type=DataType.VARCHAR, nullable=nullable,
                   type_params=[{"key": "max_length", "value": "8"}, {"key": "max_capacity", "value": str(cap)}])
    spb.fields.add(name="emb", data_type=DataType.ARRAY_OF_VECTOR, element_type=DataType.FLOAT_VECTOR,
                   nullable=nullable,
                   type_params=[{"key": "dim", "value": "2"}, {"key": "max_capacity", "value": str(cap)}])
    return spb


@pytest.fixture
def ddl():
    meta = MemoryMetaStore()
    manager = DdlManager(Catalog(meta), IdAllocator(meta), TimestampOracle(meta))
    manager.create_collection("", "c", _schema(), 1, 0, {}, 0)
    return manager


def _add(ddl, spb=None, retry: bool = False):
    info = ddl.catalog.get("default", "c")
    st, subs = added_struct_field(info.schema, spb or _spb())
    change = SchemaChange(add_struct=st, add_struct_fields=subs)
    change = SchemaChange.from_dict(change.to_dict())  # as the coord's RPC carries it
    return ddl.alter_collection_schema("", "c", change, retry=retry)


def test_struct_added_with_new_ids_and_version(ddl):
    before = ddl.catalog.get("default", "c").schema
    assert _add(ddl) == []
    s = ddl.catalog.get("default", "c").schema
    st = s.struct("chunks")
    assert st is not None and st.nullable and st.max_capacity == 3
    assert st.field_id > max(f.field_id for f in before.fields)
    subs = s.sub_fields("chunks")
    assert [f.name for f in subs] == ["chunks[text]", "chunks[emb]"]
    assert [f.field_id for f in subs] == [st.field_id + 1, st.field_id + 2]
    assert not any(f.nullable for f in subs)  # the struct's flag, not the sub-fields'
    assert subs[1].dtype == DataType.ARRAY_OF_VECTOR and subs[1].dim == 2
    assert s.version == before.version + 1
    assert "chunks[emb]" in [f.name for f in s.indexed_vector_fields]
    pb = schema_pb2.CollectionSchema()
    s.to_proto(pb)
    assert pb.struct_array_fields[0].nullable and all(f.nullable for f in pb.struct_array_fields[0].fields)
    assert CollectionSchema.from_dict(s.to_dict()).struct("chunks").nullable


def test_refusals(ddl):
    info = ddl.catalog.get("default", "c")
    cases = [(_spb(nullable=False), "added field must be nullable"),
             (_spb(name="v"), "duplicate field name: v"),
             (_spb(cap=0), r"maximum capacity specified for a Array"),
             (schema_pb2.StructArrayFieldSchema(name="e", nullable=True), "has no sub-fields")]
    bad = _spb()
    bad.fields.add(name="js", data_type=DataType.JSON, nullable=True)
    cases.append((bad, "can only be array"))
    for spb, msg in cases:
        with pytest.raises(errors.InvalidParameter, match=msg) as e:
            added_struct_field(info.schema, spb)
        assert e.value.code == 1100
    _add(ddl)
    with pytest.raises(errors.InvalidParameter, match="duplicate field name: chunks"):
        _add(ddl)
    assert _add_again(ddl) == []  # a repeat of the coord's RPC that finds it made


def _add_again(ddl):
    info = ddl.catalog.get("default", "c")
    st = info.schema.struct("chunks")
    return ddl.alter_collection_schema("", "c", SchemaChange(add_struct=st, add_struct_fields=info.schema.sub_fields(
        "chunks")), retry=True)


def test_coord_checks_again(ddl):
    info = ddl.catalog.get("default", "c")
    st, subs = added_struct_field(info.schema, _spb())
    st.nullable = False
    with pytest.raises(errors.InvalidParameter, match="must be nullable"):
        ddl.alter_collection_schema("", "c", SchemaChange(add_struct=st, add_struct_fields=subs))


def test_rows_written_before_hold_no_struct(ddl):
    old = ddl.catalog.get("default", "c").schema
    _add(ddl)
    new = ddl.catalog.get("default", "c").schema
    cols = {"id": np.arange(3, dtype=np.int64), "v": np.zeros((3, 2), np.float32)}
    store = MemoryObjectStore()
    sf.write_segment(store, "p/", old, cols, np.arange(3, dtype=np.uint64))
    got, _ = sf.read_segment(store, "p/", new)
    assert [len(r) for r in got["chunks[text]"]] == [0, 0, 0]
    assert [r.shape for r in got["chunks[emb]"]] == [(0, 2)] * 3
    seg = Segment(0, 0, old)
    seg.append(cols, 3, 1)
    seg.take_schema(new)  # a growing segment: its rows so far hold no struct
    seg.append(cols, 3, 2)  # a log record written before the struct was added
    text = seg.column("chunks[text]")
    assert len(text) == 6 and all(len(r) == 0 for r in text)
    assert all(r.shape == (0, 2) for r in seg.column("chunks[emb]"))

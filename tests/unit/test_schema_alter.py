"""AlterCollectionSchema's rules on the coord (vecdb.coord.schema_change through DdlManager, on the
memory backends, and once through the coord's RPC): which fields and functions can be dropped
(Milvus's messages, 1100), the schema version, the index dropped with its field, ``max_field_id``
(a dropped field's id never given again), repeats; and a function output computed for rows written
without it (vecdb.function_columns: segment files, growing segments taking the schema)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb import errors
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.schema_change import SchemaChange
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.function_columns import function_output
from vecdb.querynode.segment import Segment
from vecdb.schema import CollectionSchema, DataType, FieldSchema, FunctionSchema, FunctionType
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryMetaStore, MemoryObjectStore


def _schema() -> CollectionSchema:
    text = FieldSchema("text", DataType.VARCHAR, max_length=100, type_params={"enable_analyzer": "true"})
    return CollectionSchema("c", [
        FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2),
        FieldSchema("k", DataType.INT64, field_id=102, is_partition_key=True),
        FieldSchema("c", DataType.INT64, field_id=103, is_clustering_key=True),
        FieldSchema("s", DataType.INT64, field_id=104),
        FieldSchema(**{**text.__dict__, "field_id": 105}),
    ])


def _bm25() -> SchemaChange:
    out = FieldSchema("sparse", DataType.SPARSE_FLOAT_VECTOR)
    fn = FunctionSchema("bm", FunctionType.BM25, ["text"], ["sparse"])
    return SchemaChange(add_field=out, add_function=fn,
                        index={"index_name": "", "index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25",
                               "params": {}})


@pytest.fixture
def ddl():
    meta = MemoryMetaStore()
    catalog = Catalog(meta)
    manager = DdlManager(catalog, IdAllocator(meta), TimestampOracle(meta))
    manager.create_collection("", "c", _schema(), 1, 0, {}, 4)
    manager.create_index("", "c", "s", "s_idx", "STL_SORT", "", {})
    yield manager
    catalog.close()


def _info(ddl):
    return ddl.catalog.get("default", "c")


@pytest.mark.parametrize("field, message", [
    ("id", "cannot drop primary key field: id"),
    ("k", "cannot drop partition key field: k"),
    ("c", "cannot drop clustering key field: c"),
    ("v", "cannot drop the last vector field: v"),
    ("nope", "field not found: nope"),
    ("$meta", "cannot drop system field: $meta"),
])
def test_drop_field_refused(ddl, field, message):
    with pytest.raises(errors.InvalidParameter, match=message.replace("$", r"\$")) as e:
        ddl.alter_collection_schema("", "c", SchemaChange(drop_field=field))
    assert e.value.code == 1100
    assert _info(ddl).schema.version == 0


def test_drop_field_drops_its_index_and_its_id_is_not_given_again(ddl):
    info = _info(ddl)
    idx = info.index_for_field("s").index_id
    assert ddl.alter_collection_schema("", "c", SchemaChange(drop_field="s")) == [idx]
    info = _info(ddl)
    assert [f.name for f in info.schema.fields] == ["id", "v", "k", "c", "text"]
    assert info.schema.version == 1 and info.schema.update_ts > 0 and info.indexes == []
    assert ddl.alter_collection_schema("", "c", SchemaChange(drop_field="s"), retry=True) == []  # a repeat
    with pytest.raises(errors.InvalidParameter, match="field not found: s"):
        ddl.alter_collection_schema("", "c", SchemaChange(drop_field="s"))
    # drop the field with the largest id, then add: the id moves on past it
    ddl.alter_collection_schema("", "c", SchemaChange(drop_field_id=105))
    assert _info(ddl).schema.max_field_id == 105
    fid = ddl.add_collection_field("", "c", FieldSchema("x", DataType.INT64, nullable=True))
    assert fid == 106
    assert CollectionSchema.from_dict(_info(ddl).schema.to_dict()).max_field_id == 105  # persisted


def test_function_field_add_and_drop(ddl):
    ddl.alter_collection_schema("", "c", _bm25())
    info = _info(ddl)
    out = info.schema.field("sparse")
    assert out is not None and out.is_function_output and out.field_id == 106
    assert info.schema.function("bm") is not None and info.schema.version == 1
    assert info.index_for_field("sparse").metric_type == "BM25"
    assert ddl.alter_collection_schema("", "c", _bm25(), retry=True) == []  # a repeat
    with pytest.raises(errors.InvalidParameter, match="duplicate field name: sparse"):
        ddl.alter_collection_schema("", "c", _bm25())
    for change, message in [
        (SchemaChange(drop_field="text"), "field is referenced by function bm as input"),
        (SchemaChange(drop_field="sparse"), "field is referenced by function bm as output, drop function first"),
        (SchemaChange(drop_function="bm"), "BM25 function must be dropped with its output field"),
        (SchemaChange(drop_function="no", drop_function_outputs=True), "function not found: no"),
    ]:
        with pytest.raises(errors.InvalidParameter, match=message):
            ddl.alter_collection_schema("", "c", change)
    # the BM25 output is a vector field: with it, v is not the last one
    ddl.alter_collection_schema("", "c", SchemaChange(drop_field="v"))
    with pytest.raises(errors.InvalidParameter, match="it would leave no vector field"):
        ddl.alter_collection_schema("", "c", SchemaChange(drop_function="bm", drop_function_outputs=True))


def test_drop_function_field_drops_its_index(ddl):
    ddl.alter_collection_schema("", "c", _bm25())
    idx = _info(ddl).index_for_field("sparse").index_id
    assert ddl.alter_collection_schema("", "c", SchemaChange(drop_function="bm", drop_function_outputs=True)) == [idx]
    info = _info(ddl)
    assert info.schema.field("sparse") is None and info.schema.functions == [] and info.schema.version == 2
    assert info.schema.max_field_id == 106


def test_change_round_trips():
    change = _bm25()
    assert SchemaChange.from_dict(change.to_dict()) == change
    assert SchemaChange.from_dict(SchemaChange(drop_field_id=7).to_dict()).drop_field_id == 7


def _with_bm25(schema: CollectionSchema) -> CollectionSchema:
    out = CollectionSchema.from_dict(schema.to_dict())
    out.fields.append(FieldSchema("sparse", DataType.SPARSE_FLOAT_VECTOR, field_id=106, is_function_output=True))
    out.functions.append(FunctionSchema("bm", FunctionType.BM25, ["text"], ["sparse"]))
    out.version += 1
    return out


def _columns(n):
    return {"id": np.arange(n, dtype=np.int64), "v": np.zeros((n, 2), np.float32),
            "k": np.zeros(n, np.int64), "c": np.zeros(n, np.int64), "s": np.arange(n, dtype=np.int64),
            "text": np.array([f"apple w{i}" for i in range(n)], object)}


def test_rows_written_before_a_function_get_its_output():
    old, new = _schema(), _with_bm25(_schema())
    cols = _columns(3)
    want = function_output(new, "sparse", cols)
    assert want is not None and len(want) == 3
    assert function_output(new, "s", cols) is None
    store = MemoryObjectStore()
    sf.write_segment(store, "p/", old, cols, np.arange(3, dtype=np.uint64))
    got, _ = sf.read_segment(store, "p/", new)  # the segment file has no output column
    assert list(got["sparse"]) == list(want)
    got, _ = sf.read_segment(store, "p/", new, skip=["text"])  # its input read for it
    assert "text" not in got and len(got["sparse"]) == 3
    seg = Segment(0, 0, old)
    seg.append(cols, 3, 1)
    seg.take_schema(new)  # a growing segment: computed over its rows
    assert len(seg.column("sparse")) == 3
    seg.append(_columns(2), 2, 2)  # a log record written before the function: computed at append
    assert len(seg.column("sparse")) == 5
    dropped = CollectionSchema.from_dict(new.to_dict())
    dropped.fields = [f for f in dropped.fields if f.name != "s"]
    dropped.version += 1
    seg.take_schema(dropped)  # a field dropped: its column goes, appends carrying it still work
    assert "s" not in seg._cols
    seg.append(_columns(1), 1, 3)
    assert seg.n == 6

"""AUTOINDEX kept as the client asked for it (Milvus's UserIndexParams) beside the HNSW it builds, and an
explicit index's request kept too, so that an index without them is one recorded before they were kept:
``vecdb.proxy.rpc_index.vector_index_params``, ``IndexInfo.same_as`` and the coord's create_index (tests/e2e/
test_autoindex_describe.py runs it through pymilvus)."""

from __future__ import annotations

import json

import pytest

from vecdb import errors
from vecdb.catalog_model import CollectionInfo, IndexInfo
from vecdb.coord.catalog import Catalog
from vecdb.coord.ddl import DdlManager
from vecdb.coord.resource_groups import ResourceGroups
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.proxy.rpc_index import vector_index_params
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage.memory import MemoryMetaStore


def _field(dtype=DataType.FLOAT_VECTOR, dim=8):
    return FieldSchema("v", dtype, dim=dim)


def test_autoindex_builds_hnsw_and_keeps_what_was_asked():
    assert vector_index_params("AUTOINDEX", "IP", _field(), {}) == (
        "HNSW", "IP", {"M": 18, "efConstruction": 240}, {"index_type": "AUTOINDEX", "metric_type": "IP"})
    assert vector_index_params("", "", _field(), {})[3] == {"index_type": "AUTOINDEX", "metric_type": "COSINE"}
    assert vector_index_params("autoindex", "", _field(), {})[3] == {"index_type": "AUTOINDEX", "metric_type": "COSINE"}
    assert vector_index_params("AUTOINDEX", "", _field(DataType.BINARY_VECTOR), {})[:2] == ("BIN_FLAT", "HAMMING")


def test_an_explicit_index_keeps_what_was_asked_too():
    """So that an index recorded without user params is one from before they were kept (IndexInfo.same_as);
    the text of each parameter given, as Milvus keeps a request's params (a CDC target is created from them)."""
    built = vector_index_params("hnsw", "L2", _field(), {"M": 8})
    assert built == ("HNSW", "L2", {"M": 8, "efConstruction": 360}, {"index_type": "HNSW", "metric_type": "L2",
                                                                      "M": "8"})
    assert vector_index_params("FLAT", "", _field(), {})[3] == {"index_type": "FLAT", "metric_type": "COSINE"}


def test_autoindex_refuses_build_params_on_dense_and_binary_vectors():
    for dtype in (DataType.FLOAT_VECTOR, DataType.BINARY_VECTOR):
        with pytest.raises(errors.InvalidParameter, match="only metric type can be passed when use AutoIndex") as e:
            vector_index_params("AUTOINDEX", "", _field(dtype), {"M": 16})
        assert e.value.code == 1100
    sparse = vector_index_params("AUTOINDEX", "IP", _field(DataType.SPARSE_FLOAT_VECTOR, 0), {"drop_ratio_build": 0.2})
    assert sparse[0] == "SPARSE_INVERTED_INDEX" and sparse[3]["drop_ratio_build"] == "0.2"


def test_autoindex_refuses_index_properties_as_milvus_does():
    """Milvus counts ``mmap.enabled`` among an AUTOINDEX's parameters (internal/proxy/task_index.go
    parseIndexParams: more than index_type and metric_type is "only metric type can be passed when use
    AutoIndex"); it is set afterwards with alter_index_properties."""
    with pytest.raises(errors.InvalidParameter, match="only metric type can be passed when use AutoIndex, got "
                                                      "mmap.enabled") as e:
        vector_index_params("AUTOINDEX", "L2", _field(), {"mmap.enabled": True})
    assert e.value.code == 1100


def test_same_as_compares_user_params_and_takes_an_old_record_as_its_build():
    hnsw = {"M": 18, "efConstruction": 240}
    auto = {"index_type": "AUTOINDEX", "metric_type": "IP"}
    explicit = {"index_type": "HNSW", "metric_type": "IP", "M": "18", "efConstruction": "240"}
    idx = IndexInfo(1, "v", "v", "HNSW", "IP", dict(hnsw), user_params=dict(auto))
    assert idx.same_as("HNSW", "IP", hnsw, auto)
    assert not idx.same_as("HNSW", "IP", hnsw, explicit)  # an explicit HNSW is another index, as Milvus says
    assert not idx.same_as("HNSW", "IP", {"M": 16, "efConstruction": 240}, auto)  # another build
    # the reverse order: an explicit HNSW 18/240, then AUTOINDEX (which builds just that) is refused too
    named = IndexInfo(1, "v", "v", "HNSW", "IP", dict(hnsw), user_params=dict(explicit))
    assert not named.same_as("HNSW", "IP", hnsw, auto)
    # the explicit index again: its build decides (the params as given, or left to their defaults)
    assert named.same_as("HNSW", "IP", hnsw, {"index_type": "HNSW", "metric_type": "IP", "M": "18"})
    old = IndexInfo(1, "v", "v", "HNSW", "IP", dict(hnsw))  # recorded before user params were kept
    assert old.same_as("HNSW", "IP", hnsw, auto) and old.same_as("HNSW", "IP", hnsw, explicit)
    assert not old.same_as("HNSW", "L2", hnsw, auto)


def test_the_coord_refuses_autoindex_on_an_explicit_index_and_accepts_it_on_a_legacy_one():
    meta = MemoryMetaStore()
    catalog = Catalog(meta)
    ddl = DdlManager(catalog, IdAllocator(meta), TimestampOracle(meta), ResourceGroups(meta, lambda: {"1": "local"}))
    try:
        schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), _field()])
        for name in ("named", "legacy"):
            ddl.create_collection("", name, schema, 1, 0, {}, 0)
        hnsw = {"M": 18, "efConstruction": 240}
        auto = vector_index_params("AUTOINDEX", "L2", _field(), {})
        named = vector_index_params("HNSW", "L2", _field(), dict(hnsw))
        assert named[:3] == auto[:3]  # the same build
        ddl.create_index("", "named", "v", "", *named)
        ddl.create_index("", "named", "v", "", *named)  # again: the same index
        with pytest.raises(errors.IndexDuplicate, match="at most one distinct index is allowed per field"):
            ddl.create_index("", "named", "v", "", *auto)
        # an index written before user params were kept (none): whatever builds it is taken as it
        ddl.create_index("", "legacy", "v", "", "HNSW", "L2", dict(hnsw))
        ddl.create_index("", "legacy", "v", "", *auto)
        ddl.create_index("", "legacy", "v", "", *named)
        assert catalog.get("default", "legacy").indexes[0].user_params == {}
        with pytest.raises(errors.IndexDuplicate):
            ddl.create_index("", "legacy", "v", "", "HNSW", "L2", {"M": 16, "efConstruction": 240})
    finally:
        catalog.close()


def test_a_catalog_record_without_user_params_loads():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), _field()])
    index = IndexInfo(3, "v", "v", "HNSW", "IP", {"M": 18}, user_params={"index_type": "AUTOINDEX"})
    info = CollectionInfo(7, "default", "c", schema, 1, 0, 1, indexes=[index])
    raw = json.loads(info.to_json())
    assert CollectionInfo.from_json(json.dumps(raw).encode()).indexes[0].user_params == {"index_type": "AUTOINDEX"}
    del raw["indexes"][0]["user_params"]
    assert CollectionInfo.from_json(json.dumps(raw).encode()).indexes[0].user_params == {}


def test_keys_a_newer_version_writes_are_left_out():
    """A catalog entry with a key this version's dataclasses lack (a newer writer, while a rolling upgrade
    runs both) still loads, as FieldSchema.from_dict leaves such keys out."""
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), _field()])
    index = IndexInfo(3, "v", "v", "HNSW", "IP", {"M": 18}, user_params={"index_type": "HNSW"})
    info = CollectionInfo(7, "default", "c", schema, 1, 0, 1, indexes=[index])
    raw = json.loads(info.to_json())
    raw["indexes"][0]["future_key"] = {"x": 1}
    raw["partitions"] = [{"id": 9, "name": "_default", "created_ts": 1, "future_key": 2}]
    raw["future_key"] = True
    back = CollectionInfo.from_json(json.dumps(raw).encode())
    assert back.indexes == [index] and back.partitions[0].name == "_default" and back.id == 7

"""AUTOINDEX kept as the client asked for it (Milvus's UserIndexParams) beside the HNSW it builds:
``vecdb.proxy.rpc_index.vector_index_params`` and ``IndexInfo.same_as`` (tests/e2e/
test_autoindex_describe.py runs it through pymilvus)."""

from __future__ import annotations

import json

import pytest

from vecdb import errors
from vecdb.catalog_model import CollectionInfo, IndexInfo
from vecdb.proxy.rpc_index import vector_index_params
from vecdb.schema import CollectionSchema, DataType, FieldSchema


def _field(dtype=DataType.FLOAT_VECTOR, dim=8):
    return FieldSchema("v", dtype, dim=dim)


def test_autoindex_builds_hnsw_and_keeps_what_was_asked():
    assert vector_index_params("AUTOINDEX", "IP", _field(), {}) == (
        "HNSW", "IP", {"M": 18, "efConstruction": 240}, {"index_type": "AUTOINDEX", "metric_type": "IP"})
    assert vector_index_params("", "", _field(), {})[3] == {}  # no index type: built as before, no user params
    assert vector_index_params("autoindex", "", _field(), {})[3] == {"index_type": "AUTOINDEX", "metric_type": "COSINE"}
    assert vector_index_params("AUTOINDEX", "", _field(DataType.BINARY_VECTOR), {})[:2] == ("BIN_FLAT", "HAMMING")
    assert vector_index_params("HNSW", "L2", _field(), {"M": 8})[3] == {}


def test_autoindex_refuses_build_params_on_dense_and_binary_vectors():
    for dtype in (DataType.FLOAT_VECTOR, DataType.BINARY_VECTOR):
        with pytest.raises(errors.InvalidParameter, match="only metric type can be passed when use AutoIndex") as e:
            vector_index_params("AUTOINDEX", "", _field(dtype), {"M": 16})
        assert e.value.code == 1100
    sparse = vector_index_params("AUTOINDEX", "IP", _field(DataType.SPARSE_FLOAT_VECTOR, 0), {"drop_ratio_build": 0.2})
    assert sparse[0] == "SPARSE_INVERTED_INDEX" and sparse[3]["drop_ratio_build"] == "0.2"


def test_same_as_compares_user_params_and_takes_an_old_record_as_its_build():
    hnsw = {"M": 18, "efConstruction": 240}
    auto = {"index_type": "AUTOINDEX", "metric_type": "IP"}
    idx = IndexInfo(1, "v", "v", "HNSW", "IP", dict(hnsw), user_params=dict(auto))
    assert idx.same_as("HNSW", "IP", hnsw, auto)
    assert not idx.same_as("HNSW", "IP", hnsw, {})  # an explicit HNSW is another index, as Milvus says
    old = IndexInfo(1, "v", "v", "HNSW", "IP", dict(hnsw))  # recorded before user params were kept
    assert old.same_as("HNSW", "IP", hnsw, auto) and old.same_as("HNSW", "IP", hnsw, {})


def test_a_catalog_record_without_user_params_loads():
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), _field()])
    index = IndexInfo(3, "v", "v", "HNSW", "IP", {"M": 18}, user_params={"index_type": "AUTOINDEX"})
    info = CollectionInfo(7, "default", "c", schema, 1, 0, 1, indexes=[index])
    raw = json.loads(info.to_json())
    assert CollectionInfo.from_json(json.dumps(raw).encode()).indexes[0].user_params == {"index_type": "AUTOINDEX"}
    del raw["indexes"][0]["user_params"]
    assert CollectionInfo.from_json(json.dumps(raw).encode()).indexes[0].user_params == {}

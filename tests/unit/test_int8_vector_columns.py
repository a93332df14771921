"""INT8_VECTOR (data type 105): index params (HNSW / FLAT / AUTOINDEX only, L2 / IP / COSINE), the
column type, and insert / search vectors decoded from pymilvus's wire form as int8."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.grpc_gen import common_pb2, schema_pb2

from vecdb.column_defaults import empty_column
from vecdb.errors import InvalidParameter
from vecdb.index import validate_index_params
from vecdb.index.base import as_float32
from vecdb.proxy.fielddata import parse_placeholder_group
from vecdb.schema import DataType, FieldSchema

DIM = 8


def _field():
    f = FieldSchema("v", DataType.INT8_VECTOR)
    f.dim = DIM
    return f


def test_index_params():
    assert validate_index_params("HNSW", "L2", DataType.INT8_VECTOR, DIM, {"M": 8})["index_type"] == "HNSW"
    assert validate_index_params("FLAT", "IP", DataType.INT8_VECTOR, DIM, {})["metric_type"] == "IP"
    assert validate_index_params("AUTOINDEX", "COSINE", DataType.INT8_VECTOR, DIM, {})["index_type"] == "HNSW"
    for itype in ("IVF_FLAT", "IVF_PQ", "SCANN"):
        with pytest.raises(InvalidParameter, match=f"data type Int8Vector can't build with this index {itype}"):
            validate_index_params(itype, "L2", DataType.INT8_VECTOR, DIM, {"nlist": 4, "m": 2})
    with pytest.raises(InvalidParameter, match="metric type HAMMING not found"):
        validate_index_params("HNSW", "HAMMING", DataType.INT8_VECTOR, DIM, {})


def test_column_and_search_vectors_are_int8():
    assert empty_column(_field(), 3).dtype == np.int8 and empty_column(_field(), 3).shape == (3, DIM)
    q = np.array([[-128, -1, 0, 1, 2, 3, 126, 127], [5] * DIM], np.int8)
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.Int8Vector, values=[r.tobytes() for r in q])])
    got = parse_placeholder_group(group.SerializeToString(), _field())
    assert got.dtype == np.int8 and got.tolist() == q.tolist()
    assert as_float32(got, DIM).tolist() == q.astype(np.float32).tolist()
    wrong = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.FloatVector, values=[np.ones(DIM, np.float32).tobytes()])])
    with pytest.raises(InvalidParameter, match="does not match the type of field"):
        parse_placeholder_group(wrong.SerializeToString(), _field())
    assert schema_pb2.DataType.Name(int(DataType.INT8_VECTOR)) == "Int8Vector"

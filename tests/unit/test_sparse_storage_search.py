"""SPARSE_FLOAT_VECTOR below the server: validation of pymilvus's payloads (and of hand-made
ones pymilvus would not send), the stored forms (log records, segment files, internal RPC
columns), postings search against a dense brute force, and the index parameters."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import schema_pb2

from vecdb import sparse
from vecdb.column_codec import decode_columns, encode_columns
from vecdb.errors import IllegalSchema, InvalidParameter
from vecdb.index.params import validate_index_params, validate_search_params
from vecdb.proxy.fielddata import columns_from_field_data, parse_placeholder_group
from vecdb.proxy.fieldencode import field_data_from_columns, max_sparse_dim
from vecdb.rpc.columns import from_column, to_column
from vecdb.schema import CollectionSchema, DataType
from vecdb.storage.memory import MemoryObjectStore
from vecdb.storage.segments import read_segment, write_segment


def _schema(dim_param: str | None = None) -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    f = pb.fields.add(name="sp", data_type=DataType.SPARSE_FLOAT_VECTOR)
    if dim_param is not None:
        f.type_params.add(key="dim", value=dim_param)
    return CollectionSchema.from_proto(pb, "c")


def _row(pairs) -> bytes:
    return b"".join(struct.pack("<If", i, v) for i, v in pairs)


def _fd(rows: list[bytes]):
    fd = schema_pb2.FieldData(type=DataType.SPARSE_FLOAT_VECTOR, field_name="sp")
    fd.vectors.sparse_float_vector.contents.extend(rows)
    ids = schema_pb2.FieldData(type=DataType.INT64, field_name="id")
    ids.scalars.long_data.data.extend(range(len(rows)))
    return [ids, fd]


def test_schema_takes_a_sparse_field_without_dim():
    s = _schema()
    assert s.field("sp").dtype == DataType.SPARSE_FLOAT_VECTOR and s.field("sp").dim == 0
    assert [f.name for f in s.vector_fields] == ["sp"]
    with pytest.raises(IllegalSchema, match="dim should not be specified"):
        _schema("8")
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="sp", data_type=DataType.SPARSE_FLOAT_VECTOR, is_primary_key=True)
    with pytest.raises(IllegalSchema, match="primary key should be Int64 or VarChar"):
        CollectionSchema.from_proto(pb, "c")


def test_every_pymilvus_input_form_decodes_to_the_same_rows():
    schema = _schema()
    fields_info = [{"name": "id", "type": DataType.INT64, "is_primary": True, "auto_id": False, "params": {}},
                   {"name": "sp", "type": DataType.SPARSE_FLOAT_VECTOR, "params": {}}]
    want = [_row([(1, 0.5), (7, 2.0)]), b"", _row([(3, 1.5)])]
    forms = [
        [{1: 0.5, 7: 2.0}, {}, {3: 1.5}],  # dicts
        [[(7, 2.0), (1, 0.5)], [], [(3, 1.5)]],  # (index, value) pairs, unsorted: pymilvus sorts
    ]
    for sp in forms:
        req = Prepare.batch_insert_param("c", [{"name": "id", "type": DataType.INT64, "values": [0, 1, 2]},
                                               {"name": "sp", "type": DataType.SPARSE_FLOAT_VECTOR,
                                                "values": sp}], "", fields_info)
        cols = columns_from_field_data(schema, req.fields_data, req.num_rows)
        assert cols["sp"].dtype == object and cols["sp"].tolist() == want
    # and back: pymilvus's own parser reads our reply
    fd = field_data_from_columns(schema, cols, ["sp"])[0]
    assert fd.vectors.dim == 8 and fd.vectors.sparse_float_vector.dim == 8
    from pymilvus.client.entity_helper import sparse_proto_to_rows
    assert sparse_proto_to_rows(fd.vectors.sparse_float_vector) == [{1: 0.5, 7: 2.0}, {}, {3: 1.5}]
    assert max_sparse_dim([]) == 0 and max_sparse_dim([b""]) == 0


@pytest.mark.parametrize(("rows", "message"), [
    ([_row([(1, 1.0)]), b"\x01\x00\x00"], r"invalid data length .* row 1 has 3 bytes"),
    ([_row([(5, 1.0), (2, 1.0)])], r"unsorted or same indices in sparse float vector of field \(sp\): row 0"),
    ([_row([(1, 1.0)]), _row([(2, 1.0), (2, 3.0)])], r"unsorted or same indices .* row 1"),
    ([_row([(2**32 - 1, 1.0)])], r"invalid index .* must be less than 2\^32-1"),
    ([_row([(1, 1.0)]), _row([(2, float("nan"))])], r"the 1th sparse float vector .* NaN or infinity"),
    ([_row([(2, float("inf"))])], r"NaN or infinity"),
    # Milvus: "negative value in sparse float vector" (typeutil.ValidateSparseFloatRows; code 65535 there)
    ([_row([(1, 1.0)]), _row([(2, 0.5), (4, -1e-30)])],
     r"negative value in sparse float vector of field \(sp\): row 1 has value -1e-30 at index 4"),
])
def test_bad_rows_are_refused_with_invalid_parameter(rows, message):
    with pytest.raises(InvalidParameter, match=message) as e:
        columns_from_field_data(_schema(), _fd(rows), len(rows))
    assert e.value.code == 1100


def test_row_boundaries_are_not_an_ordering_and_empty_rows_pass():
    rows = [_row([(5, 1.0), (9, 1.0)]), b"", _row([(1, 1.0), (2, -0.0)]), b"", b""]  # 9 > 1 across rows: fine
    cols = columns_from_field_data(_schema(), _fd(rows), len(rows))
    assert cols["sp"].tolist() == rows


def test_wrong_payload_and_row_count():
    fd = _fd([_row([(1, 1.0)])])
    fd[1].vectors.ClearField("sparse_float_vector")
    fd[1].vectors.float_vector.data.extend([1.0])
    with pytest.raises(InvalidParameter, match="need sparse_float_vector, got float_vector"):
        columns_from_field_data(_schema(), fd, 1)
    with pytest.raises(InvalidParameter, match="num_rows"):
        columns_from_field_data(_schema(), _fd([_row([(1, 1.0)])]), 2)


def test_placeholder_group_of_sparse_queries():
    field = _schema().field("sp")
    out = parse_placeholder_group(Prepare._prepare_placeholder_str([{3: 1.0, 1: 2.0}, {0: 0.5}]), field)
    assert out.tolist() == [_row([(1, 2.0), (3, 1.0)]), _row([(0, 0.5)])]
    with pytest.raises(InvalidParameter, match="does not match the type of field"):
        parse_placeholder_group(Prepare._prepare_placeholder_str([[0.1, 0.2]]), field)
    # Milvus's query nodes refuse it too (segcore: "Invalid sparse row: negative value")
    with pytest.raises(InvalidParameter, match=r"negative value in sparse float search vector of field \(sp\): "
                                               r"row 1 has value -2.0 at index 5") as e:
        parse_placeholder_group(Prepare._prepare_placeholder_str([{3: 1.0}, {0: 0.5, 5: -2.0}]), field)
    assert e.value.code == 1100


def test_stored_forms_round_trip():
    rows = [_row([(1, 0.5), (2**31, 2.0)]), b"", _row([(3, 1.5)])]
    col = sparse.column(rows)
    n, cols, _ = decode_columns(encode_columns({"a": np.arange(3), "sp": col, "b": np.ones(3)}, 3))
    assert cols["sp"].tolist() == rows and cols["a"].tolist() == [0, 1, 2] and cols["b"].tolist() == [1, 1, 1]
    assert from_column(to_column(col)).tolist() == rows
    store = MemoryObjectStore()
    schema = _schema()
    write_segment(store, "p/", schema, {"id": [np.arange(2), np.arange(2, 3)], "sp": [col[:2], col[2:]]},
                  np.arange(3, dtype=np.uint64))
    got, ts = read_segment(store, "p/", schema)
    assert got["sp"].tolist() == rows and got["id"].tolist() == [0, 1, 2]
    assert sparse.from_csr(sparse.to_csr(col)).tolist() == rows


def _dense(col, dims):
    out = np.zeros((len(col), dims))
    for r, row in enumerate(col.tolist()):
        p = np.frombuffer(row, sparse.PAIR)
        out[r, p["i"]] = p["v"]
    return out


def test_postings_search_equals_dense_brute_force():
    rng = np.random.default_rng(0)
    dims, n = 60, 500
    rows = []
    for _ in range(n):
        d = np.sort(rng.choice(dims, rng.integers(0, 8), replace=False))
        rows.append(_row(zip(d.tolist(), (rng.integers(-8, 16, len(d)) / 8).tolist(), strict=True)))
    col = sparse.column(rows)
    qs = sparse.column([_row(zip(np.sort(rng.choice(dims, 6, replace=False)).tolist(),
                                 (rng.integers(1, 16, 6) / 8).tolist(), strict=True)) for _ in range(7)])
    X, Q = _dense(col, dims), _dense(qs, dims)
    touched = (X != 0).astype(int) @ (Q != 0).T.astype(int) > 0  # rows sharing a dimension
    valid = rng.random(n) < 0.7
    D, O = sparse.search(sparse.Postings(col), qs, 20, valid)
    for qi in range(len(qs)):
        s = X @ Q[qi]
        cand = np.flatnonzero(touched[:, qi] & valid)
        order = cand[np.lexsort((cand, -s[cand]))][:20]
        m = len(order)
        assert O[qi, :m].tolist() == order.tolist() and np.all(O[qi, m:] == -1)
        np.testing.assert_allclose(D[qi, :m], s[order], atol=1e-6)
    # range: radius < s <= range_filter, limit applied after ordering
    per_q = sparse.range_search(sparse.Postings(col), qs, 0.5, 2.0, None, 1000)
    for qi, (d, o) in enumerate(per_q):
        s = X @ Q[qi]
        cand = np.flatnonzero(touched[:, qi] & (s > 0.5) & (s <= 2.0))
        assert o.tolist() == cand[np.lexsort((cand, -s[cand]))].tolist()
        np.testing.assert_allclose(d, s[o], atol=1e-6)
    # a view of the first rows only (a growing segment's snapshot)
    D2, O2 = sparse.search(sparse.Postings(col), qs, 20, None, n=100)
    assert O2.max() < 100


def test_drop_ratios_prune_the_smallest_values():
    col = sparse.column([_row([(0, 0.1), (1, 5.0)]), _row([(0, 0.2)]), _row([(1, 0.05)])])
    post = sparse.Postings(col, drop_ratio=0.5)  # the two smallest of four values go
    assert sorted(post.values.tolist()) == pytest.approx([0.2, 5.0])
    q = _row([(0, 1.0), (1, 0.01)])
    rows, s = post.scores(q, drop_ratio=0.5)  # the query keeps its larger half: dim 0
    assert rows.tolist() == [1] and s.tolist() == pytest.approx([0.2])


def test_index_params():
    sp = DataType.SPARSE_FLOAT_VECTOR
    assert validate_index_params("SPARSE_WAND", "IP", sp, 0, {"drop_ratio_build": "0.2"}) == {
        "index_type": "SPARSE_WAND", "metric_type": "IP", "drop_ratio_build": 0.2}
    assert validate_index_params("AUTOINDEX", "", sp, 0, {})["index_type"] == "SPARSE_INVERTED_INDEX"
    with pytest.raises(InvalidParameter, match=r"supported: \[IP\]"):
        validate_index_params("SPARSE_INVERTED_INDEX", "COSINE", sp, 0, {})
    with pytest.raises(InvalidParameter, match="can't build with this index HNSW"):
        validate_index_params("HNSW", "IP", sp, 0, {})
    with pytest.raises(InvalidParameter, match="can't build with this index SPARSE_WAND"):
        validate_index_params("SPARSE_WAND", "IP", DataType.FLOAT_VECTOR, 8, {})
    with pytest.raises(InvalidParameter, match="drop_ratio_build"):
        validate_index_params("SPARSE_WAND", "IP", sp, 0, {"drop_ratio_build": 1})
    assert validate_search_params("SPARSE_WAND", "IP", {"drop_ratio_search": 0.3}, 10) == {"drop_ratio_search": 0.3}
    with pytest.raises(InvalidParameter, match="drop_ratio_search"):
        validate_search_params("SPARSE_INVERTED_INDEX", "IP", {"drop_ratio_search": "x"}, 10)


def test_sealed_files_are_csr_npy_and_map(tmp_path):
    from vecdb.storage.local_objects import LocalObjectStore

    store = LocalObjectStore(str(tmp_path))
    rows = [_row([(4, 1.0), (9, 0.25)]), b"", _row([(0, -2.0)]), _row([(7, 3.5)])]
    schema = _schema()
    write_segment(store, "s/", schema, {"id": np.arange(4), "sp": [sparse.column(rows[:3]), sparse.column(rows[3:])]},
                  np.arange(4, dtype=np.uint64))
    fid = schema.field("sp").field_id
    indptr = np.load(tmp_path / "s" / f"{fid}.indptr.npy")
    assert indptr.tolist() == [0, 2, 2, 3, 4]
    assert np.load(tmp_path / "s" / f"{fid}.indices.npy").tolist() == [4, 9, 0, 7]
    assert np.load(tmp_path / "s" / f"{fid}.values.npy").tolist() == [1.0, 0.25, -2.0, 3.5]
    for mmap in (False, True):
        got, _ = read_segment(store, "s/", schema, mmap=mmap)
        assert got["sp"].tolist() == rows


class _GrowingSegment:
    """What segment_postings reads of a segment: its column and whether it is sealed."""

    def __init__(self, col):
        self.col, self.sealed = col, False

    def column(self, name, n):
        return self.col[:n]


def test_growing_segment_postings_cover_a_prefix_and_score_the_tail():
    rng = np.random.default_rng(5)
    rows = [_row(zip(np.sort(rng.choice(50, 5, replace=False)).tolist(), (rng.integers(1, 9, 5) / 8).tolist(),
                     strict=True)) for _ in range(20000)]
    seg = _GrowingSegment(sparse.column(rows))
    qs = sparse.column([_row([(1, 1.0), (7, 0.5), (30, 2.0)]), _row([(2, 0.25), (49, 1.0)])])
    post, tail = sparse.segment_postings(seg, "sp", 10000, 0.0)
    assert tail is None and post.ntotal == 10000
    for n in (10000, 11000, 14000, 9000):  # within max(4096, a quarter) past the prefix: postings + tail
        post2, tail = sparse.segment_postings(seg, "sp", n, 0.0)
        assert post2 is post and (tail is None) == (n <= 10000)
        valid = rng.random(n) < 0.9
        for k in (5, 40):
            got = sparse.search(post2, qs, k, valid, 0.0, n, tail)
            want = sparse.search(sparse.Postings(seg.col[:n]), qs, k, valid)
            assert got[1].tolist() == want[1].tolist()
            np.testing.assert_allclose(got[0], want[0])
        got_r = sparse.range_search(post2, qs, 1.0, 2.5, None, 100, 0.0, n, tail)
        want_r = sparse.range_search(sparse.Postings(seg.col[:n]), qs, 1.0, 2.5, None, 100)
        assert [o.tolist() for _, o in got_r] == [o.tolist() for _, o in want_r]
    post3, tail = sparse.segment_postings(seg, "sp", 14200, 0.0)  # past max(4096, a quarter): rebuilt
    assert post3 is not post and post3.ntotal == 14200 and tail is None

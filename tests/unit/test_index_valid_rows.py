"""Indexes over a nullable vector field's valid rows (vecdb.index.nullable): the label -> segment
row map, masks in segment offsets, every metric with null placeholders, growing adds, files with
and without the valid-rows bitmap (a file written before, placeholders included, still loads)."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.index import brute_force_range, brute_force_search, create_index, load_index, new_index
from vecdb.index.faiss_index import FaissIndex
from vecdb.index.index_file import append_to_index_file, read_meta
from vecdb.index.nullable import ValidRowsIndex, index_valid_rows
from vecdb.schema import DataType

DIM = 16
N = 3000


def _data(seed: int = 0, n: int = N, frac: float = 0.7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    valid = rng.random(n) >= frac
    col = x.copy()
    col[~valid] = 0  # the placeholder a segment stores for a null vector
    q = rng.standard_normal((20, DIM)).astype(np.float32)
    return col, valid, q


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth)) / truth.size


class _Idx:  # the catalog's IndexInfo, as new_index reads it
    def __init__(self, index_type, metric_type, params):
        self.index_type, self.metric_type, self.params = index_type, metric_type, params


class _Field:
    def __init__(self, dtype=DataType.FLOAT_VECTOR, dim=DIM):
        self.dtype, self.dim = dtype, dim


def test_rows_map_labels_to_segment_offsets():
    col, valid, q = _data()
    index = ValidRowsIndex(create_index("FLAT", "L2", DIM, {}, DataType.FLOAT_VECTOR))
    index.build(col, valid)
    assert index.ntotal == N and index.nvalid == int(valid.sum()) and index.inner.ntotal == int(valid.sum())
    assert np.array_equal(index.rows, np.flatnonzero(valid))
    # label i of the inner index is segment row rows[i]: the inner index's own top hit of a valid
    # row's vector is that row's label
    some = np.flatnonzero(valid)[[0, 5, 77]]
    d, o = index.search(col[some], 1, {})
    assert o[:, 0].tolist() == some.tolist() and np.allclose(d[:, 0], 0)


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("itype,params,sp", [
    ("FLAT", {}, {}),
    ("IVF_FLAT", {"nlist": 16}, {"nprobe": 16}),
    ("HNSW", {"M": 16, "efConstruction": 100}, {"ef": 64}),
])
def test_float_metrics_with_nulls_match_exact_over_valid_rows(metric, itype, params, sp):
    col, valid, q = _data(1)
    index = new_index(_Idx(itype, metric, params), _Field(), col, valid)
    assert isinstance(index, ValidRowsIndex) and index.ntotal == N
    td, to = brute_force_search(col, q, 10, metric, valid=valid)
    d, o = index.search(q, 10, sp, valid=valid)
    assert valid[o[o >= 0]].all() and np.isfinite(d).all()
    assert _recall(o, to) >= (1.0 if itype != "HNSW" else 0.95)
    if itype == "FLAT":
        assert np.allclose(d, td, atol=1e-4)
    # no mask at all (the caller's mask already excludes nulls, or does not): still no null row
    d2, o2 = index.search(q, 10, sp)
    assert valid[o2[o2 >= 0]].all()


def test_segment_mask_becomes_label_mask():
    col, valid, q = _data(2)
    index = new_index(_Idx("HNSW", "L2", {"M": 16, "efConstruction": 64}), _Field(), col, valid)
    flt = np.zeros(N, bool)
    flt[::7] = True  # a filter over segment offsets, nulls included
    want = flt & valid
    d, o = index.search(q, 5, {"ef": 64}, valid=flt)
    assert want[o[o >= 0]].all()
    td, to = brute_force_search(col, q, 5, "L2", valid=want)
    assert np.array_equal(np.sort(o, axis=1), np.sort(to, axis=1))
    # a mask shorter than ntotal: the tail is not searchable
    d, o = index.search(q, 5, {"ef": 64}, valid=valid[: N // 2])
    assert (o[o >= 0] < N // 2).all()


def test_range_search_maps_offsets():
    col, valid, q = _data(3)
    index = new_index(_Idx("FLAT", "L2", {}), _Field(), col, valid)
    got = index.range_search(q, 20.0, None, {}, valid=valid)
    want = brute_force_range(col, q, 20.0, None, "L2", valid=valid)
    for (_, o), (_, wo) in zip(got, want):
        assert valid[o].all() and sorted(o.tolist()) == sorted(wo.tolist())


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
@pytest.mark.parametrize("itype", ["BIN_FLAT", "BIN_IVF_FLAT"])
def test_binary_metrics_with_nulls(metric, itype):
    rng = np.random.default_rng(4)
    codes = np.packbits(rng.random((N, 64)) < 0.5, axis=1)
    valid = rng.random(N) >= 0.8
    codes[~valid] = 0  # a null binary vector's placeholder: JACCARD of two zero vectors is 0/0
    q = np.packbits(rng.random((10, 64)) < 0.5, axis=1)
    q[0] = 0  # an all-zero query: the placeholder's twin
    params = {"nlist": 8} if itype == "BIN_IVF_FLAT" else {}
    index = new_index(_Idx(itype, metric, params), _Field(DataType.BINARY_VECTOR, 64), codes, valid)
    sp = {"nprobe": 8} if itype == "BIN_IVF_FLAT" else {}
    d, o = index.search(q, 10, sp, valid=valid)
    td, to = brute_force_search(codes, q, 10, metric, valid=valid)
    assert valid[o[o >= 0]].all() and np.isfinite(d).all()
    assert np.allclose(d, td)  # exact over the valid rows (ties may order differently)


def test_growing_adds_keep_the_map():
    col, valid, q = _data(5)
    inner = create_index("HNSW", "COSINE", DIM, {"M": 16, "efConstruction": 64}, DataType.FLOAT_VECTOR)
    index = index_valid_rows(inner, col[:0], np.zeros(0, bool), always=True)
    assert isinstance(index, ValidRowsIndex) and index.ntotal == 0
    for lo in range(0, N, 700):
        hi = min(N, lo + 700)
        index.add(col[lo:hi], valid[lo:hi])
        assert index.ntotal == hi and index.inner.ntotal == int(valid[:hi].sum())
    assert np.array_equal(index.rows, np.flatnonzero(valid))
    d, o = index.search(q, 10, {"ef": 128}, valid=valid)
    td, to = brute_force_search(col, q, 10, "COSINE", valid=valid)
    assert valid[o[o >= 0]].all() and _recall(o, to) >= 0.95 and np.isfinite(d).all()
    index.freeze()
    with pytest.raises(Exception, match="frozen"):
        index.add(col[:1], valid[:1])


def test_no_nulls_is_the_plain_index():
    col, _, q = _data(6, frac=0.0)
    index = new_index(_Idx("HNSW", "L2", {"M": 16, "efConstruction": 64}), _Field(), col, np.ones(N, bool))
    assert isinstance(index, FaissIndex)
    grown = new_index(_Idx("HNSW", "L2", {"M": 16, "efConstruction": 64}), _Field(), col, np.ones(N, bool),
                      growing=True)
    assert isinstance(grown, ValidRowsIndex)
    assert grown.raw_vectors() is not None and np.array_equal(grown.raw_vectors(), col)  # rows are the segment's


def test_all_rows_null():
    col = np.zeros((50, DIM), np.float32)
    for itype in ("FLAT", "HNSW", "IVF_FLAT"):
        index = new_index(_Idx(itype, "COSINE", {"nlist": 4} if itype == "IVF_FLAT" else {}), _Field(),
                          col, np.zeros(50, bool))
        d, o = index.search(col[:2] + 1, 3, {})
        assert (o == -1).all() and np.isneginf(d).all()


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("itype,params,sp", [
    ("HNSW", {"M": 16, "efConstruction": 64}, {"ef": 64}),
    ("IVF_PQ", {"nlist": 8, "m": 4, "nbits": 8}, {"nprobe": 8}),
    ("SCANN", {"nlist": 8, "with_raw_data": True}, {"nprobe": 8}),
])
def test_file_round_trip(tmp_path, mmap, itype, params, sp):
    col, valid, q = _data(7)
    index = new_index(_Idx(itype, "L2", params), _Field(), col, valid)
    path = str(tmp_path / "ix")
    index.save(path)
    meta = read_meta(path)
    assert meta["valid_rows"] == {"n": N, "nvalid": int(valid.sum())} and "valid_rows" in meta["arrays"]
    loaded = load_index(path, mmap=mmap)
    assert isinstance(loaded, ValidRowsIndex) and loaded.ntotal == N
    assert np.array_equal(loaded.rows, np.flatnonzero(valid))
    assert loaded.index_type == itype and loaded.metric_type == "L2"
    d, o = index.search(q, 10, sp, valid=valid)
    d2, o2 = loaded.search(q, 10, sp, valid=valid)
    assert np.array_equal(o, o2) and np.allclose(d, d2)
    if mmap:
        with pytest.raises(Exception, match="read-only"):
            loaded.add(col[:1], valid[:1])


def test_binary_file_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    codes = np.packbits(rng.random((N, 64)) < 0.5, axis=1)
    valid = rng.random(N) >= 0.5
    codes[~valid] = 0
    index = new_index(_Idx("BIN_IVF_FLAT", "JACCARD", {"nlist": 8}), _Field(DataType.BINARY_VECTOR, 64),
                      codes, valid)
    path = str(tmp_path / "bix")
    index.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, ValidRowsIndex)
    d, o = index.search(codes[:5], 5, {"nprobe": 8}, valid=valid)
    d2, o2 = loaded.search(codes[:5], 5, {"nprobe": 8}, valid=valid)
    assert np.array_equal(o, o2) and valid[o2[o2 >= 0]].all()


def test_file_without_nulls_is_plain(tmp_path):
    col, _, _ = _data(9, frac=0.0)
    grown = new_index(_Idx("FLAT", "IP", {}), _Field(), col, np.ones(N, bool), growing=True)
    path = str(tmp_path / "ix")
    grown.save(path)
    assert "valid_rows" not in read_meta(path)
    assert isinstance(load_index(path), FaissIndex)


def test_file_written_before_with_placeholders_still_loads(tmp_path):
    """An index file from before valid-row indexes: every row indexed, placeholders included. It loads
    as the plain index over all rows and, searched with the segment's validity in the mask (as the
    query node does), returns valid rows only."""
    col, valid, q = _data(10)
    old = create_index("HNSW", "COSINE", DIM, {"M": 16, "efConstruction": 64}, DataType.FLOAT_VECTOR)
    old.build(col)
    path = str(tmp_path / "old")
    old.save(path)
    loaded = load_index(path, mmap=True)
    assert isinstance(loaded, FaissIndex) and loaded.ntotal == N
    d, o = loaded.search(q, 10, {"ef": 64}, valid=valid)
    td, to = brute_force_search(col, q, 10, "COSINE", valid=valid)
    assert valid[o[o >= 0]].all() and _recall(o, to) >= 0.95 and np.isfinite(d).all()


def test_append_refuses_a_name_it_has(tmp_path):
    col, valid, _ = _data(11)
    path = str(tmp_path / "ix")
    new_index(_Idx("FLAT", "L2", {}), _Field(), col, valid).save(path)
    with pytest.raises(ValueError, match="already has"):
        append_to_index_file(path, {}, {"valid_rows": np.zeros(1, np.uint8)})


def test_validity_of_the_wrong_length_is_refused():
    col, valid, _ = _data(12)
    with pytest.raises(ValueError, match="validity mask"):
        new_index(_Idx("FLAT", "L2", {}), _Field(), col, valid[:-1])


@pytest.mark.parametrize("itype,params", [
    ("GPU_BRUTE_FORCE", {}),
    ("GPU_IVF_FLAT", {"nlist": 16}),
    ("GPU_CAGRA", {"intermediate_graph_degree": 32, "graph_degree": 16}),
])
def test_gpu_index_types_over_valid_rows(itype, params):
    """The GPU indexes share the wrapper (built at load by the query node through new_index); NumPy stands
    in for CuPy here, as in test_index_gpu."""
    from vecdb.index import gpu as gpu_mod  # noqa: PLC0415
    from vecdb.index.params import validate_index_params  # noqa: PLC0415

    col, valid, q = _data(13)
    p = validate_index_params(itype, "L2", DataType.FLOAT_VECTOR, DIM, params, require_gpu=False)
    p.pop("index_type"), p.pop("metric_type")
    inner = gpu_mod.create_gpu_index(itype, "L2", DIM, p, DataType.FLOAT_VECTOR, xp=np)
    index = index_valid_rows(inner, col, valid)
    assert isinstance(index, ValidRowsIndex) and inner.ntotal == int(valid.sum())
    flt = valid.copy()
    flt[: N // 3] = False
    for mask in (valid, flt):
        d, o = index.search(q, 10, {}, valid=mask)
        td, to = brute_force_search(col, q, 10, "L2", valid=mask)
        assert mask[o[o >= 0]].all() and np.isfinite(d[o >= 0]).all()
        assert _recall(o, to) >= 0.9


def test_half_null_l2_hnsw_no_longer_falls_back_to_a_scan(monkeypatch):
    """What the valid-rows index fixes (bench/nullable_vectors.py): an L2 HNSW graph over many
    duplicate zero placeholders leaves filtered searches short of k hits, each then rescanned
    exhaustively; over the valid rows only, the graph answers them."""
    rng = np.random.default_rng(14)
    n, dim = 20000, 32
    centers = rng.standard_normal((50, dim)).astype(np.float32)
    x = (centers[rng.integers(0, 50, n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    valid = rng.random(n) >= 0.5
    x[~valid] = 0
    q = x[np.flatnonzero(valid)[:50]] + 0.05
    scans = []
    run = FaissIndex._run_search

    def counting(self, q, k, sp, sel, mask, exhaustive, nvalid):
        scans.append(len(q) if exhaustive else 0)
        return run(self, q, k, sp, sel, mask, exhaustive, nvalid)

    monkeypatch.setattr(FaissIndex, "_run_search", counting)
    params = {"M": 16, "efConstruction": 64}
    old = create_index("HNSW", "L2", dim, params, DataType.FLOAT_VECTOR)
    old.build(x)  # placeholders included
    old.search(q, 10, {"ef": 32}, valid=valid)
    assert sum(scans) > len(q) // 2  # most queries came back short and were rescanned
    scans.clear()
    index = new_index(_Idx("HNSW", "L2", params), _Field(DataType.FLOAT_VECTOR, dim), x, valid)
    d, o = index.search(q, 10, {"ef": 32}, valid=valid)
    assert sum(scans) == 0
    td, to = brute_force_search(x, q, 10, "L2", valid=valid)
    assert valid[o[o >= 0]].all() and _recall(o, to) >= 0.9

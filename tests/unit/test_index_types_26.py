"""HNSW_SQ, HNSW_PQ, HNSW_PRQ, IVF_RABITQ (Milvus 2.5/2.6) and DISKANN on FAISS (vecdb.index.faiss_quantized):
recall against exact search, filters, range search, save / load / mmap, and knowhere's parameter checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.index import create_index, load_index, validate_index_params, validate_search_params
from vecdb.index.bruteforce import brute_force_search
from vecdb.index.index_file import read_index_file
from vecdb.schema import DataType

F = DataType.FLOAT_VECTOR
DIM, N, NQ, K = 32, 1500, 20, 10
SMALL_HNSW = {"M": 16, "efConstruction": 64}  # fast builds on 2 cores


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((40, DIM)).astype(np.float32) * 4
    x = centers[rng.integers(0, 40, N)] + rng.standard_normal((N, DIM)).astype(np.float32)
    q = centers[rng.integers(0, 40, NQ)] + rng.standard_normal((NQ, DIM)).astype(np.float32)
    return x, q


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, exact)]))


# (index type, build params, search params, least recall@10 vs FLAT on the clustered set)
CASES = [
    ("HNSW_SQ", {**SMALL_HNSW, "sq_type": "SQ8"}, {"ef": 64}, 0.85),
    ("HNSW_SQ", {**SMALL_HNSW, "sq_type": "bf16", "refine": True, "refine_type": "FP32"}, {"refine_k": 2}, 0.95),
    ("HNSW_PQ", {**SMALL_HNSW, "m": 8, "nbits": 6}, {"ef": 64}, 0.2),  # measured 0.27-0.30
    ("HNSW_PQ", {**SMALL_HNSW, "m": 8, "nbits": 6, "refine": "true", "refine_type": "SQ8"}, {"refine_k": 4}, 0.85),
    ("HNSW_PRQ", {**SMALL_HNSW, "m": 4, "nrq": 2, "nbits": 4}, {"ef": 64}, 0.15),  # 4 bytes a row: 0.21-0.26
    ("IVF_RABITQ", {"nlist": 16}, {"nprobe": 16}, 0.25),  # 1 bit a dimension: 0.39
    ("IVF_RABITQ", {"nlist": 16, "rbq_bits": 4}, {"nprobe": 16, "rbq_query_bits": 8}, 0.7),
    ("IVF_RABITQ", {"nlist": 16, "refine": True, "refine_type": "FP16"}, {"nprobe": 16, "refine_k": 8}, 0.9),
    ("DISKANN", {}, {"search_list": 32}, 0.9),
]


COSINE_CASES = (0, 3, 7, 8)  # COSINE (normalised rows, inner product) on a few: builds are the time here


@pytest.fixture(scope="module")
def built(data):
    x, _ = data
    out = {}
    for i, (itype, build, _, _) in enumerate(CASES):
        for metric in ("L2", "COSINE") if i in COSINE_CASES else ("L2",):
            index = create_index(itype, metric, DIM, build, F)
            index.build(x)
            out[i, metric] = index
    return out


RECALL_CASES = [(i, "L2") for i in range(len(CASES))] + [(i, "COSINE") for i in COSINE_CASES]


@pytest.mark.parametrize("case,metric", RECALL_CASES, ids=[f"{CASES[i][0]}-{i}-{m}" for i, m in RECALL_CASES])
def test_recall_against_flat(data, built, case, metric):
    x, q = data
    itype, _, sp, least = CASES[case]
    index = built[case, metric]
    assert (index.index_type, index.metric_type, index.ntotal) == (itype, metric, N)
    _, exact = brute_force_search(x, q, K, metric)
    d, i = index.search(q, K, sp)
    assert i.shape == (NQ, K) and (i >= 0).all()
    assert _recall(i, exact) >= least
    # best first, the metric's way
    assert (np.diff(d, axis=1) <= 1e-4).all() if metric == "COSINE" else (np.diff(d, axis=1) >= -1e-4).all()


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_filters_keep_only_valid_rows(data, built, case):
    x, q = data
    index = built[case, "L2"]
    sp = CASES[case][2]
    for keep_every in (3, 150):  # the graph / lists with a selector, then an exhaustive scan of few rows
        valid = np.zeros(N, bool)
        valid[::keep_every] = True
        d, i = index.search(q, K, sp, valid=valid)
        assert (i >= 0).all() and (i % keep_every == 0).all()
        if keep_every == 150:  # 10 rows kept, k=10: every kept row comes back
            assert all(set(row) == set(range(0, N, 150)) for row in i)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_range_search_stays_in_range(data, built, case):
    x, q = data
    index = built[case, "L2"]
    exact_d, _ = brute_force_search(x, q[:3], 20, "L2")
    radius = float(np.median(exact_d[:, 10]))
    hits = index.range_search(q[:3], radius, None, CASES[case][2])
    assert len(hits) == 3 and sum(len(h[1]) for h in hits) > 0
    for d, i in hits:
        assert (d < radius).all() and (i >= 0).all() and (np.diff(d) >= 0).all()


@pytest.mark.parametrize("case,metric", RECALL_CASES, ids=[f"{CASES[i][0]}-{i}-{m}" for i, m in RECALL_CASES])
def test_save_load_and_mmap_answer_the_same(data, built, case, metric, tmp_path):
    _, q = data
    index = built[case, metric]
    sp = CASES[case][2]
    d0, i0 = index.search(q, K, sp)
    path = str(tmp_path / "index")
    index.save(path)
    for mmap in (False, True):
        loaded = load_index(path, mmap=mmap)
        assert (loaded.index_type, loaded.metric_type, loaded.ntotal) == (index.index_type, metric, N)
        d1, i1 = loaded.search(q, K, sp)
        assert (i1 == i0).all() and np.allclose(d1, d0, atol=1e-5)


def test_diskann_file_is_always_mapped(data, built, tmp_path):
    """DISKANN's vectors and graph stay in its file: loading it maps the file whatever the caller asked,
    and the mapped index is read-only like any mmap-loaded one."""
    x, _ = data
    index = built[len(CASES) - 1, "L2"]
    path = str(tmp_path / "diskann")
    index.save(path)
    loaded = load_index(path, mmap=False)
    with open("/proc/self/maps") as f:
        assert os.path.realpath(path) in f.read()
    with pytest.raises(Exception, match="read-only"):
        loaded.add(x[:1])
    np.testing.assert_array_equal(loaded.raw_vectors(), x)  # the graph's storage is the caller's rows
    meta, _, _ = read_index_file(path)
    assert meta["params"] == {"max_degree": 48, "search_list_size": 128}


def test_growing_index_trains_once_it_has_rows(data):
    """A quantized index built on few rows (or none) keeps them exact until it can train, then trains."""
    x, q = data
    index = create_index("HNSW_PQ", "L2", DIM, {**SMALL_HNSW, "m": 8, "nbits": 4}, F)
    index.build(x[:0])
    index.add(x[:100])
    assert not index.is_trained
    d, i = index.search(q[:2], 5, {})
    assert (i >= 0).all() and (i < 100).all()
    index.add(x[100:1000])
    assert index.is_trained and index.ntotal == 1000


def test_build_params_typed_and_defaults():
    p = validate_index_params("hnsw_sq", "L2", F, DIM, {"sq_type": "fp16", "refine": "true", "refine_type": "sq8"})
    assert p == {"index_type": "HNSW_SQ", "metric_type": "L2", "M": 30, "efConstruction": 360, "sq_type": "FP16",
                 "refine": True, "refine_type": "SQ8"}
    assert validate_index_params("HNSW_PQ", "IP", F, DIM, {})["m"] == 32  # knowhere's default
    p = validate_index_params("HNSW_PRQ", "COSINE", F, DIM, {})
    assert (p["m"], p["nrq"], p["nbits"]) == (2, 2, 8)
    p = validate_index_params("IVF_RABITQ", "L2", F, DIM, {"nlist": "64"})
    assert (p["nlist"], p["rbq_bits"], p["refine"], "refine_type" in p) == (64, 1, False, False)
    p = validate_index_params("DISKANN", "", DataType.FLOAT16_VECTOR, DIM, {"pq_code_budget_gb": 1})
    assert p == {"index_type": "DISKANN", "metric_type": "COSINE", "max_degree": 48, "search_list_size": 128}


@pytest.mark.parametrize("itype,metric,vtype,dim,params,match", [
    ("HNSW_SQ", "L2", F, DIM, {"sq_type": "SQ4"}, "^invalid scalar quantizer type$"),
    ("HNSW_SQ", "L2", F, DIM, {"refine": True, "refine_type": "PQ"},
     r"invalid refine type : PQ, optional types are \[sq4u, sq6, sq8, fp16, bf16, fp32, flat\]"),
    ("IVF_RABITQ", "L2", F, DIM, {"refine": True, "refine_type": "SQ4U"},
     r"invalid refine type : SQ4U, optional types are \[sq6, sq8, fp16, bf16, fp32, flat\]"),
    ("HNSW_PQ", "L2", F, 30, {"m": 8}, r"The dimension of the vector \(dim\) should be a multiple of the number "
                                        r"of subquantizers \(m\). Dimension: 30, m: 8"),
    ("HNSW_PRQ", "L2", F, 30, {"m": 4}, r"The dimension of a vector \(dim\) .* Dimension: 30, m: 4"),
    ("HNSW_PRQ", "L2", F, DIM, {"nrq": 17}, r"nrq out of range: \[1, 16\]"),
    ("HNSW_PQ", "L2", F, DIM, {"m": 8, "nbits": 25}, r"nbits out of range: \[1, 24\]"),
    ("HNSW_SQ", "L2", F, DIM, {"M": 1}, r"M out of range: \[2, 2048\]"),
    ("HNSW_SQ", "L2", F, DIM, {"refine": "maybe"}, "should be a boolean"),
    ("IVF_RABITQ", "L2", F, DIM, {"rbq_bits": 10}, r"rbq_bits out of range: \[1, 9\]"),
    ("DISKANN", "HAMMING", F, DIM, {}, r"metric type HAMMING not found or not supported, supported: \[L2 IP COSINE\]"),
    ("DISKANN", "HAMMING", DataType.BINARY_VECTOR, DIM, {}, "data type BINARY_VECTOR can't build with this index"),
    ("IVF_RABITQ", "L2", DataType.INT8_VECTOR, DIM, {}, "data type Int8Vector can't build with this index"),
    ("DISKANN", "L2", F, DIM, {"max_degree": 0}, r"max_degree out of range: \[1, 2048\]"),
])
def test_build_param_errors(itype, metric, vtype, dim, params, match):
    with pytest.raises(InvalidParameter, match=match) as e:
        validate_index_params(itype, metric, vtype, dim, params)
    assert e.value.code == 1100


def test_search_params():
    assert validate_search_params("HNSW_SQ", "L2", {}, 10) == {"ef": 64}
    assert validate_search_params("HNSW_PQ", "L2", {"ef": 100, "refine_k": "1.5"}, 10) == {"ef": 100, "refine_k": 1.5}
    assert validate_search_params("DISKANN", "L2", {}, 100) == {"search_list": 100}
    assert validate_search_params("DISKANN", "L2", {}, 1, range_search=True) == {"search_list": 512}
    assert validate_search_params("IVF_RABITQ", "IP", {"rbq_query_bits": 4}, 10) == {"nprobe": 8, "rbq_bits_query": 4}
    assert validate_search_params("IVF_RABITQ", "IP", {}, 10) == {"nprobe": 8, "rbq_bits_query": 0}


@pytest.mark.parametrize("itype,params,k,match", [
    ("DISKANN", {"search_list": 5}, 10, r"^search_list_size\(5\) should be larger than k\(10\)$"),
    ("DISKANN", {"search_list": 0}, 1, r"should be in range \[1, 32768\]"),
    ("HNSW_PRQ", {"ef": 5}, 10, r"^ef\(5\) should be larger than k\(10\)$"),
    ("HNSW_SQ", {"refine_k": 0.5}, 10, r"param 'refine_k' \(0.5\) should be in range"),
    ("HNSW_SQ", {"refine_k": "many"}, 10, "should be a number"),
    ("IVF_RABITQ", {"rbq_bits_query": 9}, 10, r"param 'rbq_bits_query' \(9\) should be in range \[0, 8\]"),
    ("IVF_RABITQ", {"nprobe": 0}, 10, "nprobe"),
])
def test_search_param_errors(itype, params, k, match):
    with pytest.raises(InvalidParameter, match=match):
        validate_search_params(itype, "L2", params, k)

"""Build/search parameter validation, AUTOINDEX, GPU stubs."""

import pytest

from vecdb.errors import IndexNotSupported, InvalidParameter
from vecdb.index import create_index, gpu_available, validate_index_params, validate_search_params
from vecdb.schema import DataType

F, BIN = DataType.FLOAT_VECTOR, DataType.BINARY_VECTOR


def test_build_params_are_typed_and_defaults_filled():
    p = validate_index_params("ivf_pq", "l2", F, 32, {"nlist": "256", "m": 8})
    assert p == {"index_type": "IVF_PQ", "metric_type": "L2", "nlist": 256, "m": 8, "nbits": 8}
    p = validate_index_params("HNSW", "IP", DataType.FLOAT16_VECTOR, 8, {"M": 16, "efConstruction": "200"})
    assert p == {"index_type": "HNSW", "metric_type": "IP", "M": 16, "efConstruction": 200}
    p = validate_index_params("SCANN", "COSINE", F, 8, {"with_raw_data": "false"})
    assert p["with_raw_data"] is False and p["nlist"] == 128
    assert validate_index_params("FLAT", "", F, 8, {})["metric_type"] == "COSINE"
    assert validate_index_params("BIN_FLAT", "", BIN, 8, {})["metric_type"] == "HAMMING"


def test_autoindex_resolves_per_vector_type():
    p = validate_index_params("AUTOINDEX", "L2", F, 16, {})
    assert p == {"index_type": "HNSW", "metric_type": "L2", "M": 18, "efConstruction": 240}
    assert validate_index_params("", "IP", F, 16, {})["index_type"] == "HNSW"
    p = validate_index_params("AUTOINDEX", "JACCARD", BIN, 16, {})
    assert p == {"index_type": "BIN_FLAT", "metric_type": "JACCARD"}
    idx = create_index("AUTOINDEX", "COSINE", 16, {}, F)
    assert (idx.index_type, idx.metric_type) == ("HNSW", "COSINE")


@pytest.mark.parametrize(
    "index_type,metric,vtype,dim,params,match",
    [
        ("IVF_FLAT", "L2", F, 8, {"nlist": 0}, r"nlist out of range: \[1, 65536\]"),
        ("IVF_FLAT", "L2", F, 8, {"nlist": 65537}, "nlist out of range"),
        ("IVF_SQ8", "L2", F, 8, {"nlist": "abc"}, "should be integer"),
        ("IVF_FLAT", "L2", F, 8, {"nlist": 1.5}, "should be integer"),
        ("IVF_FLAT", "L2", F, 8, {"nlist": True}, "should be integer"),
        ("IVF_PQ", "L2", F, 30, {"nlist": 8, "m": 7}, "multiple of the number of subquantizers"),
        ("IVF_PQ", "L2", F, 32, {"nlist": 8}, "parameter `m` not found"),
        ("IVF_PQ", "L2", F, 32, {"m": 8, "nbits": 17}, "nbits out of range"),
        ("HNSW", "L2", F, 8, {"M": 1}, r"M out of range: \[2, 2048\]"),
        ("HNSW", "L2", F, 8, {"efConstruction": 0}, "efConstruction out of range"),
        ("SCANN", "L2", F, 9, {}, "divided by 2"),
        ("SCANN", "L2", F, 8, {"with_raw_data": "maybe"}, "should be a boolean"),
        ("FLAT", "HAMMING", F, 8, {}, "metric type HAMMING not found or not supported"),
        ("BIN_FLAT", "L2", BIN, 8, {}, r"supported: \[HAMMING JACCARD MHJACCARD\]"),  # Milvus 2.6
        ("BIN_IVF_FLAT", "SUBSTRUCTURE", BIN, 8, {}, "SUBSTRUCTURE not found or not supported"),
        ("IVF_FLAT", "L2", BIN, 8, {}, "can't build with this index IVF_FLAT"),
        ("BIN_FLAT", "HAMMING", F, 8, {}, "can't build with this index BIN_FLAT"),
        ("BIN_FLAT", "HAMMING", BIN, 12, {}, "multiple of 8"),
        ("FLAT", "L2", F, 0, {}, "invalid dimension"),
        ("FLAT", "L2", F, 40000, {}, "invalid dimension"),
        ("FLAT", "L2", DataType.INT64, 8, {}, "vector fields"),
        ("GPU_CAGRA", "L2", F, 8, {"intermediate_graph_degree": 32, "graph_degree": 64}, "Graph degree"),
        ("GPU_CAGRA", "L2", F, 8, {"build_algo": "FOO"}, "build_algo not supported"),
        ("GPU_IVF_PQ", "L2", F, 30, {"m": 7}, "multiple of the number of subquantizers"),
        ("GPU_BRUTE_FORCE", "COSINE", F, 8, {}, r"supported: \[L2 IP\]"),
    ],
)
def test_build_param_errors(index_type, metric, vtype, dim, params, match):
    with pytest.raises(InvalidParameter, match=match):
        validate_index_params(index_type, metric, vtype, dim, params, require_gpu=False)


@pytest.mark.parametrize(
    "index_type,params,match",
    [
        ("HNSW", {"efConstruction": 32769}, r"efConstruction out of range: \[1, 32768\]"),
        ("HNSW", {"efConstruction": "2147483647"}, "efConstruction out of range"),
        ("HNSW", {"M": 2049}, r"M out of range: \[2, 2048\]"),
        ("IVF_FLAT", {"nlist": "99999999999999999999"}, "nlist out of range"),
        ("IVF_FLAT", {"nlist": "9" * 5000}, "should be integer"),  # int() itself would refuse it
        ("IVF_FLAT", {"nlist": "²"}, "should be integer"),  # str.isdigit() says yes, int() says no
        ("IVF_FLAT", {"nlist": -1}, "nlist out of range"),
        ("IVF_PQ", {"m": 65537}, r"m out of range: \[1, 65536\]"),
        ("IVF_PQ", {"m": 4, "nbits": 0}, r"nbits out of range: \[1, 16\]"),
        ("GPU_IVF_PQ", {"m": 4, "nbits": 9}, r"nbits out of range: \[4, 8\]"),
        ("GPU_CAGRA", {"graph_degree": 65537}, r"graph_degree out of range: \[1, 65536\]"),
        ("GPU_CAGRA", {"intermediate_graph_degree": 0}, "intermediate_graph_degree out of range"),
    ],
)
def test_build_param_limits(index_type, params, match):
    with pytest.raises(InvalidParameter, match=match):
        validate_index_params(index_type, "L2", F, 16, params, require_gpu=False)


@pytest.mark.parametrize(
    "index_type,params,k,match",
    [
        ("HNSW", {"ef": 50_000_000}, 10, r"param 'ef' \(50000000\) should be in range \[1, 32768\]"),
        ("HNSW", {"ef": 2**31 - 1}, 10, "should be in range"),
        ("HNSW", {"ef": 0}, 10, "should be in range"),
        ("SCANN", {"reorder_k": 32769}, 10, r"param 'reorder_k' \(32769\) should be in range \[1, 32768\]"),
        ("IVF_FLAT", {"nprobe": 65537}, 10, r"param 'nprobe' \(65537\) should be in range \[1, 65536\]"),
        ("IVF_FLAT", {"nprobe": "1e9"}, 10, "Type conflict in json: param 'nprobe'"),
        ("IVF_FLAT", {"nprobe": 1.5}, 10, "should be integer"),
        ("GPU_CAGRA", {"itopk_size": 65537}, 10, r"param 'itopk_size' \(65537\) should be in range \[1, 65536\]"),
        ("GPU_CAGRA", {"search_width": 1025}, 10, r"param 'search_width' \(1025\) should be in range \[1, 1024\]"),
        ("GPU_CAGRA", {"max_iterations": 2**31 - 1}, 10, r"should be in range \[0, 4096\]"),
        ("GPU_CAGRA", {"min_iterations": -1}, 10, r"param 'min_iterations' \(-1\) should be in range \[0, 4096\]"),
        ("GPU_CAGRA", {"team_size": 33}, 10, r"should be in range \[0, 32\]"),
        ("GPU_IVF_PQ", {"nprobe": 0}, 10, "should be in range"),
    ],
)
def test_search_param_limits(index_type, params, k, match):
    with pytest.raises(InvalidParameter, match=match):
        validate_search_params(index_type, "L2", params, k)


def test_search_param_limits_allow_the_largest_top_k():
    assert validate_search_params("HNSW", "L2", {"ef": 32768}, 16384) == {"ef": 32768}
    assert validate_search_params("HNSW", "L2", {}, 16384) == {"ef": 16384}
    assert validate_search_params("SCANN", "L2", {"reorder_k": 32768}, 16384)["reorder_k"] == 32768
    assert validate_search_params("GPU_CAGRA", "L2", {"itopk_size": 65536, "max_iterations": 4096}, 10) == {
        "itopk_size": 65536, "max_iterations": 4096}


def test_unknown_index_type_is_not_supported():
    with pytest.raises(IndexNotSupported, match="invalid index type: DISKANNN"):
        validate_index_params("DISKANNN", "L2", F, 8, {})


def test_search_params_defaults_and_checks():
    assert validate_search_params("IVF_FLAT", "L2", {}, 10) == {"nprobe": 8}
    assert validate_search_params("IVF_FLAT", "L2", {"nprobe": "32", "radius": 1.0}, 10) == {"nprobe": 32}
    assert validate_search_params("HNSW", "L2", {}, 10) == {"ef": 64}
    assert validate_search_params("HNSW", "L2", {}, 100) == {"ef": 100}
    assert validate_search_params("HNSW", "L2", {"ef": 100}, 100) == {"ef": 100}
    assert validate_search_params("HNSW", "L2", {}, 1, range_search=True) == {"ef": 512}
    assert validate_search_params("SCANN", "IP", {}, 10) == {"nprobe": 8, "reorder_k": 10}
    assert validate_search_params("FLAT", "L2", {"anything": 1}, 10) == {}
    with pytest.raises(InvalidParameter, match=r"ef\(5\) should be larger than k\(10\)"):
        validate_search_params("HNSW", "L2", {"ef": 5}, 10)
    with pytest.raises(InvalidParameter, match=r"reorder_k\(5\) should be larger than k\(10\)"):
        validate_search_params("SCANN", "L2", {"reorder_k": 5}, 10)
    with pytest.raises(InvalidParameter, match=r"param 'nprobe' \(0\) should be in range \[1, 65536\]"):
        validate_search_params("IVF_PQ", "L2", {"nprobe": 0}, 10)
    with pytest.raises(InvalidParameter, match="Type conflict"):
        validate_search_params("BIN_IVF_FLAT", "HAMMING", {"nprobe": "x"}, 10)
    with pytest.raises(InvalidParameter, match="top k"):
        validate_search_params("FLAT", "L2", {}, 0)
    with pytest.raises(InvalidParameter, match="top k"):
        validate_search_params("FLAT", "L2", {}, 16385)
    with pytest.raises(InvalidParameter, match="metric type"):
        validate_search_params("BIN_FLAT", "L2", {}, 10)


def test_index_search_enforces_ef_at_least_k():
    idx = create_index("HNSW", "L2", 4, {"M": 8, "efConstruction": 16}, F)
    idx.build([[0, 0, 0, 1.0], [1, 0, 0, 0]])
    with pytest.raises(InvalidParameter, match="should be larger than k"):
        idx.search([[0, 0, 0, 1.0]], 10, {"ef": 4})


@pytest.mark.parametrize("index_type", ["GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE"])
def test_gpu_index_without_gpu_is_a_clear_error(index_type, monkeypatch):
    monkeypatch.setattr("vecdb.index.gpu.gpu_available", lambda: False)
    params = {"m": 4} if index_type == "GPU_IVF_PQ" else {}
    validate_index_params(index_type, "L2", F, 16, params, require_gpu=False)  # params alone are fine
    for call in (lambda: create_index(index_type, "L2", 16, params, F),
                 lambda: validate_index_params(index_type, "L2", F, 16, params)):  # CreateIndex's check
        with pytest.raises(IndexNotSupported, match=f"GPU index {index_type} needs a GPU; none is available on "
                                                    "this server"):
            call()
    with pytest.raises(IndexNotSupported, match="needs a GPU"):  # before any parameter is looked at
        validate_index_params(index_type, "L2", F, 16, {"nlist": 0, "m": 0, "graph_degree": 0})


def test_gpu_available_is_a_bool():
    assert gpu_available() in (True, False)

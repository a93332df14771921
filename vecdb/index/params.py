"""Index build and search parameter checks, with Milvus 2.3 / knowhere rules.

``validate_index_params`` returns the normalised build parameters (ints and
bools, defaults filled, AUTOINDEX resolved) as one flat dict that also holds
``index_type`` and ``metric_type``; ``validate_search_params`` returns the
typed search parameters an index needs. Unknown keys are ignored (knowhere
ignores them too). Values may be ints or strings holding ints (Milvus keeps
index params as strings).

Choices that differ from Milvus, on purpose:
- A missing ``metric_type`` defaults to COSINE (float) / HAMMING (binary),
  as in Milvus 2.4+.
- Missing ``nlist``/``M``/``efConstruction``/``nbits`` take knowhere's
  defaults instead of failing; IVF_PQ's ``m`` stays required as in Milvus.
- HNSW search without ``ef`` uses ``max(k, 64)`` (knowhere: ``max(k, 16)``),
  and ``max(512, ...)`` for range search as knowhere.
- AUTOINDEX: float vectors -> HNSW (M=18, efConstruction=240, Milvus 2.3's
  autoindex defaults); binary vectors -> BIN_FLAT (exact; binary codes are
  small enough that a popcount scan is cheap, and IVF on short segments
  mostly loses recall).
- GPU_CAGRA's ``build_algo`` defaults to NN_DESCENT (knowhere: IVF_PQ): cuVS's IVF-PQ-built graph
  searched at recall 0.30 on the 1M x 128 clustered benchmark set, NN-descent's at 0.996 (docs/gpu.md).
- SUBSTRUCTURE/SUPERSTRUCTURE are rejected (not implemented).
- HNSW_SQ/PQ/PRQ, IVF_RABITQ and DISKANN follow knowhere's configs (FaissHnsw*Config, IvfRaBitQConfig,
  DiskANNConfig) and messages; DISKANN's ``search_list`` defaults like HNSW's ``ef`` (max(k, 64);
  knowhere: max(k, 16)) and is capped at ``MAX_CANDIDATES``; see docs/indexes.md.
- Upper bounds where knowhere has none (it takes up to 2^31-1, and a huge value
  costs time and memory in proportion: ef=5e7 took 1.1 s and 305 MB for one
  query, the maximum would need 17 GB): HNSW ``ef`` and ``efConstruction`` and
  SCANN ``reorder_k`` <= ``MAX_CANDIDATES`` (32768: twice the largest top k,
  since ``ef``/``reorder_k`` must be >= k, and far beyond any useful recall);
  GPU_CAGRA ``search_width`` <= 1024 and ``min_iterations``/``max_iterations``
  <= 4096 (cuVS picks ~100 iterations itself; each one is a GPU step, so a
  forced 2^31 would hang the search). knowhere's own ranges are kept elsewhere
  (M 2..2048, nlist and nprobe 1..65536, CAGRA degrees and itopk_size 1..65536).
- A GPU index type on a server without a GPU is refused when the index is
  created (IndexNotSupported), not when its build fails later.
- MINHASH_LSH's layout (``mh_element_bit_width`` a multiple of 8 dividing dim,
  ``mh_lsh_band`` dividing the element count) is checked at create_index;
  knowhere finds it when the build fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vecdb.errors import IndexNotSupported, InvalidParameter
from vecdb.index.base import BINARY_METRICS, FLOAT_METRICS, MINHASH_METRIC
from vecdb.limits import LIMITS
from vecdb.schema import DataType

INT32_MAX = 2**31 - 1
MIN_NLIST, MAX_NLIST = 1, 65536
MIN_NBITS, MAX_NBITS = 1, 16
HNSW_MIN_M, HNSW_MAX_M = 2, 2048
# Cap on candidate-list sizes (HNSW ef/efConstruction, SCANN reorder_k): see the docstring.
MAX_CANDIDATES = 32768  # knowhere's bound, twice Milvus's default top k
MAX_ITOPK = 65536  # knowhere GPU_CAGRA itopk_size range
MAX_SEARCH_WIDTH = 1024
MAX_ITERATIONS = 4096
DEFAULT_HNSW_EF_FLOOR = 64
DEFAULT_HNSW_RANGE_EF = 512

FLOAT_VECTOR_TYPES = frozenset({DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR})
AUTOINDEX = "AUTOINDEX"
INT8_INDEX_TYPES = ("HNSW", "FLAT")  # INT8_VECTOR: stored as int8, built and searched as float32
AUTOINDEX_FLOAT: dict[str, str | int] = {"index_type": "HNSW", "M": 18, "efConstruction": 240}
AUTOINDEX_BINARY: dict[str, str | int] = {"index_type": "BIN_FLAT"}


@dataclass(frozen=True)
class Param:
    key: str
    kind: str = "int"  # int | bool | str | float
    lo: int | float = 1
    hi: int | float = INT32_MAX
    default: Any = None  # None: required (build) / absent (search)
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexSpec:
    name: str
    binary: bool
    metrics: tuple[str, ...]
    build: tuple[Param, ...] = ()
    search: tuple[Param, ...] = ()
    gpu: bool = False


_NLIST = Param("nlist", default=128, lo=MIN_NLIST, hi=MAX_NLIST)
_NPROBE = Param("nprobe", default=8, lo=1, hi=65536)  # knowhere's range
_HNSW_BUILD = (
    Param("M", default=30, lo=HNSW_MIN_M, hi=HNSW_MAX_M),
    Param("efConstruction", default=360, hi=MAX_CANDIDATES),
)
_EF = Param("ef", hi=MAX_CANDIDATES)
# Milvus 2.5/2.6 quantized indexes (knowhere's FaissHnsw*Config, IvfRaBitQConfig): an optional refine store
# (refine + refine_type at build, refine_k at search: how many times k candidates it re-ranks)
_REFINE = (Param("refine", kind="bool", default=False), Param("refine_type", kind="str", default=""))
_REFINE_K = Param("refine_k", kind="float", lo=1, hi=MAX_CANDIDATES)
_RAFT_METRICS = ("L2", "IP")

INDEX_SPECS: dict[str, IndexSpec] = {
    s.name: s
    for s in (
        IndexSpec("FLAT", False, FLOAT_METRICS),
        IndexSpec("IVF_FLAT", False, FLOAT_METRICS, (_NLIST,), (_NPROBE,)),
        IndexSpec("IVF_SQ8", False, FLOAT_METRICS, (_NLIST,), (_NPROBE,)),
        IndexSpec(
            "IVF_PQ", False, FLOAT_METRICS,
            (_NLIST, Param("m", lo=1, hi=65536), Param("nbits", default=8, lo=MIN_NBITS, hi=MAX_NBITS)),
            (_NPROBE,),
        ),
        IndexSpec("HNSW", False, FLOAT_METRICS, _HNSW_BUILD, (_EF,)),
        IndexSpec("HNSW_SQ", False, FLOAT_METRICS,
                  (*_HNSW_BUILD, Param("sq_type", kind="str", default="SQ8"), *_REFINE), (_EF, _REFINE_K)),
        IndexSpec("HNSW_PQ", False, FLOAT_METRICS,
                  (*_HNSW_BUILD, Param("m", default=32, hi=65536), Param("nbits", default=8, hi=24), *_REFINE),
                  (_EF, _REFINE_K)),
        IndexSpec("HNSW_PRQ", False, FLOAT_METRICS,
                  (*_HNSW_BUILD, Param("m", default=2, hi=65536), Param("nrq", default=2, hi=16),
                   Param("nbits", default=8, hi=24), *_REFINE),
                  (_EF, _REFINE_K)),
        IndexSpec("IVF_RABITQ", False, FLOAT_METRICS, (_NLIST, Param("rbq_bits", default=1, hi=9), *_REFINE),
                  (_NPROBE, Param("rbq_bits_query", default=0, lo=0, hi=8), _REFINE_K)),
        # DISKANN (Milvus 2.2+) is served by an HNSW graph over the raw vectors, memory-mapped from its file
        # (vecdb.index.faiss_quantized): max_degree is the graph's base-layer degree, search_list_size its
        # build beam; search_list is the search beam (ef)
        IndexSpec("DISKANN", False, FLOAT_METRICS,
                  (Param("max_degree", default=48, hi=2048), Param("search_list_size", default=128, hi=MAX_CANDIDATES)),
                  (Param("search_list", hi=MAX_CANDIDATES),)),
        IndexSpec(
            "SCANN", False, FLOAT_METRICS,
            (_NLIST, Param("with_raw_data", kind="bool", default=True)),
            (_NPROBE, Param("reorder_k", hi=MAX_CANDIDATES)),
        ),
        IndexSpec("BIN_FLAT", True, BINARY_METRICS + (MINHASH_METRIC,)),  # MHJACCARD: exact (vecdb.index.minhash)
        IndexSpec("BIN_IVF_FLAT", True, BINARY_METRICS, (_NLIST,), (_NPROBE,)),
        IndexSpec(  # Milvus 2.6, knowhere's MinHashLSHConfig; the bloom filter probability is read by _minhash_build
            "MINHASH_LSH", True, (MINHASH_METRIC,),
            (
                Param("mh_element_bit_width", default=8, lo=8, hi=256), Param("mh_lsh_band", default=1),
                Param("with_raw_data", kind="bool", default=False),
                Param("mh_lsh_code_in_mem", kind="bool", default=True),
                Param("mh_lsh_shared_bloom_filter", kind="bool", default=False),
                Param("mh_lsh_aligned_block_size", default=4096, lo=4096),
            ),
        ),
        IndexSpec("GPU_IVF_FLAT", False, _RAFT_METRICS, (_NLIST,), (_NPROBE,), gpu=True),
        IndexSpec(
            "GPU_IVF_PQ", False, _RAFT_METRICS,
            (_NLIST, Param("m", lo=1, hi=65536), Param("nbits", default=8, lo=4, hi=8)),
            (_NPROBE,), gpu=True,
        ),
        IndexSpec(
            "GPU_CAGRA", False, _RAFT_METRICS,
            (
                Param("intermediate_graph_degree", default=128, lo=1, hi=65536),
                Param("graph_degree", default=64, lo=1, hi=65536),
                # NN_DESCENT by default, not knowhere's IVF_PQ: on the 1M x 128 clustered set (bench/gpu_bench.py,
                # H200) cuVS's IVF-PQ-built graph searched at recall 0.30, NN-descent's at 0.996 (docs/gpu.md)
                Param("build_algo", kind="str", default="NN_DESCENT", choices=("IVF_PQ", "NN_DESCENT")),
                Param("cache_dataset_on_device", kind="str", default="false", choices=("true", "false")),
            ),
            (
                Param("itopk_size", hi=MAX_ITOPK), Param("search_width", lo=1, hi=MAX_SEARCH_WIDTH),
                Param("min_iterations", lo=0, hi=MAX_ITERATIONS), Param("max_iterations", lo=0, hi=MAX_ITERATIONS),
                Param("team_size", lo=0, hi=32),
            ),
            gpu=True,
        ),
        IndexSpec("GPU_BRUTE_FORCE", False, _RAFT_METRICS, gpu=True),
        # SPARSE_FLOAT_VECTOR only (vecdb.sparse); drop ratios are floats, read by _sparse_params
        IndexSpec("SPARSE_INVERTED_INDEX", False, ("IP", "BM25")),
        IndexSpec("SPARSE_WAND", False, ("IP", "BM25")),
    )
}
SPARSE_INDEX_TYPES = ("SPARSE_INVERTED_INDEX", "SPARSE_WAND")

CPU_INDEX_TYPES = tuple(n for n, s in INDEX_SPECS.items() if not s.gpu)
GPU_INDEX_TYPES = tuple(n for n, s in INDEX_SPECS.items() if s.gpu)


def index_spec(index_type: str) -> IndexSpec:
    spec = INDEX_SPECS.get(str(index_type).upper())
    if spec is None:
        raise IndexNotSupported(f"invalid index type: {index_type}")
    return spec


# --- value parsing -----------------------------------------------------------
_INT_RE = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)  # ASCII digits, not 5000 of them: int() refuses both


def _parse_int(key: str, value: Any, search: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    if search:
        raise InvalidParameter(f"Type conflict in json: param '{key}' ({value!r}) should be integer")
    raise InvalidParameter(f"param '{key}' ({value!r}) should be integer")


def _parse_float(key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise InvalidParameter(f"Type conflict in json: param '{key}' ({value!r}) should be a number") from None


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidParameter(f"Type conflict in json: param '{key}' ({value!r}) should be a boolean")


def _read(p: Param, params: dict, search: bool) -> Any:
    if p.key not in params or params[p.key] is None or params[p.key] == "":
        if p.default is None and not search:
            raise InvalidParameter(f"parameter `{p.key}` not found")
        return p.default
    raw = params[p.key]
    if p.kind == "bool":
        return _parse_bool(p.key, raw)
    if p.kind == "str":
        s = str(raw)
        if p.choices and s not in p.choices:
            raise InvalidParameter(f"{p.key} not supported, supported: [{' '.join(p.choices)}]")
        return s
    v = _parse_float(p.key, raw) if p.kind == "float" else _parse_int(p.key, raw, search)
    if not p.lo <= v <= p.hi:
        if search:
            raise InvalidParameter(
                f"Out of range in json: param '{p.key}' ({v}) should be in range [{p.lo}, {p.hi}]"
            )
        raise InvalidParameter(f"{p.key} out of range: [{p.lo}, {p.hi}]")
    return v


def _vector_type(vector_type: Any) -> DataType:
    try:
        vt = DataType(int(vector_type))
    except (ValueError, TypeError):
        raise InvalidParameter(f"invalid vector data type: {vector_type}") from None
    if not vt.is_vector:
        raise InvalidParameter(f"index can only be built on vector fields, got {vt.name}")
    return vt


# --- build params ------------------------------------------------------------
def validate_index_params(
    index_type: str, metric_type: str, vector_type: DataType, dim: int, params: dict,
    *, require_gpu: bool = True,
) -> dict:
    """Check build parameters; return ``{"index_type", "metric_type", **typed build params}``.

    Raises IndexNotSupported for an unknown index type, and for a GPU index type
    when this server has no GPU (unless ``require_gpu`` is False: tests of the GPU
    algorithms run them on NumPy); InvalidParameter for anything else (wrong
    metric, vector type, range, divisibility).
    """
    vt = _vector_type(vector_type)
    binary = vt == DataType.BINARY_VECTOR
    params = dict(params or {})
    itype = str(index_type or "").strip().upper() or AUTOINDEX
    if vt == DataType.SPARSE_FLOAT_VECTOR or itype in SPARSE_INDEX_TYPES:
        return _sparse_build_params(vt, itype, metric_type, params)
    if itype == AUTOINDEX:
        auto = AUTOINDEX_BINARY if binary else AUTOINDEX_FLOAT
        params = {**params, **auto}
        itype = str(auto["index_type"])
    spec = index_spec(itype)
    if spec.gpu and require_gpu:
        from vecdb.index.gpu import require_gpu as check_gpu  # noqa: PLC0415 - gpu imports this module

        check_gpu(spec.name)

    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= LIMITS.max_dim:
        raise InvalidParameter(f"invalid dimension: {dim}. should be in range 1 ~ {LIMITS.max_dim}")
    if binary and dim % 8:
        raise InvalidParameter(f"invalid dimension: {dim}. binary vector dimension should be multiple of 8")
    if spec.binary != binary:
        raise InvalidParameter(f"data type {vt.name} can't build with this index {spec.name}")
    if vt == DataType.INT8_VECTOR and spec.name not in INT8_INDEX_TYPES:  # Milvus 2.6: HNSW (and FLAT here)
        raise InvalidParameter(f"data type Int8Vector can't build with this index {spec.name}")

    metric = str(metric_type or "").strip().upper() or (
        spec.metrics[0] if spec.name == "MINHASH_LSH" else "HAMMING" if binary else "COSINE")
    if metric not in spec.metrics:
        raise InvalidParameter(
            f"metric type {metric} not found or not supported, supported: [{' '.join(spec.metrics)}]"
        )

    out: dict[str, Any] = {"index_type": spec.name, "metric_type": metric}
    for p in spec.build:
        out[p.key] = _read(p, params, search=False)

    if spec.name in ("IVF_PQ", "GPU_IVF_PQ") and dim % out["m"]:
        raise InvalidParameter(
            f"The dimension of a vector (dim) should be a multiple of the number of subquantizers (m). "
            f"Dimension: {dim}, m: {out['m']}"
        )
    if spec.name in QUANTIZED_TYPES:
        check_quantized_build(spec.name, dim, out)
    if spec.name == "SCANN" and dim % 2:
        raise InvalidParameter(f"dimension must be able to be divided by 2, dimension: {dim}")
    if spec.name == "GPU_CAGRA" and out["intermediate_graph_degree"] < out["graph_degree"]:
        raise InvalidParameter("Graph degree cannot be larger than intermediate graph degree")
    if spec.name == "MINHASH_LSH":
        out["mh_lsh_bloom_false_positive_prob"] = _float_in(params, "mh_lsh_bloom_false_positive_prob", 0.01, 0.0, 1.0)
        check_minhash_layout(dim, out["mh_element_bit_width"], out["mh_lsh_band"])
    return out


QUANTIZED_TYPES = ("HNSW_SQ", "HNSW_PQ", "HNSW_PRQ", "IVF_RABITQ")
GRAPH_TYPES = ("HNSW", "HNSW_SQ", "HNSW_PQ", "HNSW_PRQ", "DISKANN")  # searched with an ef-wide beam
SQ_TYPES = ("SQ4U", "SQ6", "SQ8", "FP16", "BF16")  # knowhere's FaissHnswSqConfig (Milvus 2.6 docs: no SQ4U)
REFINE_TYPES = ("SQ4U", "SQ6", "SQ8", "FP16", "BF16", "FP32", "FLAT")  # FLAT is FP32; IVF_RABITQ: no SQ4U


def check_quantized_build(index_type: str, dim: int, out: dict) -> None:
    """knowhere's train-time checks of HNSW_SQ/PQ/PRQ and IVF_RABITQ, with its messages; ``out``'s
    ``sq_type`` and ``refine_type`` are upper-cased in place (knowhere compares them case-blind)."""
    if index_type == "HNSW_SQ":
        out["sq_type"] = out["sq_type"].upper()
        if out["sq_type"] not in SQ_TYPES:
            raise InvalidParameter("invalid scalar quantizer type")
    if index_type in ("HNSW_PQ", "HNSW_PRQ") and dim % out["m"]:
        which = "the" if index_type == "HNSW_PQ" else "a"
        raise InvalidParameter(
            f"The dimension of {which} vector (dim) should be a multiple of the number of subquantizers (m). "
            f"Dimension: {dim}, m: {out['m']}")
    refine_types = REFINE_TYPES[1:] if index_type == "IVF_RABITQ" else REFINE_TYPES
    if not out["refine_type"]:  # none: no refine store (knowhere refines only with refine and a refine_type)
        del out["refine_type"]
    else:
        if out["refine_type"].upper() not in refine_types:
            raise InvalidParameter(f"invalid refine type : {out['refine_type']}, optional types are "
                                   f"[{', '.join(t.lower() for t in refine_types)}]")
        out["refine_type"] = out["refine_type"].upper()


def check_minhash_layout(dim: int, bit_width: int, band: int) -> None:
    """knowhere's MinHash layout rules: ``dim`` bits hold dim / bit_width elements of whole bytes, split
    into ``band`` equal bands (MinHashLSH::BuildAndSave and MinhashConfigCheck)."""
    if bit_width % 8:
        raise InvalidParameter(f"mh_element_bit_width ({bit_width}) should be a multiple of 8")
    if dim % bit_width:
        raise InvalidParameter(
            f"the dim ({dim}) of a MinHash vector should be a multiple of mh_element_bit_width ({bit_width})")
    if (dim // bit_width) % band:
        raise InvalidParameter(
            f"the number of MinHash elements ({dim // bit_width} = dim / mh_element_bit_width) should be "
            f"divisible by mh_lsh_band ({band})")


def _drop_ratio(params: dict, key: str) -> float:
    raw = params.get(key, 0.0)
    try:
        v = float(raw) if raw not in (None, "") else 0.0
    except (TypeError, ValueError):
        raise InvalidParameter(f"param '{key}' ({raw!r}) should be a number") from None
    if not 0.0 <= v < 1.0:
        raise InvalidParameter(f"Out of range in json: param '{key}' ({v}) should be in range [0, 1)")
    return v


def _sparse_build_params(vt: DataType, itype: str, metric_type: str, params: dict) -> dict:
    """SPARSE_INVERTED_INDEX / SPARSE_WAND (AUTOINDEX: SPARSE_INVERTED_INDEX) on a sparse field: IP, or
    BM25 on a BM25 function's output field (bm25_k1, bm25_b, inverted_index_algo; which field may take
    which metric is the proxy's check, vecdb.proxy.rpc_index)."""
    if itype == AUTOINDEX:
        itype = "SPARSE_INVERTED_INDEX"
    if vt != DataType.SPARSE_FLOAT_VECTOR or itype not in SPARSE_INDEX_TYPES:
        raise InvalidParameter(f"data type {vt.name} can't build with this index {itype}")
    metric = str(metric_type or "").strip().upper() or "IP"
    if metric not in ("IP", "BM25"):
        raise InvalidParameter(f"metric type {metric} not found or not supported, supported: [IP]")
    out: dict[str, Any] = {"index_type": itype, "metric_type": metric,
                           "drop_ratio_build": _drop_ratio(params, "drop_ratio_build")}
    if metric == "BM25":
        out["bm25_k1"] = _float_in(params, "bm25_k1", BM25_K1, 0.0, 3.0)
        out["bm25_b"] = _float_in(params, "bm25_b", BM25_B, 0.0, 1.0)
        algo = str(params.get("inverted_index_algo", "DAAT_MAXSCORE")).upper()
        if algo not in BM25_ALGOS:
            raise InvalidParameter(f"param 'inverted_index_algo' ({algo}) should be one of {list(BM25_ALGOS)}")
        out["inverted_index_algo"] = algo
    return out


BM25_K1, BM25_B = 1.2, 0.75  # knowhere's defaults
BM25_ALGOS = ("DAAT_MAXSCORE", "DAAT_WAND", "TAAT_NAIVE")


def _float_in(params: dict, key: str, default: float, lo: float, hi: float) -> float:
    raw = params.get(key, default)
    try:
        v = float(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        raise InvalidParameter(f"param '{key}' ({raw!r}) should be a number") from None
    if not lo <= v <= hi:
        raise InvalidParameter(f"Out of range in json: param '{key}' ({v}) should be in range [{lo}, {hi}]")
    return v


# --- search params -----------------------------------------------------------
def validate_search_params(
    index_type: str, metric_type: str, params: dict, k: int, *, range_search: bool = False
) -> dict:
    """Check search parameters for a top-k (or, with ``range_search``, a range) search.

    Returns the typed parameters with defaults filled: ``nprobe`` for IVF
    types, ``ef`` for HNSW (must be >= k), ``nprobe``/``reorder_k`` for SCANN
    (``reorder_k`` >= k, default k).
    """
    spec = index_spec(index_type)
    params = params or {}
    metric = str(metric_type or "").strip().upper()
    if metric and metric not in spec.metrics:
        raise InvalidParameter(
            f"metric type {metric} not found or not supported, supported: [{' '.join(spec.metrics)}]"
        )
    if not range_search:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= LIMITS.max_topk:
            raise InvalidParameter(f"topk [{k}] is invalid, top k should be in range [1, {LIMITS.max_topk}]")
    out: dict[str, Any] = {}
    if spec.name == "IVF_RABITQ" and "rbq_query_bits" in params and "rbq_bits_query" not in params:
        params = {**params, "rbq_bits_query": params["rbq_query_bits"]}  # the Milvus 2.6 docs' spelling
    if spec.name in SPARSE_INDEX_TYPES or "drop_ratio_search" in params:
        out["drop_ratio_search"] = _drop_ratio(params, "drop_ratio_search")
    for p in spec.search:
        v = _read(p, params, search=True)
        if v is not None:
            out[p.key] = v
    if metric == MINHASH_METRIC or spec.name == "MINHASH_LSH":
        if range_search:  # knowhere's MinHash search takes no radius (MinhashConfigCheck: search and train only)
            raise InvalidParameter(f"range search is not supported for metric type {MINHASH_METRIC}")
        out.update(minhash_search_params(params))
    if spec.name in GRAPH_TYPES:
        beam = "search_list" if spec.name == "DISKANN" else "ef"
        if range_search:
            out.setdefault(beam, DEFAULT_HNSW_RANGE_EF)
        elif beam not in out:
            out[beam] = max(k, DEFAULT_HNSW_EF_FLOOR)
        elif out[beam] < k:  # knowhere's message names search_list_size, Milvus's key for it is search_list
            name = "search_list_size" if beam == "search_list" else beam
            raise InvalidParameter(f"{name}({out[beam]}) should be larger than k({k})")
    if spec.name == "SCANN" and not range_search:
        if "reorder_k" not in out:
            out["reorder_k"] = k
        elif out["reorder_k"] < k:
            raise InvalidParameter(f"reorder_k({out['reorder_k']}) should be larger than k({k})")
    return out


# knowhere's MinHash search parameters; the element width and band are also search parameters there
# (BIN_FLAT with MHJACCARD reads them from the search; a MINHASH_LSH index uses its own)
_MINHASH_SEARCH = (
    Param("mh_search_with_jaccard", kind="bool", default=False),
    Param("refine_k"),
    Param("mh_lsh_batch_search", kind="bool", default=False),
    Param("mh_element_bit_width", default=8, lo=8, hi=256),
    Param("mh_lsh_band", default=1),
)


def minhash_search_params(params: dict) -> dict:
    """The MHJACCARD search parameters with knowhere's defaults (``refine_k`` only when given)."""
    out = {}
    for p in _MINHASH_SEARCH:
        v = _read(p, params or {}, search=True)
        if v is not None:
            out[p.key] = v
    return out

"""FAISS builds of the Milvus 2.5/2.6 index types HNSW_SQ, HNSW_PQ, HNSW_PRQ, IVF_RABITQ, and of DISKANN.

``FaissIndex`` (vecdb.index.faiss_index) owns them like its other types (training, filters, range search,
files); this module makes the FAISS index of each and its search parameters.

==========  ==============================================================================================
HNSW_SQ     IndexHNSWSQ: ``sq_type`` SQ4U / SQ6 / SQ8 / FP16 / BF16 -> ScalarQuantizer QT_4bit_uniform /
            QT_6bit / QT_8bit / QT_fp16 / QT_bf16
HNSW_PQ     IndexHNSWPQ: ``m`` sub-quantizers of ``nbits``
HNSW_PRQ    IndexHNSW over an IndexProductResidualQuantizer: ``m`` splits, each ``nrq`` residual
            quantizers of ``nbits`` (knowhere's layout). Trained with plain k-means per residual step and
            encoded greedily (FAISS Train_default, beam 1): FAISS's default (progressive-dimension
            training, beam 5) took 20.6 s against 1.7 s to train 5,000 x 32 rows (m=2, nrq=2, nbits=8)
            for no recall gain (0.30 against 0.31 recall@10, ef 64)
IVF_RABITQ  IndexIVFRaBitQ (``rbq_bits`` bits a dimension, knowhere's newer key; 1 by default as in
            Milvus 2.6); search ``rbq_bits_query`` (the docs' ``rbq_query_bits`` too) -> FAISS's ``qb``
            (0: the query is not quantized)
refine      with ``refine`` true and a ``refine_type`` (knowhere refines only with both), the index is
            wrapped in IndexRefine over a second store: SQ4U/SQ6/SQ8/FP16/BF16 -> IndexScalarQuantizer,
            FP32/FLAT -> IndexFlat; the base index keeps ``refine_k`` x k candidates, re-ranked with the
            store's distances (``refine_k`` 1: re-ranked, none added)
DISKANN     There is no disk-resident Vamana graph in FAISS. DISKANN is served by IndexHNSWFlat: an HNSW
            graph whose base layer has ``max_degree`` links a row (M = max_degree / 2), built with a beam
            of ``search_list_size`` (efConstruction) and searched with a beam of ``search_list`` (ef).
            Its file is always loaded memory-mapped (``load_index``): the vectors and the graph stay in
            the file and the page cache reads them in as searches touch them, so a segment's DISKANN
            index takes no anonymous memory. That is the API and the recall behaviour of DiskANN (a
            graph searched with a candidate list); not its I/O design (no PQ codes in memory, no beam
            of parallel SSD reads): a search whose pages are not cached waits on each one in turn.
==========  ==============================================================================================

Exhaustive searches (few rows pass a filter, small segments) scan what the index keeps: the refine store
when there is one, the scalar-quantized codes with FAISS's selector (HNSW_SQ), the decoded codes of the
kept rows (HNSW_PQ / HNSW_PRQ: FAISS's PQ and additive-quantizer scans take no selector), every IVF list
(IVF_RABITQ), the raw vectors (DISKANN).
"""

from __future__ import annotations

from typing import Any, TypeVar

import faiss
import numpy as np

from vecdb.index.base import fix_padding

_SP = TypeVar("_SP", bound=faiss.SearchParameters)
# FAISS's type stubs declare many of these constructors without their real arguments (or not at all)
fx: Any = faiss
QT = fx.ScalarQuantizer
SQ_QTYPES = {"SQ4U": QT.QT_4bit_uniform, "SQ6": QT.QT_6bit, "SQ8": QT.QT_8bit, "FP16": QT.QT_fp16, "BF16": QT.QT_bf16}
QUANTIZED_HNSW = ("HNSW_SQ", "HNSW_PQ", "HNSW_PRQ")
NEW_TYPES = (*QUANTIZED_HNSW, "IVF_RABITQ", "DISKANN")
_RefineParams, _RaBitQParams, _HNSWParams = (
    fx.IndexRefineSearchParameters, fx.IVFRaBitQSearchParameters, fx.SearchParametersHNSW)


def _own(parent: Any, *children: Any) -> None:
    """``parent`` frees ``children`` (C++ ownership): they live exactly as long as the index, and the index
    written and read back owns them the same way."""
    for child in children:
        child.this.disown()
    parent.own_fields = True


def _hnsw_base(index_type: str, d: int, metric: int, p: dict, nbits: int) -> Any:
    if index_type == "HNSW_SQ":
        h = fx.IndexHNSWSQ(d, SQ_QTYPES[p["sq_type"]], p["M"], metric)
    elif index_type == "HNSW_PQ":
        h = fx.IndexHNSWPQ(d, p["m"], p["M"], nbits, metric)
        fx.downcast_index(h.storage).pq.cp.min_points_per_centroid = 1  # nbits is clamped to the rows
    else:  # HNSW_PRQ
        # look-up-table distances: decoding each code (ST_decompress) made an IP build 15x slower (38 s
        # against 2.5 s for 3,000 x 32 rows at M=30, efConstruction=360)
        aq = fx.AdditiveQuantizer
        st = aq.ST_norm_float if metric == fx.METRIC_L2 else aq.ST_LUT_nonorm
        prq = fx.IndexProductResidualQuantizer(d, p["m"], p["nrq"], nbits, metric, st)
        for i in range(prq.prq.nsplits):
            rq = fx.downcast_Quantizer(prq.prq.subquantizer(i))
            rq.train_type, rq.max_beam_size = fx.ResidualQuantizer.Train_default, 1
            rq.cp.min_points_per_centroid = 1
        h = fx.IndexHNSW(prq, p["M"])
        _own(h, prq)
    h.hnsw.efConstruction = p["efConstruction"]
    return h


def make_index(index_type: str, d: int, metric: int, p: dict, trained: dict) -> Any:
    """A fresh (untrained) FAISS index of ``index_type`` (one of NEW_TYPES) for the validated build params
    ``p``; ``trained`` holds the clamped nlist / nbits the caller computed for its training rows."""
    if index_type == "DISKANN":
        h = fx.IndexHNSWFlat(d, max(2, (p["max_degree"] + 1) // 2), metric)
        h.hnsw.efConstruction = p["search_list_size"]
        return h
    if index_type == "IVF_RABITQ":
        quantizer = fx.IndexFlat(d, metric)
        base = fx.IndexIVFRaBitQ(quantizer, d, trained["nlist"], metric, True, p["rbq_bits"])
        base.cp.min_points_per_centroid = 1
        _own(base, quantizer)
    else:
        base = _hnsw_base(index_type, d, metric, p, trained.get("nbits", 0))
    if not (p["refine"] and p.get("refine_type")):
        return base
    rtype = p["refine_type"]
    store = fx.IndexFlat(d, metric) if rtype in ("FP32", "FLAT") else fx.IndexScalarQuantizer(
        d, SQ_QTYPES[rtype], metric)
    refined = fx.IndexRefine(base, store)
    _own(refined, base, store)
    refined.own_refine_index = True
    return refined


def is_refined(index: Any) -> bool:
    """Whether ``index`` re-ranks with a refine store (its range search then runs as growing top-k
    searches: the base index's coarse distances are compared with no radius)."""
    return isinstance(index, fx.IndexRefine)


def codebook_bits(index_type: str, p: dict) -> int:
    """PQ / PRQ code bits (clamped to the training rows like IVF_PQ's); 0 for the others."""
    return p["nbits"] if index_type in ("HNSW_PQ", "HNSW_PRQ") else 0


def search_params(index: Any, index_type: str, sp: dict, k: int, sel: Any, exhaustive: bool,
                  nlist: int) -> tuple[Any, Any]:
    """(FAISS index to call, its SearchParameters) for one search of a NEW_TYPES index; the index may be a
    ``DecodedScan`` (call its ``search`` with the mask instead)."""
    refined = isinstance(index, fx.IndexRefine)
    base = fx.downcast_index(index.base_index) if refined else index
    if exhaustive:
        if refined:
            return fx.downcast_index(index.refine_index), faiss_search_params(fx.SearchParameters, sel=sel)
        if index_type == "IVF_RABITQ":
            return index, faiss_search_params(_RaBitQParams, nprobe=nlist, qb=sp.get("rbq_bits_query", 0), sel=sel)
        storage = fx.downcast_index(base.storage)
        if index_type in ("HNSW_SQ", "DISKANN"):
            return storage, faiss_search_params(fx.SearchParameters, sel=sel)
        return DecodedScan(storage), None
    if index_type == "IVF_RABITQ":
        bp = faiss_search_params(_RaBitQParams, nprobe=sp.get("nprobe", 8), qb=sp.get("rbq_bits_query", 0), sel=sel)
    else:
        bp = faiss_search_params(_HNSWParams, efSearch=sp["ef"], sel=sel)
    if not refined:
        return index, bp
    return index, faiss_search_params(_RefineParams, k_factor=float(sp.get("refine_k", 1.0)), base_index_params=bp)


def faiss_search_params(cls: type[_SP], **fields: Any) -> _SP:
    """A FAISS ``SearchParameters`` (or subclass) object with ``fields`` set, e.g.
    ``faiss_search_params(faiss.SearchParametersIVF, nprobe=8, sel=sel)``.

    FAISS's Python wrapper gives these classes a keyword constructor doing just this
    (``class_wrappers.handle_SearchParameters``: construct, then set each attribute, which
    also keeps ``sel`` alive with the object); its type stubs declare the constructors
    without arguments, so the keyword form goes through here.
    """
    params = cls()
    for name, value in fields.items():
        if not hasattr(params, name):
            raise AttributeError(f"{cls.__name__} has no field {name!r}")
        setattr(params, name, value)
    return params


class DecodedScan:
    """Exact search over the decoded codes of a PQ / PRQ store (FAISS's scans of those take no selector):
    the kept rows' codes are decoded and scanned, so distances are the index's own."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None, metric_type: str) -> tuple[np.ndarray, np.ndarray]:
        ids, xb = self._decoded(mask)
        d, i = fx.knn(q, xb, min(k, len(ids)), metric=self.storage.metric_type)
        if d.shape[1] < k:  # fewer rows than k: pad
            pad = k - d.shape[1]
            d = np.hstack([d, np.zeros((len(q), pad), np.float32)])
            i = np.hstack([i, np.full((len(q), pad), -1, np.int64)])
        return fix_padding(d, np.where(i >= 0, ids[np.maximum(i, 0)], -1), metric_type)

    def range_search(self, q: np.ndarray, radius: float, mask: np.ndarray | None) -> tuple[Any, Any, Any]:
        """FAISS's (lims, distances, ids) of a range search over the decoded kept rows."""
        ids, xb = self._decoded(mask)
        flat = fx.IndexFlat(xb.shape[1], self.storage.metric_type)
        flat.add(xb)
        lims, d, i = flat.range_search(q, radius)
        return lims, d, ids[i]

    def _decoded(self, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(offsets of the kept rows, their decoded vectors)."""
        s = self.storage
        n, size = int(s.ntotal), int(s.code_size)
        codes = fx.rev_swig_ptr(s.codes.data(), n * size).reshape(n, size)
        ids = np.flatnonzero(mask) if mask is not None else np.arange(n)
        return ids, s.sa_decode(np.ascontiguousarray(codes[ids]))

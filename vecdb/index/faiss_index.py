"""Float-vector indexes on FAISS: FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW, SCANN; and HNSW_SQ, HNSW_PQ,
HNSW_PRQ, IVF_RABITQ, DISKANN, whose FAISS indexes vecdb.index.faiss_quantized makes.

How each maps onto FAISS (COSINE = inner product on normalised vectors):

==========  ================================================================
FLAT        IndexFlat (L2 or IP)
IVF_FLAT    IndexIVFFlat
IVF_SQ8     IndexIVFScalarQuantizer, 8-bit
IVF_PQ      IndexIVFPQ (m sub-quantizers of nbits)
HNSW        IndexHNSWFlat (M, efConstruction; search ef)
SCANN       IndexIVFPQFastScan with 4-bit codes over 2-dim sub-spaces
            (knowhere's sub_dim=2), wrapped in IndexRefineFlat when
            with_raw_data: the fast-scan pass keeps reorder_k candidates,
            which are re-ranked with exact distances on the raw vectors.
            Range search runs as top-k searches with a growing k.
==========  ================================================================

Training (IVF types, SCANN). Like knowhere's MatchNlist/MatchNbits, a build
on few rows clamps nlist to n // 39 (and PQ nbits so that 2^nbits * 39 <= n),
never below 1, so IVF builds on any non-trivial segment. An index built with
too few rows to train at all (e.g. a growing index that starts empty) keeps
its rows in an exact flat buffer and trains once no clamping is needed:
max(nlist, 2^nbits) * 39 rows.

Filtering and recall. The valid mask goes to FAISS as an IDSelectorBitmap.
The index searches exhaustively over the valid rows instead when the valid
fraction is below ``EXHAUSTIVE_VALID_FRACTION``, when that scan is cheap
(``nvalid * dim <= SMALL_SCAN_WORK``), or for the queries that came back with
fewer than min(k, nvalid) hits. A filtered HNSW search widens its beam
(``FILTER_EF_POWER``: ef / sqrt(valid fraction)) so that it keeps the recall
of the unfiltered search; for a batch the widened beam counts in the
scan-instead rule (``BEAM_SCAN_RATIO``).
"Exhaustively" means: the raw vectors (FLAT,
HNSW's storage, SCANN's refine store) with the selector, or every IVF list
(nprobe = nlist) with the selector for IVF types, so distances stay those of
the index.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import faiss
import numpy as np

from vecdb.index import faiss_quantized as fq
from vecdb.index.base import (
    LockedIndex,
    as_float32,
    check_indexable,
    check_range_params,
    empty_result,
    finish_range,
    fix_padding,
    in_range_mask,
    normalize_rows,
    owned_view,
    prepare_mask,
    split_range_result,
)
from vecdb.index.faiss_quantized import faiss_search_params
from vecdb.index.index_file import write_index_file
from vecdb.index.params import GRAPH_TYPES, QUANTIZED_TYPES, validate_search_params
from vecdb.index.threads import threads_for_queries
from vecdb.schema import DataType

EXHAUSTIVE_VALID_FRACTION = 0.07  # knowhere switches HNSW to brute force at ~93% filtered
SMALL_SCAN_WORK = 1 << 18  # nvalid * dim below which a filtered scan is cheaper than the index
BEAM_SCAN_RATIO = 64  # an HNSW search whose beam (ef, or k when larger) is 1/64 of the rows scans them all instead
# A filtered HNSW search keeps every visited row in its beam but returns only the kept ones, so a mask keeping a
# fraction p of the rows leaves about ef * p of the beam usable: the beam is widened to ef / p ** FILTER_EF_POWER.
# GloVe 100k x 50, M=16 efC=200, k=10, one query, recall@10 among the kept rows (unfiltered 0.835 / 0.918 / 0.964
# at ef 32 / 64 / 128); ef=64, kept 50 / 20 / 10 / 7.5%: ef as is 0.891 / 0.843 / 0.796 / 0.761; power 0.4:
# 0.922 / 0.924 / 0.924 / 0.922; 0.5: 0.927 / 0.938 / 0.944 / 0.945 at 1.5 / 2.2 / 2.9 / 3.6x the unfiltered
# search's time; 1: 0.952 / 0.978 / 0.988 / 0.991 at 2.2 / 4.9 / 10 / 13x. 0.4 falls 0.01 short at ef=32; 0.5
# reaches the unfiltered recall at ef 32, 64 and 128 and every kept share (the widened beam is at most
# 1 / sqrt(EXHAUSTIVE_VALID_FRACTION) = 3.8x ef; for a batch, BEAM_SCAN_RATIO turns it into a scan).
FILTER_EF_POWER = 0.5
MIN_POINTS_PER_CENTROID = 39  # knowhere / FAISS k-means rule of thumb
RANGE_TOPK_START = 256  # first k of SCANN's growing top-k range search
BLAS_MIN_QUERIES = 20  # batch size from which a filtered flat scan gathers rows for BLAS (FAISS's threshold)
# A filtered flat scan of fewer queries reads the valid rows in place, by id (FAISS's knn_*_by_idx), when they are
# at most SUBSET_SCAN_FRACTION of the rows or valid rows x dim <= SMALL_GATHER_WORK floats; otherwise it goes
# through FAISS's selector, which checks every row one by one. No copy: a gathered copy (xb[ids]) is its own
# mapping in a server (vecdb's CLI fixes glibc's mmap threshold at 256 KiB), page-faulted in and unmapped on every
# search, 489 faults for 10,000 x 50 rows. One query, CPU per query in one process with that threshold: 100k x 50,
# 10% valid in runs of 100: by id 0.13 ms, gathered 1.7; random 1 / 10 / 20 / 30 / 50 / 95% valid: by id 0.07 /
# 0.32 / 0.6-1.7 / 1.0-1.3 / 2.4-3.3 / 2.3 ms, selector 0.4-0.6 / 1.1-1.9 / 1.6-1.9 / 1.5-2.4 / 2.3 / 1.6-2.0,
# gathered 0.09 / 3.0-3.8 / 5.8-6.3; 50k x 768, 2 / 6 / 25%: by id 0.2 / 1.1-1.4 / 5.3-5.4, selector 0.4-0.5 /
# 1.5-1.9 / 5.5-5.6; 100k x 128, 10 / 25%: by id 1.0-1.7 / 3.0-3.7, selector 3.0-3.1 / 4.2-4.8
SUBSET_SCAN_FRACTION = 0.25
SMALL_GATHER_WORK = 1 << 19

_TRAINED_TYPES = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "SCANN", *QUANTIZED_TYPES)
_SCANN_NBITS = 4
_SCANN_SUB_DIM = 2


# FAISS builds it (hnsw/HNSW.h); its type stubs lack the class
_SearchParametersHNSW: type[faiss.SearchParameters] = faiss.SearchParametersHNSW  # type: ignore[attr-defined]


def match_nlist(n: int, nlist: int) -> int:
    """knowhere MatchNlist: shrink nlist so every centroid gets >= 39 training points."""
    if nlist * MIN_POINTS_PER_CENTROID > n:
        return max(1, n // MIN_POINTS_PER_CENTROID)
    return nlist


def match_nbits(n: int, nbits: int) -> int:
    """knowhere MatchNbits: shrink PQ nbits so each codebook gets >= 39 points per code."""
    if (1 << nbits) * MIN_POINTS_PER_CENTROID > n:
        return max(1, int(math.log2(max(n // MIN_POINTS_PER_CENTROID, 1))))
    return nbits


def _bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    packed = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed)), packed


class FaissIndex(LockedIndex):
    """A float-vector index on FAISS; see the module docstring and VectorIndex for the rules."""

    def __init__(self, index_type: str, metric_type: str, dim: int, params: dict,
                 vector_type: DataType = DataType.FLOAT_VECTOR) -> None:
        self._init_index(index_type, metric_type, dim, params, vector_type)
        self._cosine = metric_type == "COSINE"
        self._faiss_metric = faiss.METRIC_L2 if metric_type == "L2" else faiss.METRIC_INNER_PRODUCT
        self._fparams: dict = {}  # unfiltered FAISS SearchParameters, reused (FAISS only reads them)
        self._trained: dict[str, int] = {}  # effective nlist / nbits once trained
        self._index: Any = None  # the real index (None while pending)
        self._pending: Any = None  # exact flat buffer before training
        self._reset()

    # --- state ----------------------------------------------------------
    def _reset(self) -> None:
        self._trained, self._fparams = {}, {}
        if self.index_type in _TRAINED_TYPES:
            self._index, self._pending = None, faiss.IndexFlat(self.dim, self._faiss_metric)
        else:
            self._index, self._pending = self._make_untrained()[0], None

    @property
    def ntotal(self) -> int:
        return int((self._index if self._index is not None else self._pending).ntotal)

    @property
    def is_trained(self) -> bool:
        return self._index is not None

    def _make_untrained(self, n: int = 0) -> tuple[Any, dict[str, int]]:
        """A fresh FAISS index for ``n`` training rows, and its effective (clamped) nlist/nbits."""
        d, metric, p = self.dim, self._faiss_metric, self.params
        if self.index_type == "FLAT":
            return faiss.IndexFlat(d, metric), {}
        if self.index_type == "HNSW":
            hnsw = faiss.IndexHNSWFlat(d, p["M"], metric)
            hnsw.hnsw.efConstruction = p["efConstruction"]
            return hnsw, {}
        if self.index_type in fq.NEW_TYPES:
            trained = {"nlist": match_nlist(n, p["nlist"])} if "nlist" in p else {}
            if fq.codebook_bits(self.index_type, p):
                trained["nbits"] = match_nbits(n, p["nbits"])
            return fq.make_index(self.index_type, d, metric, p, trained), trained
        nlist = match_nlist(n, p["nlist"])
        trained = {"nlist": nlist}
        quantizer = faiss.IndexFlat(d, metric)
        ivf: faiss.IndexIVF
        if self.index_type == "IVF_FLAT":
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        elif self.index_type == "IVF_SQ8":
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, metric)
        elif self.index_type == "IVF_PQ":
            nbits = match_nbits(n, p["nbits"])
            trained["nbits"] = nbits
            ivfpq = faiss.IndexIVFPQ(quantizer, d, nlist, p["m"], nbits, metric)
            ivfpq.pq.cp.min_points_per_centroid = 1
            ivf = ivfpq
        else:  # SCANN
            fast = faiss.IndexIVFPQFastScan(quantizer, d, nlist, d // _SCANN_SUB_DIM, _SCANN_NBITS, metric)
            fast.pq.cp.min_points_per_centroid = 1
            ivf = fast
        ivf.cp.min_points_per_centroid = 1  # we clamp nlist ourselves; keep FAISS quiet
        if self.index_type == "SCANN" and p["with_raw_data"]:
            return faiss.IndexRefineFlat(ivf), trained
        return ivf, trained

    def _codebook_size(self) -> int:
        if self.index_type == "SCANN":
            return 1 << _SCANN_NBITS
        if self.index_type == "IVF_PQ":
            return 1 << self.params["nbits"]
        return 1 << fq.codebook_bits(self.index_type, self.params)

    def _min_train_rows(self) -> int:
        """Fewest rows a build can train on (with clamped nlist/nbits)."""
        return {"SCANN": 1 << _SCANN_NBITS, "IVF_PQ": 2, "HNSW_PQ": 2, "HNSW_PRQ": 2}.get(self.index_type, 1)

    def _full_train_rows(self) -> int:
        """Rows a growing (pending) index waits for, so nothing needs clamping."""
        return max(self.params.get("nlist", 1), self._codebook_size()) * MIN_POINTS_PER_CENTROID

    def _train_on(self, x: np.ndarray) -> None:
        index, trained = self._make_untrained(len(x))
        index.train(x)
        index.add(x)
        self._index, self._pending, self._trained, self._fparams = index, None, trained, {}

    # --- build / add ----------------------------------------------------
    def _prepare(self, x: np.ndarray, stored: bool = False) -> np.ndarray:
        """Vectors as the index takes them; ``stored`` rows (build/add) are checked first."""
        a = as_float32(x, self.dim)
        if stored:
            check_indexable(a)
        return normalize_rows(a) if self._cosine else a

    def build(self, vectors: np.ndarray) -> None:
        """Train (if the type needs it) and add rows 0..n-1, replacing any previous content."""
        x = self._prepare(vectors, stored=True)
        with self._lock.write():
            self._check_writable()
            self._reset()
            if self._pending is not None and len(x) >= self._min_train_rows():
                self._train_on(x)
            elif len(x):
                (self._index if self._index is not None else self._pending).add(x)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; offsets continue from ntotal. A pending index trains once it has enough rows."""
        x = self._prepare(vectors, stored=True)
        if not len(x):
            return
        with self._lock.write():
            self._check_writable()
            if self._index is not None:
                self._index.add(x)
                return
            self._pending.add(x)
            n = self._pending.ntotal
            if n >= self._full_train_rows():
                stored = faiss.rev_swig_ptr(self._pending.get_xb(), n * self.dim)
                self._train_on(np.array(stored, dtype=np.float32).reshape(n, self.dim))

    def raw_vectors(self) -> np.ndarray | None:
        """The stored vectors, zero-copy, when they are the caller's rows unchanged (VectorIndex)."""
        if self._cosine or self._index is None or self.vector_type != DataType.FLOAT_VECTOR:
            return None
        if self.index_type == "FLAT":
            flat = self._index
        elif self.index_type in ("HNSW", "DISKANN"):
            flat = faiss.downcast_index(self._index.storage)
        elif self.index_type == "SCANN" and self.params["with_raw_data"]:
            flat = faiss.downcast_index(self._index.refine_index)
        else:
            return None
        n = int(flat.ntotal)
        if not n:
            return np.empty((0, self.dim), np.float32)
        address = faiss.rev_swig_ptr(flat.get_xb(), 1).__array_interface__["data"][0]
        return owned_view(address, (n, self.dim), np.float32, self._index)

    # --- search ---------------------------------------------------------
    def _search_params(self, sp: dict, k: int, sel: Any, exhaustive: bool) -> tuple[Any, Any]:
        """(faiss index to call, its SearchParameters) for one search mode; without a selector the
        pair is made once per distinct set of knobs and reused."""
        if sel is not None:
            return self._make_search_params(sp, k, sel, exhaustive)
        key = (exhaustive, k, sp.get("ef"), sp.get("nprobe"), sp.get("reorder_k"), sp.get("refine_k"),
               sp.get("rbq_bits_query"))
        pair = self._fparams.get(key)
        if pair is None:
            if len(self._fparams) > 256:
                self._fparams.clear()
            pair = self._fparams[key] = self._make_search_params(sp, k, None, exhaustive)
        return pair

    def _make_search_params(self, sp: dict, k: int, sel: Any, exhaustive: bool) -> tuple[Any, Any]:
        index = self._index
        if index is None:
            return self._pending, faiss_search_params(faiss.SearchParameters, sel=sel)
        t = self.index_type
        if t in fq.NEW_TYPES:
            return fq.search_params(index, t, sp, k, sel, exhaustive, self._trained.get("nlist", 1))
        if t == "FLAT":
            return index, faiss_search_params(faiss.SearchParameters, sel=sel)
        if t == "HNSW":
            if exhaustive:
                return faiss.downcast_index(index.storage), faiss_search_params(faiss.SearchParameters, sel=sel)
            return index, faiss_search_params(_SearchParametersHNSW, efSearch=sp["ef"], sel=sel)
        nprobe = self._trained["nlist"] if exhaustive else sp.get("nprobe", 8)
        ivf = faiss_search_params(faiss.SearchParametersIVF, nprobe=nprobe, sel=sel)
        if t == "SCANN" and self.params["with_raw_data"]:
            if exhaustive:
                return faiss.downcast_index(index.refine_index), faiss_search_params(faiss.SearchParameters, sel=sel)
            k_factor = max(1.0, sp.get("reorder_k", k) / max(k, 1))
            params = faiss_search_params(faiss.IndexRefineSearchParameters, k_factor=k_factor, base_index_params=ivf)
            return index, params
        return index, ivf

    def _filter_mode(
        self, mask: np.ndarray | None, k: int, n: int, sp: dict, nq: int
    ) -> tuple[np.ndarray | None, int, bool, dict]:
        """(mask or None, number of searchable rows out of ``n``, search exhaustively?, the search parameters:
        ``sp``, or a copy with HNSW's ef widened for the mask, see ``FILTER_EF_POWER``) for ``nq`` queries."""
        # an HNSW beam this wide costs more than a scan of every row, and finds less: 100k x 16 rows at M=30,
        # one query: ef 1,024 1.0 ms, 16,384 64 ms against a 0.5 ms scan; 250k x 128 at M=16: ef 4,096 13 ms,
        # 16,384 91 ms against 11 ms (a search iterator's deep pages, a large top-k)
        beam = max(sp.get("ef", 0), k) if self.index_type in GRAPH_TYPES else 0
        if mask is None:
            return None, n, beam * BEAM_SCAN_RATIO >= n, sp
        nvalid = int(np.count_nonzero(mask))
        if nvalid == n:
            return None, n, beam * BEAM_SCAN_RATIO >= n, sp
        if beam and nvalid:
            wide = math.ceil(beam * (n / nvalid) ** FILTER_EF_POWER)
            sp = {**sp, "ef": wide}
            # a batch scans the kept rows with BLAS, several times cheaper per query than the widened beam
            # (100k x 50, 10% kept, ef 64 -> 203: 83 against 308 us a query at nq=100); one query keeps the
            # rule of the beam it asked for (its scan reads the kept rows by id, _scan_by_id: 10% kept there,
            # 0.13-0.32 ms against 0.32 through the widened graph, server CPU 1.04-1.08 against 1.2-1.6 ms a
            # query in bench/filtered_search.py: no longer the 3.3-3.8 ms of a gathered copy, see
            # SUBSET_SCAN_FRACTION, but not measured enough to move one query's rule)
            if nq >= BLAS_MIN_QUERIES:
                beam = wide
        exhaustive = (
            nvalid <= k
            or nvalid < EXHAUSTIVE_VALID_FRACTION * n
            or nvalid * self.dim <= SMALL_SCAN_WORK
            or beam * BEAM_SCAN_RATIO >= nvalid
        )
        return mask, nvalid, exhaustive, sp

    def search(
        self, queries: np.ndarray, k: int, params: dict, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = self._prepare(queries)
        threads_for_queries(len(q))
        try:
            sp = _validated_search_params(self.index_type, self.metric_type, tuple(params.items()), k)
        except TypeError:  # an unhashable value: validate (and reject) it the plain way
            sp = validate_search_params(self.index_type, self.metric_type, params, k)
        with self._lock.read():
            return self._search(q, k, sp, valid)

    def _search(self, q, k, sp, valid) -> tuple[np.ndarray, np.ndarray]:
        ntotal = self.ntotal
        mask, nvalid, exhaustive, sp = self._filter_mode(prepare_mask(valid, ntotal), k, ntotal, sp, len(q))
        if nvalid == 0 or not len(q):
            return empty_result(len(q), k, self.metric_type)
        sel, keep = _bitmap_selector(mask) if mask is not None else (None, None)
        d, i = self._run_search(q, k, sp, sel, mask, exhaustive, nvalid)
        if not exhaustive:
            # FAISS pads short rows at the end: a query is short when its last expected slot is empty
            last = i[:, min(k, nvalid) - 1]
            # (one query, the nq=1 case: a scalar test, not an array scan)
            if (last[0] < 0) if len(last) == 1 else (last < 0).any():
                short = np.flatnonzero(last < 0)
                d[short], i[short] = self._run_search(q[short], k, sp, sel, mask, True, nvalid)
        del keep
        return d, i

    def _run_search(self, q, k, sp, sel, mask, exhaustive, nvalid) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search of ``q``; ``nvalid``: the rows ``mask`` keeps (counted by ``_filter_mode``)."""
        index, fp = self._search_params(sp, k, sel, exhaustive)
        if isinstance(index, fq.DecodedScan):
            return index.search(q, k, mask, self.metric_type)
        if mask is not None and isinstance(index, faiss.IndexFlat):
            # FAISS scans a selector row by row over every row: a batch gathers the valid rows for its BLAS
            # kernel instead, a few queries read them by id when they are few (SUBSET_SCAN_FRACTION)
            n = index.ntotal
            if len(q) >= BLAS_MIN_QUERIES:
                ids = np.flatnonzero(mask)
                xb = faiss.rev_swig_ptr(index.get_xb(), n * self.dim).reshape(n, self.dim)
                d, i = faiss.knn(q, xb[ids], k, metric=self._faiss_metric)
                return fix_padding(d, np.where(i >= 0, ids[np.maximum(i, 0)], -1), self.metric_type)
            if nvalid <= SUBSET_SCAN_FRACTION * n or nvalid * self.dim <= SMALL_GATHER_WORK:
                return self._scan_by_id(index, q, k, np.flatnonzero(mask))
        d, i = index.search(q, k, params=fp)
        return fix_padding(d, i, self.metric_type)

    def _scan_by_id(self, flat: Any, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of each query among the rows ``ids`` of the IndexFlat ``flat``, read where they are
        stored (FAISS's knn_*_by_idx, every query over the same ids: ld_subset 0); ids come back as offsets."""
        nq = len(q)
        d = np.empty((nq, k), np.float32)
        i = np.empty((nq, k), np.int64)
        # FAISS exports them (utils/distances.h); its type stubs lack them
        knn = (faiss.knn_L2sqr_by_idx if self._faiss_metric == faiss.METRIC_L2  # type: ignore[attr-defined]
               else faiss.knn_inner_products_by_idx)  # type: ignore[attr-defined]
        knn(faiss.swig_ptr(q), flat.get_xb(), faiss.swig_ptr(ids), self.dim, nq, flat.ntotal, len(ids), k,
            faiss.swig_ptr(d), faiss.swig_ptr(i), 0)
        return fix_padding(d, i, self.metric_type)

    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None,
        params: dict,
        valid: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        check_range_params(self.metric_type, radius, range_filter)
        q = self._prepare(queries)
        threads_for_queries(len(q))
        sp = _beam_as_ef(validate_search_params(self.index_type, self.metric_type, params, 1, range_search=True))
        if limit and "ef" in sp and sp["ef"] < limit:
            # HNSW's range search keeps what its ef-wide beam visits: a beam narrower than the limit
            # would cut the result short of hits inside the range (Milvus answers, it does not refuse)
            sp = {**sp, "ef": limit}
        with self._lock.read():
            ntotal = self.ntotal
            mask, nvalid, exhaustive, sp = self._filter_mode(prepare_mask(valid, ntotal), 0, ntotal, sp, len(q))
            if nvalid == 0 or not len(q):
                return [(np.empty(0, np.float32), np.empty(0, np.int64)) for _ in range(len(q))]
            sel, keep = _bitmap_selector(mask) if mask is not None else (None, None)
            if (self.index_type == "SCANN" or fq.is_refined(self._index)) and self._index is not None \
                    and not exhaustive:
                return self._range_by_topk(q, radius, range_filter, sp, sel, nvalid, limit)
            index, fp = self._search_params(sp, 1, sel, exhaustive)
            if isinstance(index, fq.DecodedScan):
                lims, d, i = index.range_search(q, float(radius), mask)
            else:
                lims, d, i = index.range_search(q, float(radius), params=fp)
            del keep
        return split_range_result(lims, d, i, self.metric_type, radius, range_filter, limit)

    def _range_by_topk(self, q, radius, range_filter, sp, sel, nvalid, limit):
        """Range search as growing top-k searches (SCANN, and indexes with a refine store).

        Fast-scan (quantized) distances are too coarse to compare with a radius directly,
        so search top-k (re-ranked when raw data is kept) and double k for the
        queries whose k-th hit is still inside the range.
        """
        nq = len(q)
        out_d = [np.empty(0, np.float32)] * nq
        out_i = [np.empty(0, np.int64)] * nq
        todo = np.arange(nq)
        k = min(nvalid, limit if limit else RANGE_TOPK_START)
        while len(todo):
            index, fp = self._search_params({**sp, "reorder_k": 2 * k, "refine_k": 2.0}, k, sel, False)
            d, i = index.search(q[todo], k, params=fp)
            d, i = fix_padding(d, i, self.metric_type)
            for row, qi in enumerate(todo):
                out_d[qi], out_i[qi] = d[row], i[row]
            last_in = in_range_mask(d[:, -1], self.metric_type, radius, range_filter) & (i[:, -1] >= 0)
            if k >= nvalid or (limit and k >= limit):
                break
            todo, k = todo[last_in], min(nvalid, 2 * k)
        return [finish_range(out_d[qi], out_i[qi], self.metric_type, radius, range_filter, limit) for qi in range(nq)]

    # --- persistence ----------------------------------------------------
    def save(self, path: str) -> None:
        with self._lock.read():
            meta = self._file_meta("faiss", trained=self._trained if self._index is not None else None)
            write_index_file(path, meta, self._index if self._index is not None else self._pending)

    @classmethod
    def from_saved(cls, meta: dict, index: Any, mmap: bool) -> FaissIndex:
        self = cls(meta["index_type"], meta["metric_type"], meta["dim"], meta["params"], meta["vector_type"])
        if meta["trained"] is None and self.index_type in _TRAINED_TYPES:
            self._index, self._pending = None, index
        else:
            self._index, self._pending = index, None
            self._trained = dict(meta["trained"] or {})
        self._read_only = mmap
        return self

    def __repr__(self) -> str:
        return f"FaissIndex({self.index_type}, {self.metric_type}, dim={self.dim}, ntotal={self.ntotal})"


@functools.lru_cache(maxsize=4096)
def _validated_search_params(index_type: str, metric_type: str, items: tuple, k: int) -> dict:
    """validate_search_params, memoised: every request of a client repeats the same parameters.
    The returned dict is shared: read it, never change it."""
    return _beam_as_ef(validate_search_params(index_type, metric_type, dict(items), k))


def _beam_as_ef(sp: dict) -> dict:
    """DISKANN's ``search_list`` is its graph's search beam, ``ef`` here."""
    return {**sp, "ef": sp["search_list"]} if "search_list" in sp else sp

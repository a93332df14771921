"""Embedding-list search: the vector sub-field of an array-of-struct field (Milvus 2.6), MAX_SIM metrics.

A row of ``chunks[emb]`` holds a list of vectors (one per struct); a query is an ``EmbeddingList``,
a list of vectors too. A row's score is ColBERT's late interaction: for each query vector the best
similarity among the row's vectors, summed over the query vectors (Milvus's array-of-structs page:
``score(Q, D) = sum_i max_j sim(q_i, d_j)``). The metric names the similarity:

==============  ===============================  ==============================
metric          sim(q, d)                        a bigger score is
==============  ===============================  ==============================
MAX_SIM_COSINE  cosine                           closer
MAX_SIM         cosine (the formula Milvus's     closer
                docs give for plain MAX_SIM)
MAX_SIM_IP      inner product                    closer
MAX_SIM_L2      squared L2 (Milvus's L2), the    farther: the score is the sum
                best being the smallest          of the smallest distances
==============  ===============================  ==============================

vecdb searches every row exactly, per segment: one matrix product of all the query vectors with
the segment's vectors (kept as one ``(elements, dim)`` block with row offsets), the best per row
with ``np.maximum.reduceat`` over the row offsets and the per-query sums with ``np.add.reduceat``.
Milvus's index types for it (``HNSW``, ``AUTOINDEX``) are accepted and described but build
nothing: the search is exact, so results are the reference answer an index approximates. A row
with no struct (an empty list) never matches.
"""

from __future__ import annotations

import numpy as np

from vecdb.errors import InvalidParameter
from vecdb.schema import FieldSchema

METRICS = {"MAX_SIM": "COSINE", "MAX_SIM_COSINE": "COSINE", "MAX_SIM_IP": "IP", "MAX_SIM_L2": "L2"}
DEFAULT_METRIC = "MAX_SIM_COSINE"
INDEX_TYPES = ("AUTOINDEX", "HNSW")
_CHUNK = 1 << 22  # query vectors x row vectors scored at once (16 MiB of float32)


def check_metric(metric: str, field: FieldSchema) -> str:
    """``metric`` (upper case; empty: the default) if a MAX_SIM metric, else InvalidParameter."""
    metric = (metric or DEFAULT_METRIC).strip().upper()
    if metric not in METRICS:
        raise InvalidParameter(f"metric type {metric} not found or not supported for the embedding list field "
                               f"{field.name}, supported: [{' '.join(METRICS)}]")
    return metric


def index_params(index_type: str, metric: str, field: FieldSchema, params: dict) -> tuple[str, str, dict]:
    """(index type, metric, params) of an index on an embedding-list field, as Milvus 2.6 takes them:
    HNSW or AUTOINDEX with a MAX_SIM metric (HNSW's M and efConstruction kept as given)."""
    itype = (index_type or "AUTOINDEX").strip().upper()
    if itype not in INDEX_TYPES:
        raise InvalidParameter(f"index type {itype} is not supported for the embedding list field {field.name}, "
                               f"supported: [{' '.join(INDEX_TYPES)}]")
    return itype, check_metric(metric, field), dict(params)


def parse_queries(values, field: FieldSchema) -> np.ndarray:
    """The embedding lists of a search (``EmbListFloatVector`` placeholder values: each the float32
    bytes of its vectors), as an object array of ``(vectors, dim)`` float32 arrays."""
    from vecdb.column_codec import object_array  # noqa: PLC0415 - light, but keep this module leaf-like
    from vecdb.vectors_check import check_float_vectors  # noqa: PLC0415

    row_bytes = field.dim * 4
    out = []
    for i, raw in enumerate(values):
        if not raw or len(raw) % row_bytes:
            raise InvalidParameter(f"the {i}th embedding list of the search holds {len(raw)} bytes: not a whole, "
                                   f"non-zero number of vectors of dim {field.dim} (field {field.name})")
        vecs = np.frombuffer(raw, dtype="<f4").reshape(-1, field.dim)
        check_float_vectors(vecs, field.name, "search vector")
        out.append(vecs)
    return object_array(out)


def _block(seg, name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with at least one vector, the offset of each one's first vector, all vectors as one
    float32 block) of the segment's first ``n`` rows; kept for a sealed segment (it never changes)."""
    cache = seg.__dict__.setdefault("_emb_blocks", {}) if seg.sealed else {}
    hit = cache.get((name, n))
    if hit is not None:
        return hit
    rows = seg.column(name, n).tolist()
    counts = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    dim = next((r.shape[-1] for r in rows if getattr(r, "ndim", 1) == 2), 1)
    block = (np.concatenate([np.asarray(r, np.float32).reshape(-1, dim) for r in rows])
             if int(counts.sum()) else np.empty((0, dim), np.float32))
    nonempty = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[nonempty]
    out = (nonempty, starts, np.ascontiguousarray(block, np.float32))
    cache[(name, n)] = out
    return out


def _normalized(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1, norms)


def row_chunks(q: np.ndarray, b: np.ndarray, starts: np.ndarray, l2: bool):
    """Rows (their elements ``b[starts[j]:starts[j+1]]``) in chunks small enough that the (queries x
    elements) product stays under ``_CHUNK`` values: yields ``(j, stop, lo, key)``, rows ``j..stop-1``
    whose elements start at ``lo``, and ``key`` the queries' closeness to those elements, bigger is
    closer: ``q . b``, or under ``l2`` ``2 q . b - |b|^2`` (minus the squared distance, up to ``|q|^2``)."""
    b_sq = np.einsum("ij,ij->i", b, b) if l2 else None
    ends = np.append(starts[1:], len(b))
    per_chunk = max(1, _CHUNK // max(1, len(q)))
    j = 0
    while j < len(starts):
        lo = int(starts[j])
        stop = j + 1
        while stop < len(starts) and int(ends[stop]) - lo <= per_chunk:
            stop += 1
        hi = int(ends[stop - 1])
        key = q @ b[lo:hi].T
        if b_sq is not None:
            key = 2 * key - b_sq[lo:hi]
        yield j, stop, lo, key
        j = stop


def max_sim(queries: list[np.ndarray], block: np.ndarray, starts: np.ndarray, metric: str) -> np.ndarray:
    """``(len(queries), len(starts))`` MAX_SIM scores of each query list against each row (the rows'
    vectors: ``block[starts[j]:starts[j+1]]``, every row non-empty). For MAX_SIM_L2 the score is the
    sum of the smallest squared distances; otherwise the sum of the largest similarities."""
    base = METRICS[metric]
    q = np.concatenate([np.asarray(x, np.float32) for x in queries])
    b = block
    if base == "COSINE":
        q, b = _normalized(q), _normalized(b)
    q_starts = np.cumsum([0] + [len(x) for x in queries[:-1]])
    best = np.empty((len(q), len(starts)), np.float32)
    l2 = base == "L2"
    for j, stop, lo, sims in row_chunks(q, b, starts, l2):
        best[:, j:stop] = np.maximum.reduceat(sims, starts[j:stop] - lo, axis=1)
    if l2:
        best = np.einsum("ij,ij->i", q, q)[:, None] - best
        best = np.maximum(best, 0)
    return np.add.reduceat(best, q_starts, axis=0)


def segment_search(view, spec, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows of the view for each embedding list of ``spec.queries``: ``(scores, offsets)``,
    each ``(nq, k)``, padded with -1 offsets (and -inf, or +inf for MAX_SIM_L2)."""
    nq = len(spec.queries)
    smaller_better = METRICS[spec.metric] == "L2"
    pad = np.inf if smaller_better else -np.inf
    d = np.full((nq, k), pad, np.float32)
    o = np.full((nq, k), -1, np.int64)
    rows, starts, block = _block(view.segment, spec.field.name, view.n)
    keep = None if mask is None else mask[rows]
    if not len(rows) or k <= 0 or (keep is not None and not keep.any()):
        return d, o
    # every non-empty row is scored (their vectors tile the block), then the valid ones kept
    scores = max_sim(list(spec.queries), block, starts, spec.metric)
    if keep is not None:
        rows, scores = rows[keep], scores[:, keep]
    key = scores if smaller_better else -scores
    m = min(k, len(rows))
    top = np.argpartition(key, m - 1, axis=1)[:, :m] if m < len(rows) else np.tile(np.arange(len(rows)), (nq, 1))
    top_keys = np.take_along_axis(key, top, axis=1)
    order = np.take_along_axis(top, np.argsort(top_keys, axis=1, kind="stable"), axis=1)
    d[:, :m] = np.take_along_axis(scores, order, axis=1)
    o[:, :m] = rows[order]
    return d, o

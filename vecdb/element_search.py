"""Element-level search: a plain vector query on the vector sub-field of an array-of-struct field (Milvus 3.0).

``chunks[emb]`` holds a list of vectors per row, one per struct element. An EmbeddingList query
scores whole rows with a MAX_SIM metric (vecdb.emb_list); a plain vector query searches the
individual elements instead, with the plain metric of the sub-field's index (``COSINE``, ``IP`` or
``L2``: Milvus's "Basic Vector Search with StructArray" page, which indexes one sub-field with a
MAX_SIM metric for EmbeddingList search and another with a regular metric for element-level
search, a sub-field taking one index only). Each hit carries the 0-based offset of its matched
element in the row's struct array (``SearchResultData.element_indices``; pymilvus 3.0 shows it
as the hit's ``offset``).

vecdb ranks an entity by its best element (once per entity; its ``offset`` that element's, the
first one on ties). ``element_filter(chunks, pred)`` in the search's filter (the whole filter or
the last operand of its top-level ``and``, as Milvus places it) also restricts the elements that
take part: an element failing ``pred`` is never matched (Milvus's "Filtered Search with
StructArray"). The row filter, deletes and TTL apply as in every search.

The search is exact, per segment: one matrix product of the queries with all the segment's
element vectors (the ``(elements, dim)`` block of vecdb.emb_list, in row chunks),
``np.maximum.reduceat`` over the row offsets for each row's best element and its offset from the
first position holding that best. The index (``HNSW`` / ``AUTOINDEX`` with a plain metric) is
accepted and described but builds nothing.
"""

from __future__ import annotations

import numpy as np

from vecdb.emb_list import INDEX_TYPES, _block, _normalized, row_chunks
from vecdb.errors import InvalidParameter
from vecdb.schema import FieldSchema

METRICS = ("COSINE", "IP", "L2")
# the pseudo output column carrying each hit's element offset from the query nodes to the reply
# (no field can be named so: field names are identifiers)
ELEMENT_COLUMN = "$element_offset"


def is_element_metric(metric: str) -> bool:
    return metric in METRICS


def index_params(index_type: str, metric: str, field: FieldSchema, params: dict) -> tuple[str, str, dict]:
    """(index type, metric, params) of an element-level index on a struct's vector sub-field: HNSW or
    AUTOINDEX with a plain metric (COSINE, IP or L2)."""
    itype = (index_type or "AUTOINDEX").strip().upper()
    if itype not in INDEX_TYPES:
        raise InvalidParameter(f"index type {itype} is not supported for the embedding list field {field.name}, "
                               f"supported: [{' '.join(INDEX_TYPES)}]")
    return itype, metric, dict(params)


def check_queries(queries: np.ndarray, field: FieldSchema, metric: str) -> None:
    """Element-level plans take plain vectors; EmbeddingList plans take embedding lists."""
    element_level = is_element_metric(metric)
    lists = queries.dtype == object
    if element_level and lists:
        raise InvalidParameter(f"the index of the struct array vector field {field.name} has metric {metric}: "
                               "it serves element-level search with plain vectors, not EmbeddingList queries")
    if not element_level and not lists:
        raise InvalidParameter(f"the index of the struct array vector field {field.name} has metric {metric}: "
                               "it serves EmbeddingList queries; element-level search with plain vectors needs "
                               "an index with a plain metric (COSINE, IP or L2)")


def element_predicate(flt, struct: str):
    """The ``element_filter`` over ``struct`` that ends the filter's top-level ``and`` chain (a
    vecdb.expr.element.StructMatch), or None."""
    from vecdb.expr import predicates  # noqa: PLC0415 - keep this module leaf-like
    from vecdb.expr.element import StructMatch  # noqa: PLC0415

    node = getattr(flt, "_root", None)
    while True:
        if isinstance(node, predicates.And) and node.children:
            node = node.children[-1]
        elif isinstance(node, predicates.NonNull):
            node = node.child
        else:
            break
    if isinstance(node, StructMatch) and node.element_level and node.struct == struct:
        return node
    return None


def element_mask(view, match, m: int) -> np.ndarray | None:
    """Which of the view's ``m`` elements (row after row) satisfy ``match``'s predicate; None: all."""
    if match is None:
        return None
    from vecdb.expr.runtime import EvalContext  # noqa: PLC0415
    from vecdb.querynode.executor import SegmentColumns  # noqa: PLC0415

    ctx = EvalContext(SegmentColumns(view), view.n)
    elements = {name: np.asarray(ctx.flat(name).values, dtype) for name, dtype in match.columns}
    with np.errstate(all="ignore"):
        ok = np.asarray(match.pred.eval(EvalContext(elements, m)), bool)
    if len(ok) != m:
        raise InvalidParameter("the element filter's sub-fields do not hold one value per struct element")
    return ok


def best_elements(queries: np.ndarray, block: np.ndarray, starts: np.ndarray, metric: str,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, offsets)``, each ``(nq, len(starts))``: for each query and row (its elements
    ``block[starts[j]:starts[j+1]]``, every row non-empty) the best element's score (the smallest
    squared distance for L2, else the largest similarity) and its offset in the row (-1 and -inf /
    +inf where ``allowed`` excludes every element of the row)."""
    q = np.asarray(queries, np.float32)
    b = block
    if metric == "COSINE":
        q, b = _normalized(q), _normalized(b)
    nq = len(q)
    keys = np.empty((nq, len(starts)), np.float32)
    offs = np.empty((nq, len(starts)), np.int64)
    l2 = metric == "L2"
    for j, stop, lo, key in row_chunks(q, b, starts, l2):
        hi = lo + key.shape[1]
        if allowed is not None:
            key[:, ~allowed[lo:hi]] = -np.inf
        local = starts[j:stop] - lo
        best = np.maximum.reduceat(key, local, axis=1)
        lengths = np.diff(np.append(local, hi - lo))
        pos = np.arange(hi - lo) - np.repeat(local, lengths)  # each element's offset in its row
        at = np.where(key == np.repeat(best, lengths, axis=1), pos, np.iinfo(np.int64).max)
        first = np.minimum.reduceat(at, local, axis=1)
        keys[:, j:stop] = best
        offs[:, j:stop] = np.where(np.isneginf(best), -1, first)
    if not l2:
        return keys, offs
    dist = np.einsum("ij,ij->i", q, q)[:, None] - keys
    return np.maximum(dist, 0).astype(np.float32, copy=False), offs


def segment_search(view, spec, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` rows of the view for each query vector of ``spec.queries`` by their best element:
    ``(scores, row offsets, element offsets)``, each ``(nq, k)``, padded with -1 offsets (and -inf,
    or +inf for L2)."""
    nq = len(spec.queries)
    smaller_better = spec.metric == "L2"
    pad = np.inf if smaller_better else -np.inf
    d = np.full((nq, k), pad, np.float32)
    o = np.full((nq, k), -1, np.int64)
    e = np.full((nq, k), -1, np.int64)
    rows, starts, block = _block(view.segment, spec.field.name, view.n)
    keep = None if mask is None else mask[rows]
    if not len(rows) or k <= 0 or (keep is not None and not keep.any()):
        return d, o, e
    allowed = element_mask(view, element_predicate(spec.flt, spec.field.struct_name), len(block))
    scores, elems = best_elements(spec.queries, block, starts, spec.metric, allowed)
    live = elems >= 0  # (nq, rows): the row has an element that may match
    if keep is not None:
        live &= keep[None, :]
    key = np.where(live, scores if smaller_better else -scores, np.inf)
    m = min(k, len(rows))
    top = np.argpartition(key, m - 1, axis=1)[:, :m] if m < len(rows) else np.tile(np.arange(len(rows)), (nq, 1))
    top_keys = np.take_along_axis(key, top, axis=1)
    order = np.take_along_axis(top, np.argsort(top_keys, axis=1, kind="stable"), axis=1)
    ok = np.take_along_axis(live, order, axis=1)
    d[:, :m] = np.where(ok, np.take_along_axis(scores, order, axis=1), pad)
    o[:, :m] = np.where(ok, rows[order], -1)
    e[:, :m] = np.where(ok, np.take_along_axis(elems, order, axis=1), -1)
    return d, o, e

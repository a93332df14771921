"""Element-level search: a plain vector query on the vector sub-field of an array-of-struct field (Milvus 3.0).

``chunks[emb]`` holds a list of vectors per row, one per struct element. An EmbeddingList query
scores whole rows with a MAX_SIM metric (vecdb.emb_list); a plain vector query searches the
individual elements instead, with the plain metric of the sub-field's index (``COSINE``, ``IP`` or
``L2``: Milvus's "Basic Vector Search with StructArray" page, which indexes one sub-field with a
MAX_SIM metric for EmbeddingList search and another with a regular metric for element-level
search, a sub-field taking one index only). Each hit carries the 0-based offset of its matched
element in the row's struct array (``SearchResultData.element_indices``; pymilvus 3.0 shows it
as the hit's ``offset``).

A hit is an element, as in Milvus 3.0 ("Element-level search can return multiple hits from the same
entity when several Struct elements match the query": Milvus's "Grouping Search with StructArray"):
each query's ``limit`` best elements over all rows, several of one entity possible, each with its
score and ``offset``. ``group_by_field`` on the primary key collapses them to one hit per entity (its
best element; ``group_size`` n: its n best), grouping on another field groups the element hits by it;
a range search (``radius`` / ``range_filter``) keeps the elements in range. A hybrid search of
element-level requests on one struct fuses the element hits by (primary key, offset)
(vecdb.proxy.rpc_hybrid). A query whose filter ends in ``element_filter`` is element-level too: each
entity with the offsets of its matching elements (``matched_elements``, ``page_elements``).
``element_filter(chunks, pred)`` in the search's filter (the whole filter or the last operand of its
top-level ``and``, as Milvus places it) also restricts the elements that take part: an element
failing ``pred`` is never matched (Milvus's "Filtered Search with StructArray"). The row filter,
deletes and TTL apply as in every search.

The search is exact, per segment: one matrix product of the queries with all the segment's
element vectors (the ``(elements, dim)`` block of vecdb.emb_list, in row chunks), each chunk's best
``limit`` elements by ``np.argpartition``, then the best of those. The index (``HNSW`` /
``AUTOINDEX`` with a plain metric) is accepted and described but builds nothing.
"""

from __future__ import annotations

import numpy as np

from vecdb.emb_list import INDEX_TYPES, _block, _normalized, row_chunks
from vecdb.errors import InvalidParameter
from vecdb.index.base import in_range_mask
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


def element_predicate(flt, struct: str | None):
    """The ``element_filter`` over ``struct`` (None: over any struct) that ends the filter's top-level
    ``and`` chain (a vecdb.expr.element.StructMatch), or None."""
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
    if isinstance(node, StructMatch) and node.element_level and struct in (None, node.struct):
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


def _element_rows(starts: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """For the ``m`` elements of a block whose rows start at ``starts``: each element's row (index into
    ``starts``) and its 0-based offset in that row."""
    lengths = np.diff(np.append(starts, m))
    row = np.repeat(np.arange(len(starts)), lengths)
    return row, np.arange(m) - np.repeat(starts, lengths)


def segment_search(view, spec, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best struct elements of the view for each query vector of ``spec.queries``, several of
    one row possible (Milvus 3.0: a hit is an element): ``(scores, row offsets, element offsets)``, each
    ``(nq, k)``, best first (equal scores in element order), padded with -1 offsets (and -inf, or +inf
    for L2). Elements of rows ``mask`` excludes, or failing the filter's ``element_filter``, take no
    part; a range search (``spec.radius``) keeps the elements in range only."""
    nq = len(spec.queries)
    metric = spec.metric
    l2 = metric == "L2"
    pad = np.inf if l2 else -np.inf
    d = np.full((nq, k), pad, np.float32)
    o = np.full((nq, k), -1, np.int64)
    e = np.full((nq, k), -1, np.int64)
    rows, starts, block = _block(view.segment, spec.field.name, view.n)
    if not len(rows) or k <= 0:
        return d, o, e
    elem_row, elem_pos = _element_rows(starts, len(block))
    allowed = element_mask(view, element_predicate(spec.flt, spec.field.struct_name), len(block))
    if mask is not None:
        keep = mask[rows][elem_row]
        allowed = keep if allowed is None else allowed & keep
    if allowed is not None and not allowed.any():
        return d, o, e
    q = np.asarray(spec.queries, np.float32)
    b = block
    if metric == "COSINE":
        q, b = _normalized(q), _normalized(b)
    q_sq = np.einsum("ij,ij->i", q, q)[:, None] if l2 else None
    keys, ids = [], []  # per chunk: the best min(k, width) keys (bigger closer) and their element ids
    for _j, _stop, lo, key in row_chunks(q, b, starts, l2):
        width = key.shape[1]
        if allowed is not None:
            key[:, ~allowed[lo:lo + width]] = -np.inf
        if spec.radius is not None:  # in range, by the score the reply shows
            score = np.maximum(q_sq - key, 0) if l2 else key
            key[~in_range_mask(score, metric, spec.radius, spec.range_filter)] = -np.inf
        m = min(k, width)
        top = np.argpartition(-key, m - 1, axis=1)[:, :m] if m < width else np.tile(np.arange(width), (nq, 1))
        keys.append(np.take_along_axis(key, top, axis=1))
        ids.append(top + lo)
    K, ID = np.concatenate(keys, axis=1), np.concatenate(ids, axis=1)
    order = np.lexsort((ID, -K), axis=1)[:, :k]  # best first, ties in element order
    K, ID = np.take_along_axis(K, order, axis=1), np.take_along_axis(ID, order, axis=1)
    ok = np.isfinite(K)
    m = K.shape[1]
    score = np.maximum(q_sq - K, 0) if l2 else K
    d[:, :m] = np.where(ok, score, pad)
    o[:, :m] = np.where(ok, rows[elem_row[ID]], -1)
    e[:, :m] = np.where(ok, elem_pos[ID], -1)
    return d, o, e


def matched_elements(cols: dict, n: int, match) -> tuple[np.ndarray, np.ndarray]:
    """An element-level query's matches: of the ``n`` entities whose columns ``cols`` hold the element
    predicate's sub-fields, ``(offsets, counts)``: the 0-based offsets of the elements satisfying
    ``match.pred``, entity after entity, and how many each entity has."""
    from vecdb.expr.runtime import EvalContext  # noqa: PLC0415

    ctx = EvalContext(cols, n)
    flat = ctx.flat(match.columns[0][0])  # every sub-field of a row holds as many elements
    m = len(flat.rows)
    if not m:
        return np.empty(0, np.int64), np.zeros(n, np.int64)
    elements = {name: np.asarray(ctx.flat(name).values, dtype) for name, dtype in match.columns}
    with np.errstate(all="ignore"):
        ok = np.asarray(match.pred.eval(EvalContext(elements, m)), bool)
    rows = np.asarray(flat.rows, np.int64)
    lengths = np.asarray(flat.lengths, np.int64)
    pos = np.arange(m) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pos[ok], np.bincount(rows[ok], minlength=n).astype(np.int64)


def page_elements(counts: np.ndarray, limit: int | None, offset: int) -> tuple[int, int, int, int]:
    """An element-level query's page over its entities in primary-key order (``counts``: each one's
    matched elements), as Milvus's proxy reduces one (``reduceRetrieveResults``): ``offset`` skips
    elements, cutting into an entity when it falls inside one (that entity keeps its later elements);
    then whole entities are taken while fewer than ``limit`` elements are taken (the last one is not
    cut). Returns ``(first, stop, skip, total)``: entities ``first..stop-1``, the first one's first
    ``skip`` elements dropped, and ``total`` the elements before entity ``first`` plus ``skip`` (where
    the page's offsets start in the entity-after-entity offsets)."""
    n = len(counts)
    cum = np.cumsum(counts)
    first = int(np.searchsorted(cum, offset, side="right")) if offset else 0
    if first >= n:
        return n, n, 0, int(cum[-1]) if n else 0
    before = int(cum[first - 1]) if first else 0
    skip = offset - before if offset else 0
    if limit is None:
        return first, n, skip, before + skip
    taken = counts[first:].copy()
    taken[0] -= skip
    taken_before = np.cumsum(taken) - taken
    stop = first + int(np.count_nonzero(taken_before < limit))
    return first, stop, skip, before + skip

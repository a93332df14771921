"""Search, query and count over a snapshot of a collection's segments.

Each segment is searched with a ``valid`` mask (visible at the snapshot timestamp,
not deleted, passing the filter), then per-segment top-k lists are merged. Ties
in distance are broken by primary key so results (and iterators) are stable: each
segment's tie group at its top-k cut is taken whole (``_tie_closed_search``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vecdb import bm25, element_search, emb_list, sparse, top_rows
from vecdb.group_partials import ROWS, PartialSpec, fetched, merge, row_partials
from vecdb.index import brute_force_search, create_index, is_similarity
from vecdb.index.array_elements import segment_array_index
from vecdb.index.bruteforce import merge_topk
from vecdb.index.json_path import segment_json_index
from vecdb.index.ngram import segment_ngram_index
from vecdb.index.scalar import segment_scalar_index
from vecdb.limits import LIMITS
from vecdb.querynode.shard import SegmentView
from vecdb.roles import RowFilter
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.top_rows import TopSpec


class SegmentColumns(Mapping):
    """Lazy column access for the filter evaluator: only requested columns are touched."""

    def __init__(self, view: SegmentView):
        self._view = view

    def __getitem__(self, name: str) -> np.ndarray:
        return self._view.segment.column(name, self._view.n)

    def _over_view(self, idx):
        """``idx`` (a sealed segment's) when it covers exactly the view's rows; else None (filters scan)."""
        return idx if idx is not None and idx.n == self._view.n else None

    def scalar_index(self, name: str):
        """The sealed segment's scalar index of ``name`` when built over the view's rows (filters on
        the field then use it: vecdb.index.scalar)."""
        return self._over_view(segment_scalar_index(self._view.segment, name))

    def array_index(self, name: str):
        """The sealed segment's ARRAY index of field ``name`` when built over the view's rows
        (``array_contains*`` read it: vecdb.index.array_elements)."""
        return self._over_view(segment_array_index(self._view.segment, name))

    def json_index(self, key: tuple):
        """The sealed segment's JSON path index of ``key`` (field, path, category) when built over the
        view's rows (comparisons of the path with a constant of that type read it: vecdb.index.json_path)."""
        return self._over_view(segment_json_index(self._view.segment, key))

    def ngram_index(self, key: tuple):
        """The sealed segment's NGRAM index of ``key`` (column, JSON path) when built over the view's
        rows (``like`` then checks its candidates only: vecdb.expr.ngram_like)."""
        return self._over_view(segment_ngram_index(self._view.segment, key))

    def __iter__(self):
        return iter(self._view.segment.column_names())

    def __len__(self) -> int:
        return len(self._view.segment.column_names())


def pruned(view: SegmentView, flt: RowFilter | None) -> bool:
    """The filter holds on no row of the sealed segment, known from the range of its clustering key
    there (after a clustering compaction, one range per segment: vecdb.expr.prune)."""
    seg = view.segment
    key = seg.schema.clustering_key_field
    may_match = getattr(flt, "may_match", None)
    if key is None or may_match is None or key.name not in flt.fields:  # type: ignore[union-attr]
        return False
    bounds = seg.value_range(key.name)
    return bounds is not None and not may_match(key.name, bounds)


def valid_mask(view: SegmentView, ts: int, flt: RowFilter | None) -> np.ndarray | None:
    """Rows of the view a read may return; None when every row qualifies (no mask to apply)."""
    if flt is not None and view.segment.sealed and pruned(view, flt):
        return np.zeros(view.n, bool)
    # the shard as of the view (vecdb.querynode.shard: nothing applied after it); TTL from the read's own ts
    mask = view.segment.visible(min(ts, view.horizon), view.n, ts - view.ttl if 0 < view.ttl < ts else 0)
    if flt is None:
        return mask
    if mask is None:
        return np.asarray(flt.evaluate(SegmentColumns(view), view.n), bool)
    if mask.any():
        mask &= flt.evaluate(SegmentColumns(view), view.n)
    return mask


def _any(mask: np.ndarray | None) -> bool:
    return mask is None or bool(mask.any())


@dataclass
class SearchSpec:
    field: FieldSchema
    queries: np.ndarray
    limit: int
    offset: int
    metric: str
    params: dict
    index_type: str = "FLAT"
    radius: float | None = None
    range_filter: float | None = None
    flt: RowFilter | None = None
    ts: int = 0
    ignore_growing: bool = False  # sealed segments only (Milvus's search param)


@dataclass
class Hits:
    """Flattened results: query i owns ``topks[i]`` consecutive hits."""

    topks: list[int]
    pks: np.ndarray
    scores: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def _segment_search(view: SegmentView, spec: SearchSpec, k: int, mask: np.ndarray | None):
    seg = view.segment
    if spec.field.dtype == DataType.SPARSE_FLOAT_VECTOR:
        return sparse.segment_search(view, spec, k, mask)
    if spec.field.dtype == DataType.ARRAY_OF_VECTOR:  # embedding lists, MAX_SIM (exact)
        return emb_list.segment_search(view, spec, k, mask)
    index = seg.indexes.get(spec.field.name) if seg.sealed else None
    if spec.radius is not None:
        if index is None:
            index = create_index("FLAT" if not spec.field.dtype == 100 else "BIN_FLAT", spec.metric,
                                 spec.field.dim, {}, spec.field.dtype)
            index.build(seg.column(spec.field.name, view.n))
        per_query = index.range_search(spec.queries, spec.radius, spec.range_filter, spec.params,
                                       valid=mask, limit=k)
        return _pad_ranges(per_query, k, spec.metric)
    if index is not None and index.ntotal == view.n:
        return index.search(spec.queries, k, spec.params, valid=mask)
    interim = seg.growing_indexes.get(spec.field.name)
    if interim is not None and interim.ntotal:
        return _interim_search(view, spec, k, mask, interim)
    return brute_force_search(seg.column(spec.field.name, view.n), spec.queries, k, spec.metric, valid=mask,
                              params=spec.params)  # MHJACCARD's element width and bands (vecdb.index.minhash)


# Hits past k that a scan (FLAT, BIN_FLAT) asks for at once: its cost is the scan, not k, and HAMMING's and
# JACCARD's few distinct distances tie at almost every cut (a group of 5-20 rows at k=10 over 200k-1M rows
# of 64-256 bits): one scan instead of two. A graph or IVF search asks for one more hit only.
SCAN_TIE_MARGIN = 64
# a graph or IVF search widens to at most this many hits or twice its top-k (an HNSW search with ef 1,024
# costs ~1 ms on 100k rows; a segment of thousands of duplicate vectors must not make every search near
# them one of ef 16,384): a larger tie group at the cut is cut by the index there
TIE_WIDEST = 1_024


def _tie_closed_search(view: SegmentView, spec: SearchSpec, k: int, mask: np.ndarray | None):
    """``_segment_search`` for the best ``k`` hits, plus every hit that ties with a query's ``k``-th
    (equal distance). An index cuts a tie group at the ``k``-th hit by its own order (FAISS: the smaller
    segment offset), not by primary key, so a search with ``offset`` (a larger k) could take other rows
    of the group than the page before it did: rows repeated and lost across pages. With the whole group
    here the merge's (distance, primary key) order decides, the same for any k. Hits past ``k`` (one, or
    ``SCAN_TIE_MARGIN`` for a scan) tell whether the group goes on past the cut (then the search is widened
    x4 until it ends: a scan up to ``LIMITS.max_topk`` hits, the most an index is asked for, a graph or IVF
    search up to ``TIE_WIDEST`` or twice ``k``; a group going on past that is cut by the index); without a
    tie at the cut the result is cut back to ``k``. The common case (no tie at the cut) costs a few scalar
    reads: this runs for every segment searched."""
    n = view.n
    top = min(n, LIMITS.max_topk)
    if k >= top:
        return _segment_search(view, spec, k, mask)
    scan = spec.index_type in _SCANS
    if not scan:
        top = min(top, max(TIE_WIDEST, 2 * k))
    ask = min(top, k + (SCAN_TIE_MARGIN if scan else 1))
    while True:
        d, o = _segment_search(view, _asking(spec, ask), ask, mask)
        if d.shape[1] <= k:  # (a path that returned no more columns: no more hits)
            return d, o
        if d.shape[0] == 1:  # one query (the usual search): scalars, no array temporaries
            kth = d[0, k - 1]
            if o[0, k] < 0 or d[0, k] != kth:
                return d[:, :k], o[:, :k]
            open_ = ask < top and o[0, -1] >= 0 and d[0, -1] == kth
        else:
            kth = d[:, k - 1]
            if not ((d[:, k] == kth) & (o[:, k] >= 0)).any():
                return d[:, :k], o[:, :k]
            open_ = ask < top and bool(((d[:, -1] == kth) & (o[:, -1] >= 0)).any())
        if not open_:  # a tie at the cut, whole here: search() orders it by key and cuts to k
            return d, o
        ask = min(top, 4 * ask)


_SCANS = frozenset(("FLAT", "BIN_FLAT"))
# search parameters that must cover the hits asked for (HNSW, SCANN, DISKANN)
_WIDENED = ("ef", "reorder_k", "search_list")


def _asking(spec: SearchSpec, ask: int) -> SearchSpec:
    """``spec`` with an HNSW ``ef`` or a SCANN ``reorder_k`` below ``ask`` raised to it (valid for ``ask``
    hits); ``spec`` itself when none is (the usual case: ef >= the top-k and one more)."""
    params = spec.params
    low = [key for key in _WIDENED if key in params and params[key] < ask]
    if not low:
        return spec
    return replace(spec, params={**params, **dict.fromkeys(low, ask)})


INTERIM_EF = 64


def _interim_search(view: SegmentView, spec: SearchSpec, k: int, mask, interim):
    """Interim index over rows [0, m), exact search over the tail [m, n), merged."""
    n = view.n
    m = min(interim.ntotal, n)
    head_mask = mask[:m] if mask is not None else (np.ones(n, bool) if interim.ntotal > n else None)
    parts = [interim.search(spec.queries, min(k, m), {"ef": max(k, INTERIM_EF)}, valid=head_mask)]
    if n > m:
        tail_mask = None if mask is None else mask[m:n]
        d, o = brute_force_search(view.segment.column(spec.field.name, n)[m:n], spec.queries, min(k, n - m),
                                  spec.metric, valid=tail_mask)
        parts.append((d, np.where(o >= 0, o + m, -1)))
    return merge_topk(parts, k, spec.metric)


def _pad_ranges(per_query, k: int, metric: str):
    nq = len(per_query)
    fill = -np.inf if is_similarity(metric) else np.inf
    d = np.full((nq, k), fill, np.float32)
    o = np.full((nq, k), -1, np.int64)
    for i, (dist, off) in enumerate(per_query):
        m = min(k, len(off))
        d[i, :m], o[i, :m] = dist[:m], off[:m]
    return d, o


def search(views: list[SegmentView], spec: SearchSpec, pk_name: str, output_fields: Sequence[str]) -> Hits:
    if spec.metric == "BM25":  # IDF weights and avgdl over the segments searched (vecdb.bm25)
        spec = bm25.prepare(views, spec)
    nq = len(spec.queries)
    k = spec.limit + spec.offset
    hit_views, dists, offs = [], [], []
    elems: list[np.ndarray] | None = None  # element-level search: each hit's element offset (vecdb.element_search)
    if spec.field.dtype == DataType.ARRAY_OF_VECTOR and element_search.is_element_metric(spec.metric):
        elems = []
    for view in views:
        if spec.ignore_growing and not view.segment.sealed:
            continue
        mask = valid_mask(view, spec.ts, spec.flt)
        if spec.field.nullable and _any(mask):  # a null vector (Milvus 3.0) is never a hit
            mask = _with_vector_valid(view, spec.field, mask)
        if not _any(mask):
            continue
        if elems is not None:
            d, o, e = element_search.segment_search(view, spec, k, mask)  # hits are elements: not capped by rows
            elems.append(e)
        else:
            d, o = _tie_closed_search(view, spec, min(k, view.n), mask)
        hit_views.append(view)
        dists.append(d)
        offs.append(o)
    if not dists:
        return Hits([0] * nq, np.empty(0, np.int64), np.empty(0, np.float32))
    E = None if elems is None else np.concatenate(elems, axis=1)
    if len(dists) == 1:  # the common case: no segment ids to carry, nothing to merge
        D, O, S = dists[0], offs[0], None
    else:
        D, O = np.concatenate(dists, axis=1), np.concatenate(offs, axis=1)
        S = np.concatenate([np.full(o.shape, i, np.int64) for i, o in enumerate(offs)], axis=1)
    full = bool(O.min() >= 0)  # every slot holds a hit (no padding)
    valid = None if full else O >= 0
    # primary keys of every candidate: for tie-breaking and the reply
    P = _gather_2d(hit_views, S, O, valid, pk_name)
    if S is not None or _has_ties(D, valid):
        key = -D if is_similarity(spec.metric) else D.copy()
        if valid is not None:
            key[~valid] = np.inf
        if P.dtype != object:
            order = np.lexsort((P, key), axis=1)
        else:
            order = np.argsort(key, axis=1, kind="stable")
            ranked = np.take_along_axis(key, order, 1)
            if ((ranked[:, 1:] == ranked[:, :-1]) & np.isfinite(ranked[:, 1:])).any():  # tied scores
                order = np.lexsort((text_rank(P, valid), key), axis=1)
        order = order[:, :k]
        rows = np.arange(nq)[:, None]
        D, O, P = D[rows, order], O[rows, order], P[rows, order]
        S = None if S is None else S[rows, order]
        E = None if E is None else E[rows, order]
        valid = None if valid is None else valid[rows, order]
    if spec.offset:  # drop `offset` leading hits per query
        D, O, P = D[:, spec.offset:], O[:, spec.offset:], P[:, spec.offset:]
        S = None if S is None else S[:, spec.offset:]
        E = None if E is None else E[:, spec.offset:]
        valid = None if valid is None else valid[:, spec.offset:]
    if valid is None:
        topks = [D.shape[1]] * nq
        hits = Hits(topks, P.ravel(), D.ravel().astype(np.float32, copy=False))
        s_flat, o_flat = (None if S is None else S.ravel()), O.ravel()
    else:
        flat = valid.ravel()
        topks = valid.sum(axis=1).tolist()
        hits = Hits(topks, P.ravel()[flat], D.ravel()[flat].astype(np.float32, copy=False))
        s_flat, o_flat = (None if S is None else S.ravel()[flat]), O.ravel()[flat]
    for name in output_fields:
        hits.columns[name] = gather(hit_views, s_flat, o_flat, name)
    if E is not None:
        hits.columns[element_search.ELEMENT_COLUMN] = E.ravel() if valid is None else E.ravel()[valid.ravel()]
    return hits


def text_rank(keys: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """String primary keys' ranks (int64, same shape): ties in score are broken by them as numeric keys
    are by value, so any top-k takes the same rows of a tie group (slots without a hit rank as "")."""
    flat = keys.ravel() if valid is None else np.where(valid, keys, "").ravel()
    return np.unique(flat, return_inverse=True)[1].reshape(keys.shape).astype(np.int64, copy=False)


def _with_vector_valid(view: SegmentView, field: FieldSchema, mask: np.ndarray | None) -> np.ndarray | None:
    """``mask`` less the rows whose vector is null (a nullable vector field's validity mask: their
    placeholder may sit in an index, never in a result)."""
    valid = np.asarray(view.segment.column(valid_key(field.name), view.n), bool)
    if mask is None:
        return None if valid.all() else valid.copy()
    return mask & valid


def _has_ties(D: np.ndarray, valid: np.ndarray | None) -> bool:
    """One segment's result rows come sorted by distance; they need re-ordering only where equal
    distances must be broken by primary key."""
    if D.shape[1] < 2:
        return False
    same = D[:, 1:] == D[:, :-1]
    if valid is not None:
        same &= valid[:, 1:]
    return bool(same.any())


def _gather_2d(views, S, O, valid, name) -> np.ndarray:
    """Column ``name`` at every (segment, offset) slot; slots with no hit (``valid`` False) hold 0 / None."""
    if valid is None:
        if S is None:
            return views[0].segment.column(name, views[0].n)[O]
        return gather(views, S.ravel(), O.ravel(), name).reshape(O.shape)
    flat = gather(views, None if S is None else S[valid], O[valid], name)
    out = np.zeros(O.shape, flat.dtype) if flat.dtype != object else np.empty(O.shape, object)
    out[valid] = flat
    return out


def gather(views: list[SegmentView], seg_idx: np.ndarray | None, offsets: np.ndarray, name: str) -> np.ndarray:
    """Column ``name`` for rows (views[seg_idx[j]], offsets[j]), in that order (``seg_idx`` may be None
    when there is one view)."""
    if not len(views):
        return np.empty(0)
    if len(views) == 1:
        return views[0].segment.column(name, views[0].n)[offsets]
    assert seg_idx is not None, "several views need the segment index of each row"
    proto = views[0].segment.column(name, 0)
    out = np.empty((len(offsets),) + proto.shape[1:], proto.dtype)
    for i in np.unique(seg_idx).tolist():
        m = seg_idx == i
        out[m] = views[i].segment.column(name, views[i].n)[offsets[m]]
    return out


def query(views: list[SegmentView], ts: int, flt: RowFilter | None, output_fields: Sequence[str], pk_name: str,
          limit: int | None, offset: int) -> dict[str, np.ndarray]:
    """Rows passing the filter; sorted by primary key when a limit or offset applies."""
    seg_idx, offs = [], []
    for i, view in enumerate(views):
        mask = valid_mask(view, ts, flt)
        o = np.arange(view.n) if mask is None else np.flatnonzero(mask)
        if len(o):
            offs.append(o)
            seg_idx.append(np.full(len(o), i, np.int64))
    if not offs:
        return {name: _empty_like(views, name) for name in output_fields}
    S, O = np.concatenate(seg_idx), np.concatenate(offs)
    if limit is not None or offset:
        pks = gather(views, S, O, pk_name)
        order = np.argsort(pks, kind="stable")
        end = None if limit is None else offset + limit
        order = order[offset:end]
        S, O = S[order], O[order]
    return {name: gather(views, S, O, name) for name in output_fields}


def _empty_like(views, name):
    if views:
        return views[0].segment.column(name, 0)
    return np.empty(0)


def count(views: list[SegmentView], ts: int, flt: RowFilter | None) -> int:
    total = 0
    for v in views:
        mask = valid_mask(v, ts, flt)
        total += v.n if mask is None else int(np.count_nonzero(mask))
    return total


AGGREGATE_CHUNK = 65_536  # rows reduced at a time: a query aggregation's memory, whatever a segment's size


def aggregate(views: list[SegmentView], ts: int, flt: RowFilter | None, schema: CollectionSchema,
              spec: PartialSpec, empty: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-group partials (``vecdb.group_partials``) of the rows passing the filter: each segment's
    matching rows reduced to their groups ``AGGREGATE_CHUNK`` rows at a time, the partials merged as they
    add up (a few groups' rows held, not every matching row's columns). ``empty``: the fetched columns
    of no rows (the partial when no row matches)."""
    names = fetched(schema, spec)
    parts: list[dict[str, np.ndarray]] = []
    held, bound = 0, 2 * AGGREGATE_CHUNK
    for view in views:
        mask = valid_mask(view, ts, flt)
        if mask is not None and not mask.any():
            continue
        whole = {name: view.segment.column(name, view.n) for name in names}
        for lo in range(0, view.n, AGGREGATE_CHUNK):
            hi = min(view.n, lo + AGGREGATE_CHUNK)
            keep = None if mask is None else mask[lo:hi]
            if keep is not None and not keep.any():
                continue
            cols = {name: col[lo:hi] if keep is None else col[lo:hi][keep] for name, col in whole.items()}
            parts.append(row_partials(schema, spec, cols))
            held += len(parts[-1][ROWS])
            if len(parts) > 1 and held > bound:  # what is held stays bounded by the groups
                parts = [merge(schema, spec, parts)]
                held = len(parts[0][ROWS])
                bound = max(bound, 2 * held)  # (many groups: merged again only once doubled)
    if not parts:
        return row_partials(schema, spec, empty)
    return merge(schema, spec, parts) if len(parts) > 1 else parts[0]


def query_top(views: list[SegmentView], ts: int, flt: RowFilter | None, output_fields: Sequence[str],
              spec: TopSpec) -> dict[str, np.ndarray]:
    """A plain query's ORDER BY with a limit (``vecdb.top_rows``): the first ``spec.k`` rows passing the
    filter by the sort keys, in order; each segment's first ``k`` picked from its sort columns alone
    (np.partition), then those of every segment, the output columns gathered for the chosen rows only."""
    names = spec.columns()
    seg_idx, offs, picked = [], [], []
    for i, view in enumerate(views):
        mask = valid_mask(view, ts, flt)
        rows = np.arange(view.n) if mask is None else np.flatnonzero(mask)
        if not len(rows):
            continue
        whole = {name: view.segment.column(name, view.n) for name in names}
        rows = top_rows.pick(spec, whole, rows)
        offs.append(rows)
        seg_idx.append(np.full(len(rows), i, np.int64))
        picked.append({name: np.asarray(col)[rows] for name, col in whole.items()})
    if not offs:
        return {name: _empty_like(views, name) for name in output_fields}
    S, O = np.concatenate(seg_idx), np.concatenate(offs)
    cols = {name: np.concatenate([p[name] for p in picked]) for name in names}
    chosen = top_rows.top(spec, cols)
    S, O = S[chosen], O[chosen]
    return {name: gather(views, S, O, name) for name in output_fields}

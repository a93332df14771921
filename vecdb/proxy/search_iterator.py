"""Search iterator v2: pages of a search by distance, for pymilvus's ``search_iterator`` (2.5 and later).

The client sends ``iterator: true`` and ``search_iter_v2: true`` with ``search_iter_batch_size`` (the
page size); later pages add the first reply's token (``search_iter_id``) and the previous page's last
score (``search_iter_last_bound``), and pin the first page's snapshot (``guarantee_timestamp``). A
reply carries ``search_iterator_v2_results`` (the token; the last score of its page, else the bound it
was given, else the closest possible one), as Milvus's proxy answers (``getLastBound``). Without that
token in the first reply pymilvus falls back to its v1 iterator, with a warning.

A page is the first ``batch`` hits past the bound: a distance beyond it (for L2 above it, for IP,
COSINE and BM25 below it). Milvus stops there, so rows at exactly the bound that did not fit on the
previous page are never returned. vecdb also keeps, per token (``Cursors``, in this proxy), the primary
keys it already returned at each bound, and returns the rest of the rows at the bound first, in primary
key order: every row exactly once, ties included. A page whose token this proxy does not know (another
proxy, or forgotten) gets Milvus's rule.

How a page is found: the first page is a top-``w`` search; a later one a range search from the bound
(inclusive) out to twice the previous page's span of scores past it, at most ``w`` hits; ``w`` starts at
twice the batch (plus the ties at the bound) and grows x4 while the window is full and either holds
fewer than ``batch`` hits for the page or ends in the middle of the page's last tie group (the window's
cut through equal distances is not in primary key order); the range grows x4 while too few hits are
inside it, and goes to the far end at once when a wider one found no more (a graph's beam cut it). So
a page costs one search with a window of a few batches; a graph index's beam reaches past the rows
already returned (its cost grows with the depth, until the beam is wide enough that the index scans
every row instead: ``vecdb.index.faiss_index.BEAM_SCAN_RATIO``).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vecdb import errors
from vecdb.index import is_similarity
from vecdb.limits import LIMITS
from vecdb.querynode.executor import Hits

ITERATOR_V2 = "search_iter_v2"
BATCH_SIZE = "search_iter_batch_size"
LAST_BOUND = "search_iter_last_bound"
TOKEN = "search_iter_id"
PER_PAGE_KEYS = frozenset({LAST_BOUND, TOKEN})  # what changes between the pages of one iterator

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FAR = 3.0e38  # a range search's outer bound past every distance and score (a float32, and finite)
_CURSORS = 4096  # iterators whose ties a proxy remembers
_BOUNDS_PER_CURSOR = 4  # a retried page still finds its bound's ties


def iterator_batch(sp: dict, iterator: bool, offset: int) -> int:
    """The page size of a v2 iterator's search (``sp``: the request's search parameters), 0 for any
    other search. Milvus's checks and messages (proxy ``parseSearchIteratorV2Info``)."""
    if str(sp.get(ITERATOR_V2, "")).lower() != "true":
        return 0
    if not iterator:
        raise errors.MissingParameter(f"both iterator and {ITERATOR_V2} must be set in the SDK")
    if offset > 0:
        raise errors.InvalidParameter("Setting an offset is not permitted when using a search iterator v2")
    raw = sp.get(BATCH_SIZE, "")
    if raw == "":
        raise errors.InvalidParameter("batch size is required")
    try:
        batch = int(raw)
    except ValueError:
        raise errors.InvalidParameter(f"batch size is invalid: {raw}") from None
    if not 1 <= batch <= LIMITS.max_topk:
        raise errors.InvalidParameter(f"batch size is invalid: it should be in range [1, {LIMITS.max_topk}]")
    return batch


@dataclass(frozen=True)
class PageRequest:
    token: str
    bound: np.float32 | None  # the previous page's last score; None on the first page


def page_request(pairs) -> PageRequest:
    """The token and bound of one page (from the request's search parameters)."""
    token, bound = "", None
    for kv in pairs:
        if kv.key == TOKEN:
            token = kv.value
        elif kv.key == LAST_BOUND and kv.value != "":
            try:
                bound = np.float32(float(kv.value))
            except ValueError:
                raise errors.InvalidParameter(f"failed to parse input last bound: {kv.value}") from None
    if token:
        try:
            uuid.UUID(token)
        except ValueError:
            raise errors.InvalidParameter("invalid token format") from None
    else:
        token = str(uuid.uuid4())
    return PageRequest(token, bound)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the keys returned at its last bound so far, how many rows the iterator
    returned in all (how deep its next page is: a graph index searches at least that wide), and the
    span of scores the page covered (the next page's range starts that wide, twice over)."""

    returned: np.ndarray
    depth: int
    width: float = 0.0


class Cursors:
    """Per iterator token, the cursors of its last pages by bound (bounded: the oldest iterators are
    forgotten first)."""

    def __init__(self, size: int = _CURSORS):
        self._size = size
        self._tokens: OrderedDict[str, dict[float, Cursor]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, bound: np.float32) -> Cursor | None:
        """The cursor of the page that ended at ``bound``; None when this proxy does not know it
        (Milvus's rule then)."""
        with self._lock:
            bounds = self._tokens.get(token)
            return None if bounds is None else bounds.get(float(bound))

    def remember(self, token: str, bound: float, cursor: Cursor) -> None:
        with self._lock:
            bounds = self._tokens.pop(token, None) or {}
            bounds[float(np.float32(bound))] = cursor
            while len(bounds) > _BOUNDS_PER_CURSOR:
                del bounds[next(iter(bounds))]
            self._tokens[token] = bounds
            while len(self._tokens) > self._size:
                self._tokens.popitem(last=False)


def far_bound(metric: str, dim: int) -> float:
    """A range search's outer bound that every hit is inside (the range is bounded by the page's bound)."""
    if is_similarity(metric):
        return -_FAR
    if metric == "HAMMING":
        return float(dim + 1)
    if metric in ("JACCARD", "SUBSTRUCTURE", "SUPERSTRUCTURE"):
        return 2.0
    return _FAR


@dataclass
class Page:
    rows: np.ndarray  # indices into the window's hits, query 0's first
    topks: list[int]
    last_bound: float
    cursor: Cursor | None  # nq == 1: where the next page starts


def next_page(search: Callable[[int, float | None], Hits], nq: int, batch: int, req: PageRequest,
              at: Cursor | None, metric: str) -> tuple[Hits, Page]:
    """Search with growing windows and ranges (``search(w, outer)``: at most ``w`` hits per query out
    to the score ``outer``, None: all, as an ``executor.Hits`` sorted by distance then primary key per
    query) until each query's page is settled; the hits and the page. ``at``: the cursor of the page
    that ended at ``req.bound``, when known."""
    similar = is_similarity(metric)
    returned = None if at is None else at.returned
    window = 2 * batch + (0 if returned is None else len(returned))
    cap = LIMITS.max_topk if req.bound is None else None  # a top-k search cannot go past it
    # a later page's range: twice the previous page's span past the bound (the range search of an
    # exhaustive index sorts every hit inside it), widened x4 while too few hits are inside
    width = 0.0 if req.bound is None or at is None else 2 * at.width
    found = -1  # hits the last try found
    while True:
        if cap is not None:
            window = min(window, cap)
        outer = None
        if req.bound is not None and 0 < width < _FAR:
            outer = float(req.bound) + (-width if similar else width)
        hits = search(window, outer)
        ends = np.cumsum([0, *hits.topks])
        scores, pks = hits.scores, hits.pks
        rows, topks, settled, short = [], [], True, False
        for q in range(nq):
            s, p = scores[ends[q]:ends[q + 1]], pks[ends[q]:ends[q + 1]]
            ok = _eligible(s, p, req.bound, returned, similar)
            take = np.flatnonzero(ok)[:batch]
            full = len(s) >= window
            if full and (len(take) < batch or s[take[-1]] == s[-1]):
                settled = False
            elif not full and len(take) < batch and outer is not None:
                short = True  # the range may be what cut it short
            rows.append(ends[q] + take)
            topks.append(len(take))
        if short:  # wider, or all the way when the wider range found no more (a graph's beam cut it short)
            width = width * 4 if len(scores) > found else _FAR
            found = len(scores)
            continue
        if settled or (cap is not None and window >= cap):
            break
        window *= 4
    flat = np.concatenate(rows) if rows else np.empty(0, np.int64)
    page = Page(flat, topks, _last_bound(scores[flat], nq, req.bound, similar), None)
    if nq == 1 and len(flat):
        last = scores[flat[-1]]
        at_last = pks[flat][scores[flat] == last]
        if req.bound is not None and returned is not None and last == req.bound:
            at_last = np.concatenate([returned, at_last])
        page_scores = scores[flat]
        page.cursor = Cursor(at_last, (0 if at is None else at.depth) + len(flat),
                             float(abs(page_scores[-1] - page_scores[0])))
    return hits, page


def nearer_bound(bound: np.float32, range_filter: float | None, metric: str) -> float:
    """A later page's range starts at its bound, or at the request's own ``range_filter`` past it."""
    if range_filter is None:
        return float(bound)
    b, rf = float(bound), float(range_filter)
    return min(b, rf) if is_similarity(metric) else max(b, rf)


def outer_radius(outer: float | None, far: float, near: float, metric: str) -> float:
    """A later page's range search radius: ``outer`` (None: ``far``), but never past the request's own
    radius ``far``, and ``far`` when the range would end before it starts (``near``)."""
    if outer is None:
        return far
    similar = is_similarity(metric)
    radius = max(outer, far) if similar else min(outer, far)
    return far if ((radius >= near) if similar else (radius <= near)) else radius


def _eligible(s: np.ndarray, p: np.ndarray, bound: np.float32 | None, returned: np.ndarray | None,
              similar: bool) -> np.ndarray:
    """Hits that may be on the page: past the bound; at it, those not returned yet (when known)."""
    if bound is None:
        return np.ones(len(s), bool)
    ok = s < bound if similar else s > bound
    if returned is not None:
        ok |= (s == bound) & ~np.isin(p, returned)
    return ok


def _last_bound(page_scores: np.ndarray, nq: int, bound: np.float32 | None, similar: bool) -> float:
    """Milvus's ``getLastBound``: the page's last score (one query), else the bound given, else the
    closest possible one."""
    if nq == 1 and len(page_scores):
        return float(page_scores[-1])
    if bound is not None:
        return float(bound)
    return _FLOAT32_MAX if similar else -_FLOAT32_MAX

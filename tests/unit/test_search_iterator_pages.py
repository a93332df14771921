"""Search iterator v2's pages (vecdb.proxy.search_iterator) over a fake search: every row once with
ties at page edges when the proxy remembers the token, Milvus's strict bound when it does not, windows
that grow past a tie group, and the parameters' checks."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from vecdb import errors
from vecdb.proxy.search_iterator import (
    BATCH_SIZE,
    ITERATOR_V2,
    LAST_BOUND,
    TOKEN,
    Cursor,
    Cursors,
    PageRequest,
    iterator_batch,
    next_page,
    page_request,
)
from vecdb.querynode.executor import Hits


class _KV:
    def __init__(self, key: str, value: str):
        self.key, self.value = key, value


def _index(scores: np.ndarray, similar: bool):
    """A fake search over rows (pk = row number) with these scores: sorted best first, ties by pk;
    ``search(window, bound, outer)`` as the proxy's (top-window, or from the bound inclusive out to
    ``outer`` exclusive)."""
    pks = np.arange(len(scores), dtype=np.int64)
    order = np.lexsort((pks, -scores if similar else scores))
    s, p = scores[order].astype(np.float32), pks[order]
    windows: list[int] = []

    def search(window: int, bound, outer=None) -> Hits:
        windows.append(window)
        keep = np.ones(len(s), bool) if bound is None else (s <= bound if similar else s >= bound)
        if outer is not None:  # the range's outer end, exclusive (as a range search's radius)
            keep &= s > outer if similar else s < outer
        ss, pp = s[keep][:window], p[keep][:window]
        return Hits([len(ss)], pp, ss)

    return search, windows


def _walk(scores: np.ndarray, batch: int, similar: bool, cursors: Cursors | None) -> list[list[int]]:
    """Every page of one iterator; ``cursors`` None: a proxy that never knows the token."""
    metric = "IP" if similar else "L2"
    search, _ = _index(scores, similar)
    req, pages = PageRequest(str(uuid.uuid4()), None), []
    while True:
        at = None if req.bound is None or cursors is None else cursors.get(req.token, req.bound)
        hits, page = next_page(lambda w, o, b=req.bound: search(w, b, o), 1, batch, req, at, metric)
        if not page.topks[0]:
            return pages
        pages.append(hits.pks[page.rows].tolist())
        if cursors is not None and page.cursor is not None:
            cursors.remember(req.token, page.last_bound, page.cursor)
        req = PageRequest(req.token, np.float32(page.last_bound))


@pytest.mark.parametrize("similar", [False, True], ids=["L2", "IP"])
def test_every_row_once_in_order_with_ties_across_pages(similar):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 12, 1000).astype(np.float32)  # ~83 rows per score: ties cross every page edge
    pages = _walk(scores, 37, similar, Cursors())
    got = [pk for page in pages for pk in page]
    pks = np.arange(1000)
    assert got == pks[np.lexsort((pks, -scores if similar else scores))].tolist()
    assert all(len(p) == 37 for p in pages[:-1])


def test_without_the_token_a_page_starts_past_the_bound_as_milvus_does():
    scores = np.repeat(np.arange(5, dtype=np.float32), 10)  # 10 rows at each of 5 distances
    pages = _walk(scores, 15, False, cursors=None)
    got = [pk for page in pages for pk in page]
    assert len(got) == len(set(got))  # never twice
    assert got[:15] == list(range(15))  # first page: 10 at 0, then 5 at 1 (ties by pk)
    assert got[15:25] == list(range(20, 30))  # the 5 other rows at 1 are past no bound: skipped
    assert len(got) < 50


def test_a_window_grows_past_a_tie_group_larger_than_it():
    scores = np.concatenate([np.zeros(5, np.float32), np.ones(500, np.float32), np.full(5, 2, np.float32)])
    search, windows = _index(scores, False)
    req = PageRequest(str(uuid.uuid4()), np.float32(0))
    at = Cursor(np.arange(5), 5)  # the first page returned the 5 rows at 0
    hits, page = next_page(lambda w, o: search(w, req.bound, o), 1, 10, req, at, "L2")
    assert hits.pks[page.rows].tolist() == list(range(5, 15))  # the lowest keys of the 500 ties at 1
    assert windows[0] == 25 and windows[-1] > 500  # grown until the window ends past the tie group
    assert page.last_bound == 1.0 and page.cursor is not None
    assert page.cursor.returned.tolist() == list(range(5, 15)) and page.cursor.depth == 15


def test_a_retried_page_is_the_same_page():
    cursors = Cursors()
    scores = np.repeat(np.arange(3, dtype=np.float32), 20)
    search, _ = _index(scores, False)
    token = str(uuid.uuid4())
    _, first = next_page(lambda w, o: search(w, None, o), 1, 15, PageRequest(token, None), None, "L2")
    assert first.cursor is not None
    cursors.remember(token, first.last_bound, first.cursor)
    req = PageRequest(token, np.float32(first.last_bound))
    answers = []
    for _ in range(2):  # the reply of the first try was lost; the client sends the same request again
        at = cursors.get(token, req.bound)
        hits, page = next_page(lambda w, o: search(w, req.bound, o), 1, 15, req, at, "L2")
        assert page.cursor is not None
        cursors.remember(token, page.last_bound, page.cursor)
        answers.append(hits.pks[page.rows].tolist())
    assert answers[0] == answers[1] == list(range(15, 30))


@pytest.mark.parametrize("similar", [False, True], ids=["L2", "IP"])
def test_a_later_page_searches_a_range_about_twice_the_last_page_wide(similar):
    """An exhaustive index's range search sorts every hit inside its range: a later page's range ends
    twice the previous page's span past the bound (0.1 x 20 rows here), widened x4 when too few hits
    are inside (the gap after row 500), not at the far end of every score."""
    scores = np.concatenate([np.arange(500) * 0.1, 1000 + np.arange(500) * 0.1]).astype(np.float32)
    if similar:
        scores = -scores
    search, _ = _index(scores, similar)
    outers = []

    def traced(w, o, b):
        outers.append(o)
        return search(w, b, o)

    cursors, req, got = Cursors(), PageRequest(str(uuid.uuid4()), None), []
    while True:
        at = None if req.bound is None else cursors.get(req.token, req.bound)
        hits, page = next_page(lambda w, o, b=req.bound: traced(w, o, b), 1, 20, req, at, "IP" if similar else "L2")
        if not page.topks[0]:
            break
        got += hits.pks[page.rows].tolist()
        cursors.remember(req.token, page.last_bound, page.cursor)
        req = PageRequest(req.token, np.float32(page.last_bound))
    assert got == list(range(1000))
    finite = [o for o in outers if o is not None]
    # page 1: scores 0 .. 1.9, so page 2 searches out to 1.9 + 2 x 1.9 (-5.7 for IP)
    assert len(finite) > 40 and abs(finite[0] - (-5.7 if similar else 5.7)) < 1e-3


def test_a_range_that_finds_no_more_when_widened_goes_to_the_far_end_at_once():
    """A graph index's beam, not the range, may cut a page short: widening the range again and again
    would repeat the same search ~60 times (x4 up to 3e38); one wider try that finds no more is enough."""
    scores = np.arange(1000, dtype=np.float32)
    search, _ = _index(scores, False)
    outers = []

    def beam(w, o):  # a beam that reaches 5 hits past the bound, whatever the range
        outers.append(o)
        h = search(min(w, 6), np.float32(100), o)
        return Hits([len(h.pks)], h.pks, h.scores)

    req = PageRequest(str(uuid.uuid4()), np.float32(100))
    _, page = next_page(beam, 1, 10, req, Cursor(np.array([100]), 101, 9.0), "L2")
    assert page.topks == [5] and len(outers) <= 4 and outers[-1] is None


def test_cursors_forget_the_oldest_iterators():
    cursors = Cursors(size=2)
    for token in "abc":
        cursors.remember(token, 1.0, Cursor(np.array([1]), 1))
    assert cursors.get("a", np.float32(1)) is None
    got = cursors.get("c", np.float32(1))
    assert got is not None and got.returned.tolist() == [1]


def test_parameters():
    v2 = {ITERATOR_V2: "True", BATCH_SIZE: "50"}
    assert iterator_batch(v2, iterator=True, offset=0) == 50
    assert iterator_batch({}, iterator=True, offset=0) == 0
    with pytest.raises(errors.MissingParameter, match="both iterator and search_iter_v2"):
        iterator_batch(v2, iterator=False, offset=0)
    with pytest.raises(errors.InvalidParameter, match="offset is not permitted"):
        iterator_batch(v2, iterator=True, offset=3)
    with pytest.raises(errors.InvalidParameter, match="batch size is required"):
        iterator_batch({ITERATOR_V2: "true"}, iterator=True, offset=0)
    with pytest.raises(errors.InvalidParameter, match="batch size is invalid"):
        iterator_batch({**v2, BATCH_SIZE: "0"}, iterator=True, offset=0)
    first = page_request([])
    assert uuid.UUID(first.token) and first.bound is None
    token = str(uuid.uuid4())
    again = page_request([_KV(TOKEN, token), _KV(LAST_BOUND, "0.25")])
    assert again.token == token and again.bound == np.float32(0.25)
    with pytest.raises(errors.InvalidParameter, match="invalid token format"):
        page_request([_KV(TOKEN, "not-a-uuid")])
    with pytest.raises(errors.InvalidParameter, match="last bound"):
        page_request([_KV(LAST_BOUND, "x")])

"""vecdb.proxy.batching: concurrent one-query searches merged into one call answer as if sent alone.

The searches run through the real executor (vecdb.querynode.executor) over random segments (sealed
with and without a FLAT index, growing, deletes, many exact distance ties: tests/unit/test_merge.py's
``_segments``), plus an HNSW-indexed segment and a larger growing one of real-valued vectors, and
the merged answer split per query must equal each query's own answer, bit for bit."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.unit.test_merge import _assert_hits_equal, _schema, _segments
from vecdb import errors
from vecdb.index import create_index
from vecdb.proxy.batching import MAX_QUERIES, SearchBatcher, batch_key, split_hits
from vecdb.querynode import executor
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import SegmentView
from vecdb.schema import DataType
from vecdb.timestamp import MAX_TIMESTAMP

INFO = SimpleNamespace(id=7)
OUT = ["tag", "num"]


def _real_valued(rng: np.random.Generator, pk_type: DataType, metric: str) -> list[SegmentView]:
    """An HNSW-indexed sealed segment and a growing one, of non-integer vectors (exact search over
    the growing one runs FAISS's flat kernels on 1500 rows)."""
    schema = _schema(pk_type)
    views = []
    for slot, n in ((100, 800), (101, 1500)):
        ids = np.arange(n, dtype=np.int64) + slot * 10_000
        cols = {"pk": ids if pk_type == DataType.INT64 else np.array([f"k{i}" for i in ids], dtype=object),
                "vec": rng.standard_normal((n, 4)).astype(np.float32),
                "tag": np.array([f"t{i}" for i in ids], dtype=object), "num": ids * 3}
        if slot == 100:
            seg = Segment.from_columns(slot, 1, schema, cols, np.ones(n, np.uint64),
                                       np.full(n, MAX_TIMESTAMP, np.uint64))
            index = create_index("HNSW", metric, 4, {"M": 8, "efConstruction": 40}, DataType.FLOAT_VECTOR)
            index.build(cols["vec"])
            seg.indexes["vec"] = index
        else:
            seg = Segment(slot, 1, schema)
            seg.append(cols, n, 1)
        views.append(SegmentView(seg, n))
    return views


def _spec(views, queries, metric, limit=5, offset=0, index_type="FLAT", ts=10) -> SearchSpec:
    field = views[0].segment.schema.field("vec")
    return SearchSpec(field=field, queries=queries, limit=limit, offset=offset, metric=metric,
                      params={"ef": 32}, index_type=index_type, ts=ts)


CASES = [(pk, metric, seed) for pk in (DataType.INT64, DataType.VARCHAR) for metric in ("L2", "IP", "COSINE")
         for seed in range(3)]


@pytest.mark.parametrize("pk_type,metric,seed", CASES)
def test_a_merged_request_answers_each_query_as_it_would_alone(pk_type, metric, seed):
    rng = np.random.default_rng(seed)
    for views in (_segments(rng, pk_type, metric), _real_valued(rng, pk_type, metric)):
        if not views:
            continue
        dense = views[0].segment.column("vec", views[0].n)
        queries = np.concatenate([dense[:MAX_QUERIES // 2],  # stored vectors: exact-distance ties
                                  rng.standard_normal((MAX_QUERIES - MAX_QUERIES // 2, 4)).astype(np.float32)])
        queries = queries[:MAX_QUERIES]
        for limit, offset in ((5, 0), (3, 2)):
            spec = _spec(views, queries, metric, limit, offset)
            merged = split_hits(executor.search(views, spec, "pk", OUT), len(queries))
            for i, got in enumerate(merged):
                alone = executor.search(views, _spec(views, queries[i:i + 1], metric, limit, offset), "pk", OUT)
                _assert_hits_equal(got, alone)


def _views():
    return _real_valued(np.random.default_rng(1), DataType.INT64, "L2")


VIEWS = _views()


def _gate():
    """A ``run`` whose first call holds its slot until ``release`` is set; it records the number of
    queries of every call."""
    first, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def run(spec):
        sizes.append(len(spec.queries))
        if not first.is_set():
            first.set()
            assert release.wait(30), "the searches were never released"
        return executor.search(VIEWS, spec, "pk", OUT)
    return run, sizes, release


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def _search_all(batcher, queries, run, release, key_of):
    """One thread per query, started one at a time: the first takes the slot (its call held by the
    gate), each later one is started once the one before it has queued; then the gate opens.
    Each thread's answer (or error)."""
    answers: list = [None] * len(queries)
    failures: list = []

    def one(i):
        spec = _spec(VIEWS, queries[i:i + 1], "L2")
        try:
            answers[i] = batcher.search(key_of(spec), spec, run)
        except BaseException as e:  # noqa: BLE001 (checked by the test)
            failures.append(e)
            answers[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(queries))]
    threads[0].start()
    _wait_for(lambda: batcher.calls == 1, "the first search did not take the slot")
    seen: dict[int, object] = {}  # every batch seen open (a full one leaves _open as it fills)

    def queued() -> int:
        with batcher._lock:
            seen.update((id(b), b) for b in batcher._open.values())
            return sum(len(b.queries) for b in seen.values())
    for i, t in enumerate(threads[1:], 1):
        t.start()
        _wait_for(lambda i=i: queued() == i, f"search {i} did not queue")
    release.set()
    for t in threads:
        t.join(30)
    return answers, failures


def test_searches_that_arrive_while_their_call_is_in_flight_go_together_in_the_next():
    views = VIEWS
    queries = np.random.default_rng(2).standard_normal((MAX_QUERIES + 4, 4)).astype(np.float32)
    batcher = SearchBatcher(slots=lambda: 1)
    key_of = lambda spec: batch_key(INFO, spec, None, OUT, {"ch": 3})  # noqa: E731
    run, sizes, release = _gate()
    answers, failures = _search_all(batcher, queries, run, release, key_of)
    assert not failures
    # the first alone; the others waited: a full batch of MAX_QUERIES, then the rest
    assert sorted(sizes) == sorted([1, MAX_QUERIES, len(queries) - 1 - MAX_QUERIES])
    assert batcher.calls == 3 and batcher.merged == len(queries) - 1
    for i, got in enumerate(answers):
        _assert_hits_equal(got, executor.search(views, _spec(views, queries[i:i + 1], "L2"), "pk", OUT))
    assert not batcher._in_flight and not batcher._open


def test_every_search_of_a_failed_call_raises_its_error_and_the_next_calls_go_on():
    views = VIEWS
    queries = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    batcher = SearchBatcher(slots=lambda: 1)
    key_of = lambda spec: batch_key(INFO, spec, None, OUT, {})  # noqa: E731
    gate, sizes, release = _gate()

    def run(spec):
        gate(spec)
        if len(spec.queries) > 1:
            raise errors.ServiceUnavailable("query node gone")
        return executor.search(views, spec, "pk", OUT)

    answers, failures = _search_all(batcher, queries, run, release, key_of)
    assert sizes == [1, 4]
    assert len(failures) == 4 and all(isinstance(e, errors.ServiceUnavailable) for e in failures)
    assert len({id(e) for e in failures}) == 4  # each thread raised its own instance
    assert not batcher._in_flight and not batcher._open
    spec = _spec(views, queries[:1], "L2")
    _assert_hits_equal(batcher.search(key_of(spec), spec, run), answers[0])


def test_what_is_never_merged_and_what_keeps_searches_apart():
    views = _views()
    q = np.ones((1, 4), np.float32)
    spec = _spec(views, q, "L2")
    key = batch_key(INFO, spec, {2, 1}, OUT, {"a": 1})
    assert key is not None and key == batch_key(INFO, _spec(views, q * 2, "L2"), {1, 2}, OUT, {"a": 1})
    assert batch_key(INFO, _spec(views, np.ones((2, 4), np.float32), "L2"), None, OUT, {}) is None  # nq > 1
    ranged = _spec(views, q, "L2")
    ranged.radius = 2.0
    assert batch_key(INFO, ranged, None, OUT, {}) is None
    odd = _spec(views, q, "L2")
    odd.params = {"ef": object()}
    assert batch_key(INFO, odd, None, OUT, {}) is None
    others = [batch_key(INFO, _spec(views, q, "L2", ts=11), {1, 2}, OUT, {"a": 1}),  # another snapshot
              batch_key(INFO, spec, {1, 2}, OUT, {"a": 2}),  # another wait
              batch_key(INFO, spec, None, OUT, {"a": 1}),  # every partition
              batch_key(INFO, spec, {1, 2}, ["tag"], {"a": 1}),
              batch_key(INFO, _spec(views, q, "L2", limit=6), {1, 2}, OUT, {"a": 1}),
              batch_key(SimpleNamespace(id=8), spec, {1, 2}, OUT, {"a": 1})]
    assert all(k is not None and k != key for k in others)
    # alone (no key, or a free slot) the call is made at once, in the caller's thread
    batcher = SearchBatcher(slots=lambda: 1)
    calls = []
    assert batcher.search(None, spec, lambda s: calls.append(threading.get_ident()) or "a") == "a"
    assert batcher.search(key, spec, lambda s: calls.append(threading.get_ident()) or "b") == "b"
    assert calls == [threading.get_ident()] * 2 and batcher.merged == 0


def test_split_hits_refuses_an_answer_of_another_size():
    hits = executor.search(_views(), _spec(_views(), np.ones((2, 4), np.float32), "L2"), "pk", OUT)
    assert [len(h.pks) for h in split_hits(hits, 2)] == hits.topks
    with pytest.raises(ValueError, match="answered 2 queries, expected 3"):
        split_hits(hits, 3)

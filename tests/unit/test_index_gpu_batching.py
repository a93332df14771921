"""Query micro-batching of the GPU indexes (vecdb/index/gpu_batch.py, GpuIndex.search).

The indexes run on NumPy standing in for CuPy. To make a batch form
deterministically, a test holds the index's write lock (as a build would)
while the searching threads arrive: the first one runs alone and blocks on
the read lock, the others stack up in one batch, which closes when
MAX_BATCH_QUERIES (set to their count) have joined.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from vecdb.errors import InvalidParameter
from vecdb.index import gpu as gpu_mod
from vecdb.index import gpu_batch
from vecdb.index.bruteforce import brute_force_search
from vecdb.index.gpu_batch import QueryBatcher
from vecdb.index.params import validate_index_params
from vecdb.schema import DataType

N, DIM, K = 3000, 16, 8
BUILD = {"GPU_BRUTE_FORCE": {}, "GPU_IVF_FLAT": {"nlist": 16}}
SEARCH = {"GPU_BRUTE_FORCE": {}, "GPU_IVF_FLAT": {"nprobe": 4}}
SLOW_WAIT_S = 5.0  # a batch that does not fill would make the test slow, not wrong


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(32, DIM)).astype(np.float32) * 2
    x = centers[rng.integers(0, 32, N)] + rng.normal(size=(N, DIM)).astype(np.float32)
    q = centers[rng.integers(0, 32, 64)] + rng.normal(size=(64, DIM)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


def make(index_type: str, metric: str):
    p = validate_index_params(index_type, metric, DataType.FLOAT_VECTOR, DIM, BUILD[index_type],
                              require_gpu=False)
    p.pop("index_type"), p.pop("metric_type")
    return gpu_mod.create_gpu_index(index_type, metric, DIM, p, DataType.FLOAT_VECTOR, xp=np)


def gated(monkeypatch, batch_size: int):
    """Later indexes take batches of exactly ``batch_size`` queries (no early timeout)."""
    monkeypatch.setattr(gpu_batch, "BATCH_WAIT_S", SLOW_WAIT_S)
    monkeypatch.setattr(gpu_batch, "MAX_BATCH_QUERIES", batch_size)


def run_threads(calls: list[Callable[[], object]], idx=None, arrived: Callable[[], bool] | None = None):
    """Run each call in its own thread; with ``idx``, hold its write lock until ``arrived()`` says
    every call is queued (or blocked on the lock). Returns results (exceptions in place)."""
    out: list[object] = [None] * len(calls)

    def work(j):
        try:
            out[j] = calls[j]()
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out[j] = e

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(calls))]
    if idx is None:
        for t in threads:
            t.start()
    else:
        with idx._lock.write():  # a writer holds the index: searches queue up behind it
            for t in threads:
                t.start()
                time.sleep(0.002)  # arrival order: the first thread is the one that runs alone
            deadline = time.monotonic() + 10
            while arrived is not None and not arrived() and time.monotonic() < deadline:
                time.sleep(0.002)
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    return out


def batch_filled(idx, nq: int) -> Callable[[], bool]:
    b = idx._batcher
    return lambda: any(x.nq >= nq for x in list(b._open.values())) or b.queries_batched >= nq


def assert_same(got, want_d, want_i):
    d, i = got
    np.testing.assert_array_equal(i, want_i)
    # the stacked search multiplies through GEMM, a single query through GEMV: float32 ulps apart
    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("metric", ["L2", "IP"])
@pytest.mark.parametrize("index_type", list(BUILD))
def test_concurrent_single_searches_match_sequential(monkeypatch, data, index_type, metric):
    x, q = data
    nthreads = 12
    gated(monkeypatch, nthreads - 1)
    idx = make(index_type, metric)
    idx.build(x)
    want = [idx.search(q[j:j + 1], K, SEARCH[index_type]) for j in range(nthreads)]
    assert idx.batches_run == idx.queries_batched == 0  # sequential searches never batch

    calls = [lambda j=j: idx.search(q[j:j + 1], K, SEARCH[index_type]) for j in range(nthreads)]
    got = run_threads(calls, idx, batch_filled(idx, nthreads - 1))
    for j in range(nthreads):
        assert_same(got[j], *want[j])
        assert got[j][0].shape == (1, K) and got[j][1].dtype == np.int64
    assert idx.batches_run == 1 and idx.queries_batched == nthreads - 1


@pytest.mark.parametrize("index_type", ["GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE"])
def test_free_running_threads_get_their_own_rows(monkeypatch, data, index_type):
    """No gate: natural concurrency, mixed nq (1..3), mixed k; every caller gets its own rows."""
    x, q = data
    monkeypatch.setattr(gpu_batch, "BATCH_WAIT_S", 0.002)
    params = {"GPU_IVF_PQ": {"nlist": 16, "m": 8, "nbits": 8},
              "GPU_CAGRA": {"intermediate_graph_degree": 32, "graph_degree": 16}}.get(index_type, {})
    p = validate_index_params(index_type, "L2", DataType.FLOAT_VECTOR, DIM, params, require_gpu=False)
    p.pop("index_type"), p.pop("metric_type")
    idx = gpu_mod.create_gpu_index(index_type, "L2", DIM, p, DataType.FLOAT_VECTOR, xp=np)
    idx.build(x)
    reqs = [(j % 60, 1 + j % 3, K if j % 4 else 3) for j in range(48)]
    want = [idx.search(q[a:a + n], k, {}) for a, n, k in reqs]

    def worker(t):
        return [idx.search(q[a:a + n], k, {}) for a, n, k in reqs[t::6]]

    got = run_threads([lambda t=t: worker(t) for t in range(6)])
    for t in range(6):
        for r, (w, g) in zip(range(t, len(reqs), 6), zip(want[t::6], got[t])):
            np.testing.assert_array_equal(g[1], w[1], err_msg=f"request {r}")
            np.testing.assert_allclose(g[0], w[0], rtol=1e-5, atol=1e-4)
    assert idx.queries_batched >= 2 * idx.batches_run  # counters are consistent whatever happened


def test_masked_and_large_searches_bypass_the_batch(monkeypatch, data):
    x, q = data
    gated(monkeypatch, 4)
    idx = make("GPU_BRUTE_FORCE", "L2")
    idx.build(x)
    valid = np.random.default_rng(2).random(N) < 0.3
    want_masked = brute_force_search(x, q[:1], K, "L2", valid)
    want_large = idx.search(q[:gpu_batch.BATCH_MAX_NQ], K, {})
    want_small = [idx.search(q[j:j + 1], K, {}) for j in range(5)]
    calls = [lambda j=j: idx.search(q[j:j + 1], K, {}) for j in range(5)]
    calls.insert(2, lambda: idx.search(q[:1], K, {}, valid=valid))
    calls.insert(4, lambda: idx.search(q[:gpu_batch.BATCH_MAX_NQ], K, {}))
    got = run_threads(calls, idx, batch_filled(idx, 4))
    masked, large = got.pop(2), got.pop(3)
    assert idx.batches_run == 1 and idx.queries_batched == 4  # the 4 small unmasked ones only
    assert valid[masked[1]].all()
    assert_same(masked, *want_masked)
    assert_same(large, *want_large)
    for g, w in zip(got, want_small):
        assert_same(g, *w)


def test_all_valid_masks_batch_and_keep_their_snapshot(monkeypatch, data):
    """An all-true mask batches (with masks of its length only); rows past it stay excluded."""
    x, q = data
    gated(monkeypatch, 3)
    idx = make("GPU_BRUTE_FORCE", "IP")
    idx.build(x)
    snap = np.ones(N - 500, dtype=bool)  # the snapshot saw 2,500 rows: the last 500 are newer
    want = [brute_force_search(x[:N - 500], q[j:j + 1], K, "IP") for j in range(4)]
    calls = [lambda j=j: idx.search(q[j:j + 1], K, {}, valid=snap) for j in range(4)]
    got = run_threads(calls, idx, batch_filled(idx, 3))
    assert idx.batches_run == 1 and idx.queries_batched == 3
    for g, w in zip(got, want):
        assert (g[1] < N - 500).all()
        assert_same(g, *w)


def test_exception_in_batched_search_reaches_every_caller(monkeypatch, data):
    x, q = data
    gated(monkeypatch, 5)
    idx = make("GPU_IVF_FLAT", "L2")
    idx.build(x)
    too_long = np.ones(N + 7, dtype=bool)  # all valid, so batchable; the search itself refuses it
    calls = [lambda j=j: idx.search(q[j:j + 1], K, {"nprobe": 4}, valid=too_long) for j in range(6)]
    got = run_threads(calls, idx, batch_filled(idx, 5))
    assert idx.batches_run == 1 and idx.queries_batched == 5
    for g in got:
        assert isinstance(g, InvalidParameter) and "valid mask has 3007 rows but the index holds 3000" in str(g)
    assert not idx._batcher._open and not idx._batcher._busy  # nothing left behind
    d, i = idx.search(q[:1], K, {"nprobe": 4})  # alone again: runs at once
    assert i.shape == (1, K) and (i >= 0).all()


def test_search_concurrent_with_add_sees_one_state(monkeypatch, data):
    """Searches racing add(): each result is the top-k of the rows before or after one add."""
    x, q = data
    monkeypatch.setattr(gpu_batch, "BATCH_WAIT_S", 0.001)
    idx = make("GPU_BRUTE_FORCE", "L2")
    idx.build(x[:1000])
    steps = [1000, 1500, 2000, 2500, 3000]
    nq = 6
    states = [brute_force_search(x[:n], q[:nq], K, "L2")[1] for n in steps]
    snap_want = states[0]
    stop = threading.Event()
    bad: list[str] = []
    seen_states: set[int] = set()

    def searcher(j):
        snap = np.ones(1000, dtype=bool)
        while not stop.is_set():
            _, i = idx.search(q[j:j + 1], K, {})
            match = [s for s, ids in enumerate(states) if np.array_equal(ids[j], i[0])]
            if not match:
                bad.append(f"query {j}: {i[0].tolist()} matches no state")
            seen_states.update(match)
            _, i = idx.search(q[j:j + 1], K, {}, valid=snap)
            if not np.array_equal(i[0], snap_want[j]):
                bad.append(f"query {j} with the 1000-row snapshot saw {i[0].tolist()}")

    threads = [threading.Thread(target=searcher, args=(j,)) for j in range(nq)]
    for t in threads:
        t.start()
    for lo, hi in zip(steps, steps[1:]):
        time.sleep(0.01)
        idx.add(x[lo:hi])
    time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(30)
    assert not bad, bad[:5]
    assert idx.ntotal == N and len(seen_states) >= 2


# --- the batcher on its own ----------------------------------------------------------------
def test_uncontended_call_does_not_wait():
    b = QueryBatcher(wait_s=10.0)
    q = np.arange(6, dtype=np.float32).reshape(3, 2)
    t0 = time.perf_counter()
    d, i = b.run("key", q, lambda qs: (qs * 2, qs.astype(np.int64)))
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(d, q * 2)
    assert b.batches_run == 0 and not b._busy


def test_batcher_stacks_rows_and_fails_every_caller():
    gate = threading.Event()
    calls: list[int] = []

    def fn(qs):
        calls.append(len(qs))
        if len(calls) == 1:
            gate.wait(10)  # the solo call keeps the key busy while the batch forms
            return qs + 1, qs.astype(np.int64)
        if len(qs) == 6:
            raise RuntimeError("device lost")
        return qs + 1, qs.astype(np.int64)

    b = QueryBatcher(wait_s=SLOW_WAIT_S, max_queries=6)
    qs = [np.full((1 + j % 2, 3), j, dtype=np.float32) for j in range(5)]  # 1+2+1+2+1 = 7 rows
    out: list[object] = [None] * 5

    def work(j):
        try:
            out[j] = b.run("k", qs[j], fn)
        except RuntimeError as e:
            out[j] = e

    threads = [threading.Thread(target=work, args=(j,)) for j in range(5)]
    threads[0].start()
    while not b._busy:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while b.queries_batched < 6 and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(30)
    assert calls == [1, 6]
    np.testing.assert_array_equal(out[0][0], qs[0] + 1)
    assert all(isinstance(o, RuntimeError) and str(o) == "device lost" for o in out[1:])
    assert b.batches_run == 1 and b.queries_batched == 6 and not b._open and not b._busy
    d, i = b.run("k", qs[1], fn)  # alone again: runs at once, succeeds
    np.testing.assert_array_equal(d, qs[1] + 1)


def test_requests_gather_while_the_device_is_busy():
    """A slow search in flight: the callers arriving meanwhile go as one batch once it is done, not as
    many small searches at once (the device would run them one after another anyway)."""
    b = QueryBatcher()
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0, "calls": 0}

    def slow(qs: np.ndarray):
        with lock:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            state["calls"] += 1
        time.sleep(0.01)
        with lock:
            state["in_flight"] -= 1
        return qs[:, :1].copy(), qs[:, :1].astype(np.int64)

    out: dict[int, float] = {}

    def caller(j: int) -> None:
        for r in range(5):
            v = float(j * 100 + r)
            d, _ = b.run("k", np.full((1, 2), v, np.float32), slow)
            assert d[0, 0] == v  # its own row back
        out[j] = v

    threads = [threading.Thread(target=caller, args=(j,)) for j in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 16
    assert state["most"] <= 2  # one search on the device, the next one gathering
    assert state["calls"] <= 40  # 80 requests: batches of several, not one search each
    assert b.queries_batched >= 60

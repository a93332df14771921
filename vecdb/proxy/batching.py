"""Merging concurrent one-query searches into one query node call (the cluster proxy's reads).

In a cluster every search a proxy serves costs a gRPC call to a query node, and at nq=1 that call
(Python gRPC on both ends) costs far more CPU than the search itself. Milvus's query nodes merge
search tasks of the same plan (``mergeSearchReqs``); here the proxy does it before the call:
``SearchBatcher.search`` sends a search at once while fewer than ``slots()`` calls of its kind are in
flight, else it waits for one to end, and the searches that arrived meanwhile with the same key go
with it as one request of several queries. A lone client, or any load the query nodes keep up
with, sees no wait; only searches that would queue behind a busy call are merged.

What may be merged: one-query searches (a 2-D vector array with one row) that agree on everything
else, which the caller puts in the key: the collection, field, limit, offset, metric, search
parameters, filter and its template values, snapshot timestamp, partitions, output fields and the
log positions the read waits for. A Strong read has a timestamp of its own, so it is never merged;
reads below Strong share a reused timestamp (vecdb.proxy.consistency), which is when they merge.
Range searches are not merged.

Results are those of the searches sent alone: the executor and the indexes rank every query of a
request independently, and a merged request holds at most ``MAX_QUERIES`` queries, fewer than FAISS's
BLAS threshold (20 queries), under which flat distances are computed per query with the same
kernels whatever the batch (above it FAISS switches to a matrix product whose rounding differs).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace

import numpy as np

from vecdb.querynode.executor import Hits, SearchSpec

MAX_QUERIES = 16  # queries in one merged request: below FAISS's distance_compute_blas_threshold (20)


def batch_key(info, spec: SearchSpec, partition_ids: set[int] | None, output_fields: Sequence[str],
              wait: dict[str, int]) -> Hashable | None:
    """What a search must share with others to be merged with them; None: send it alone (more than
    one query, not a dense vector array, a range search, parameters or template values that do not
    encode as JSON)."""
    q = spec.queries
    if spec.radius is not None or not isinstance(q, np.ndarray) or q.ndim != 2 or len(q) != 1:
        return None
    flt = spec.flt
    try:
        params = json.dumps(spec.params, sort_keys=True)
        where = None if flt is None else (flt.expr, json.dumps(flt.template, sort_keys=True))
    except (TypeError, ValueError):
        return None
    return (info.id, id(info), spec.field.name, q.dtype.str, q.shape[1], spec.limit, spec.offset, spec.metric,
            spec.index_type, params, spec.range_filter, where, spec.ts,
            None if partition_ids is None else tuple(sorted(partition_ids)), tuple(output_fields),
            tuple(sorted(wait.items())))


def split_hits(hits: Hits, n: int) -> list[Hits]:
    """The answer of a request of ``n`` queries as ``n`` answers of one query each."""
    if len(hits.topks) != n:
        raise ValueError(f"a merged search answered {len(hits.topks)} queries, expected {n}")
    bounds = np.concatenate(([0], np.cumsum(np.asarray(hits.topks, np.int64)))).tolist()
    return [Hits([hits.topks[i]], hits.pks[lo:hi], hits.scores[lo:hi],
                 {name: col[lo:hi] for name, col in hits.columns.items()})
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


class _Batch:
    """Searches waiting to go together: the first to arrive (the leader) sends them."""

    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self.queries: list[np.ndarray] = [spec.queries]
        self.done = threading.Event()
        self.answers: list[Hits] | None = None
        self.error: BaseException | None = None


class SearchBatcher:
    """``search(key, spec, run)``: ``run(spec)`` (a read through the router), merged with concurrent
    searches of the same ``key`` when ``slots()`` calls of that key are already in flight."""

    def __init__(self, slots: Callable[[], int]):
        self._slots = slots
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._in_flight: dict[Hashable, int] = {}
        self._open: dict[Hashable, _Batch] = {}  # key -> the batch still taking searches
        self.calls = 0  # calls made (merged or not): for tests and measurements
        self.merged = 0  # searches that went in a call with others

    def search(self, key: Hashable | None, spec: SearchSpec, run: Callable[[SearchSpec], Hits]) -> Hits:
        if key is None:
            return run(spec)
        with self._lock:
            batch = self._open.get(key)
            if batch is not None:  # join the batch waiting for a slot
                index = len(batch.queries)
                batch.queries.append(spec.queries)
                if len(batch.queries) >= MAX_QUERIES:
                    del self._open[key]  # full: the next search starts another
            elif self._in_flight.get(key, 0) < self._slots():
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
                self.calls += 1
                batch = None
            else:
                batch = self._open[key] = _Batch(spec)
                index = 0
        if batch is None:  # a free slot: alone, now
            try:
                return run(spec)
            finally:
                self._release(key)
        if index == 0:
            self._lead(key, batch, run)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise _own(batch.error)
        assert batch.answers is not None
        return batch.answers[index]

    def _lead(self, key: Hashable, batch: _Batch, run: Callable[[SearchSpec], Hits]) -> None:
        """Wait for a slot, close the batch, send it, hand every search its answer."""
        with self._lock:
            while self._in_flight.get(key, 0) >= self._slots():
                self._slot_freed.wait()
            if self._open.get(key) is batch:
                del self._open[key]
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self.calls += 1
            n = len(batch.queries)
            if n > 1:
                self.merged += n
        try:
            if n == 1:
                batch.answers = [run(batch.spec)]
            else:
                batch.answers = split_hits(run(replace(batch.spec, queries=np.concatenate(batch.queries))), n)
        except BaseException as e:  # noqa: BLE001 (every search of the batch raises it)
            batch.error = e
        finally:
            self._release(key)
            batch.done.set()

    def _release(self, key: Hashable) -> None:
        with self._lock:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]
            self._slot_freed.notify_all()


def _own(error: BaseException) -> BaseException:
    """A copy of ``error`` for one of the threads that raise it (one instance raised in several
    threads would collect all their tracebacks); the error itself if it cannot be copied."""
    try:
        return copy.copy(error)
    except Exception:  # noqa: BLE001 (a constructor that does not take its own args back)
        return error

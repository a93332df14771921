"""FAISS's OpenMP team size, chosen per call.

A server runs many small searches at once on its handler threads: that is where
the parallelism is. An OpenMP team per nq=1 call only adds hand-off and wait
cost (measured, FLAT at 100k x 50, nq=1 from 8 client threads on 2 cores:
server CPU 4.5 ms per query with 2 OpenMP threads, 1.2 ms with 1, and 2.5x the
QPS). A batch of ``SMALL_BATCH`` queries or more is split over all cores.
OpenMP keeps this setting per calling thread, so it is set per thread and
never leaks into the index builders' threads. Each thread remembers what it set
last and calls FAISS only on a change: the call is a SWIG wrapper that lets the
GIL go and takes it back, one hand-off per search on a busy server otherwise.
"""

from __future__ import annotations

import threading

import faiss

SMALL_BATCH = 20  # FAISS's own threshold between its per-query and its batched (BLAS) kernels
_max_threads = faiss.omp_get_max_threads()
_set_here = threading.local()  # .n: the team size this thread last set


def _set_threads(n: int) -> None:
    if getattr(_set_here, "n", 0) != n:
        faiss.omp_set_num_threads(n)
        _set_here.n = n


def configure_threads(n: int) -> None:
    """Most OpenMP threads one FAISS call (a batch search, an index build) may use."""
    global _max_threads
    _max_threads = max(1, int(n))
    _set_threads(_max_threads)


def threads_for_queries(nq: int) -> None:
    """Set the calling thread's OpenMP team size for a search of ``nq`` queries."""
    _set_threads(1 if nq < SMALL_BATCH else _max_threads)

"""vecdb.metric_tally under thread churn: a thread that ends leaves no cell behind in the tallies it added
to (the HTTP server makes a thread per request: each left one cell in ~13 tallies, for good), and what it
added is still counted."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

from vecdb.metric_tally import ThreadTally, fast_counter, fast_histogram


def _run_threads(n: int, target) -> None:
    for _ in range(n):
        t = threading.Thread(target=target)
        t.start()
        t.join()


def test_ended_threads_leave_no_cells_and_their_additions_stay():
    reg = CollectorRegistry()
    counter = fast_counter(Counter("c", "c", ["k"], registry=reg).labels("a"))
    hist = fast_histogram(Histogram("h", "h", ["k"], buckets=(1.0, 2.0), registry=reg).labels("a"))

    def request():
        counter.inc(2)
        hist.observe(1.5)

    _run_threads(500, request)
    counter.inc(1)  # this (live) thread's cell
    assert len(counter._cells) == 1
    assert len(hist._sum._cells) == 0 and all(len(b._cells) == 0 for b in hist._buckets)
    assert reg.get_sample_value("c_total", {"k": "a"}) == 1001
    assert reg.get_sample_value("h_count", {"k": "a"}) == 500
    assert reg.get_sample_value("h_bucket", {"k": "a", "le": "2.0"}) == 500
    assert reg.get_sample_value("h_sum", {"k": "a"}) == 750


def test_a_reset_and_a_thread_ending_later():
    tally = ThreadTally(3.0)
    added, done = threading.Event(), threading.Event()

    def worker():
        tally.inc(4)
        added.set()
        done.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    assert added.wait(10)
    assert tally.get() == 7.0
    tally.set(10.0)  # a counter's reset: the live thread's cell is emptied
    done.set()
    t.join()
    assert tally.get() == 10.0 and tally._cells == {}


def test_a_tally_gone_before_its_threads_end(monkeypatch):
    """A live thread's cell does not keep its tally (a forgotten metric child) alive, and the thread's
    ending then finds nothing to fold into."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    held = [ThreadTally()]
    added, done = threading.Event(), threading.Event()

    def worker():
        held[0].inc(1)
        added.set()
        done.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    assert added.wait(10)
    ref = weakref.ref(held[0])
    held.clear()
    gc.collect()
    assert ref() is None
    done.set()
    t.join()
    assert unraisable == []

"""vecdb.metric_tally: lock-free counter and histogram values behind prometheus-client children. The
exported samples are what prometheus-client's own inc/observe would give, additions from many
threads are all counted, and a child is wrapped once however many callers ask."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from vecdb.metric_tally import ThreadTally, fast_child, fast_counter, fast_histogram

BUCKETS = (1.0, 2.0, 4.0, 8.0)


def _pair():
    """Two registries with the same metrics: one fed by prometheus-client, one through the tallies."""
    out = []
    for _ in range(2):
        reg = CollectorRegistry()
        out.append((reg, Counter("c", "c", ["k"], registry=reg), Histogram("h", "h", ["k"], buckets=BUCKETS,
                                                                             registry=reg)))
    return out


def _samples(reg) -> list[str]:
    return [line for line in generate_latest(reg).decode().splitlines()
            if line and not line.startswith("#") and "_created" not in line]


def test_the_exported_samples_equal_prometheus_clients_own():
    (ref, c_ref, h_ref), (fast, c_fast, h_fast) = _pair()
    c_ref.labels("a").inc(3)
    c_fast.labels("a").inc(3)  # before the wrapping: carried over
    counter, hist = fast_counter(c_fast.labels("a")), fast_histogram(h_fast.labels("a"))
    for amount in (0.0, 0.5, 1.0, 1.5, 2.0, 3.9, 8.0, 8.1, 1e9):  # on a bound, between, past the last
        h_ref.labels("a").observe(amount)
        hist.observe(amount)
        c_ref.labels("a").inc(amount)
        counter.inc(amount)
    c_ref.labels("a").inc()
    c_fast.labels("a").inc()  # prometheus-client's own call on a wrapped child lands in the tally
    h_ref.labels("a").observe(2.5)
    h_fast.labels("a").observe(2.5)
    assert _samples(fast) == _samples(ref)


def test_additions_from_many_threads_are_all_counted():
    reg = CollectorRegistry()
    counter = fast_counter(Counter("c", "c", ["k"], registry=reg).labels("a"))
    hist = fast_histogram(Histogram("h", "h", ["k"], buckets=BUCKETS, registry=reg).labels("a"))
    start = threading.Barrier(8)

    def add():
        start.wait()
        for i in range(20000):
            counter.inc()
            hist.observe(float(i % 10))
    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.get_sample_value("c_total", {"k": "a"}) == 160000
    assert reg.get_sample_value("h_count", {"k": "a"}) == 160000
    assert reg.get_sample_value("h_bucket", {"k": "a", "le": "4.0"}) == 8 * 2000 * 5  # 0..4 of each ten
    assert reg.get_sample_value("h_sum", {"k": "a"}) == 8 * 2000 * 45


def test_a_child_is_wrapped_once():
    reg = CollectorRegistry()
    c, h = Counter("c", "c", ["k"], registry=reg), Histogram("h", "h", ["k"], buckets=BUCKETS, registry=reg)
    first, again = fast_counter(c.labels("a")), fast_child(c.labels("a"))
    assert first is again and isinstance(first, ThreadTally)
    assert fast_histogram(h.labels("a")) is fast_child(h.labels("a"))
    first.inc(2)
    again.inc(3)
    assert reg.get_sample_value("c_total", {"k": "a"}) == 5


def test_reset_starts_from_zero():
    reg = CollectorRegistry()
    c = Counter("c", "c", ["k"], registry=reg)
    tally = fast_counter(c.labels("a"))
    tally.inc(7)
    c.labels("a").reset()
    tally.inc(2)
    assert reg.get_sample_value("c_total", {"k": "a"}) == 2

"""Several ShardWriters (the cluster's proxies) on one log and one TSO keep each channel in
timestamp order (vecdb.proxy.writer)."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from vecdb.coord.tso import TimestampOracle
from vecdb.log_records import DeleteRecord, decode
from vecdb.proxy.writer import ShardWriter
from vecdb.storage.jetstream_log import JetStreamLog
from vecdb.storage.memory import MemoryLog, MemoryMetaStore


@pytest.fixture(params=["memory", "jetstream"])
def logs(request):
    """Two clients of one log (two proxies' connections)."""
    if request.param == "memory":
        log = MemoryLog()
        yield [log, log]
        log.close()
        return
    url, prefix = request.getfixturevalue("nats_server").url, "t" + uuid.uuid4().hex[:12]
    pair = [JetStreamLog(url, prefix=prefix), JetStreamLog(url, prefix=prefix)]
    yield pair
    for log in pair:
        log.close()


def test_concurrent_writers_keep_every_channel_in_timestamp_order(logs):
    tso = TimestampOracle(MemoryMetaStore())  # one TSO, as the coord serves it
    writers = [ShardWriter(log, tso, lambda *a: None) for log in logs]
    acked: list[tuple[int, dict]] = []

    def work(w: ShardWriter, n: int):
        for i in range(n):
            pk = np.array([i], np.int64)
            ts, positions = w.write({ch: (lambda t, pk=pk: [DeleteRecord(1, t, pk)]) for ch in ("a", "b")})
            acked.append((ts, positions))

    threads = [threading.Thread(target=work, args=(w, 25)) for w in writers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ch in ("a", "b"):
        stamps = [decode(p).ts for _, p in logs[0].read(ch)]
        assert len(stamps) == 100
        assert all(x < y for x, y in zip(stamps, stamps[1:]))  # strictly increasing in log order
    assert len({ts for ts, _ in acked}) == len(acked)


class CountingTso(TimestampOracle):
    def __init__(self, meta):
        super().__init__(meta)
        self.calls = 0

    def allocate(self, count: int = 1) -> int:
        self.calls += 1
        return super().allocate(count)


@pytest.mark.parametrize("reuse", [False, True])
def test_read_timestamps_are_reused_below_strong_only_when_asked(reuse, monkeypatch):
    tso = CountingTso(MemoryMetaStore())
    w = ShardWriter(MemoryLog(), tso, lambda *a: None, reuse_read_ts=reuse)
    fresh = w.read_ts(["a"])
    first = w.read_ts(["a"], max_age=60)
    again = w.read_ts(["a"], max_age=60)
    assert fresh < first
    assert (again == first) is reuse  # the same snapshot, without asking the oracle
    calls = tso.calls
    ts, _ = w.write({"a": lambda t: [DeleteRecord(1, t, np.array([1], np.int64))]})
    # its own write is in the snapshot (read-your-writes), still without a fresh timestamp
    assert w.read_ts(["a"], max_age=60) >= ts
    assert tso.calls == calls + 1 + (0 if reuse else 1)  # the write's own timestamp, plus a fresh read's
    assert w.read_ts(["a"]) > ts  # Strong (no max_age) always takes a fresh one

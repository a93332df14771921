"""Log backends: WalLog checked against the MemoryLog reference, plus WAL
recovery (torn tails, corruption), group commit and a SIGKILL crash test. The "remote" kind is a
WalLog served by ``backend_server`` and used through ``RemoteLog`` (``vecdb://``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from tests.unit.storage_served import ServedLog
from vecdb.errors import InvalidParameter, IoFailed, LogConflict
from vecdb.storage import framing, wal
from vecdb.storage.base import Log
from vecdb.storage.jetstream_log import JetStreamLog
from vecdb.storage.memory import MemoryLog
from vecdb.storage.wal import WalLog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LogHarness:
    """Opens a log of one kind; ``reopen`` simulates a restart (a no-op for memory; a new client
    on the same streams for JetStream)."""

    def __init__(self, kind: str, path: str, segment_bytes: int = 256, nats_url: str | None = None):
        self.kind, self.path, self.segment_bytes = kind, path, segment_bytes
        self.nats_url, self.prefix = nats_url, "t" + uuid.uuid4().hex[:12]
        self.log = self._open()

    def _open(self) -> Log:
        if self.kind == "memory":
            return MemoryLog()
        if self.kind == "jetstream":
            return JetStreamLog(self.nats_url, prefix=self.prefix)
        if self.kind == "remote":  # reopen: the serving process restarts
            return ServedLog(self.path, self.segment_bytes)
        return WalLog(self.path, self.segment_bytes)

    def reopen(self) -> Log:
        if self.kind != "memory":
            self.log.close()
            self.log = self._open()
        return self.log


def _nats_url(request, kind: str) -> str | None:
    return request.getfixturevalue("nats_server").url if kind == "jetstream" else None


@pytest.fixture(params=["memory", "wal", "jetstream", "remote"])
def harness(request, tmp_path):
    h = LogHarness(request.param, str(tmp_path / "wal"), nats_url=_nats_url(request, request.param))
    yield h
    h.log.close()


def payload(i: int) -> bytes:
    return f"rec-{i}-".encode() * (1 + i % 7)


# --- shared behaviour (every implementation) --------------------------------------


def test_positions_start_at_one_and_are_consecutive(harness):
    log = harness.log
    assert isinstance(log, Log)
    assert log.last_position("c") == 0
    assert [log.append("c", payload(i)) for i in range(1, 4)] == [1, 2, 3]
    assert log.append_batch("c", [payload(4), payload(5)]) == [4, 5]
    assert log.append_batch("c", []) == []
    assert log.last_position("c") == 5
    assert list(log.read("c")) == [(i, payload(i)) for i in range(1, 6)]


def test_read_ranges(harness):
    log = harness.log
    log.append_batch("c", [payload(i) for i in range(1, 21)])
    assert [p for p, _ in log.read("c", 5, 8)] == [5, 6, 7, 8]
    assert [p for p, _ in log.read("c", 18)] == [18, 19, 20]
    assert [p for p, _ in log.read("c", 0, 2)] == [1, 2]
    assert list(log.read("c", 21)) == []
    assert list(log.read("c", 9, 8)) == []
    assert list(log.read("c", 20, 100)) == [(20, payload(20))]
    assert list(log.read("unknown")) == []


def test_read_snapshot_taken_at_call(harness):
    log = harness.log
    log.append_batch("c", [b"a", b"b"])
    it = log.read("c")
    log.append("c", b"c")
    assert list(it) == [(1, b"a"), (2, b"b")]


def test_channels_are_independent_and_names_are_free_form(harness):
    log = harness.log
    names = ["by-dev/dml_0:v1", "..", ".", "a b/c%2F", "日本", "A"]
    for n, name in enumerate(names):
        assert log.append_batch(name, [name.encode()] * (n + 1))[-1] == n + 1
    log = harness.reopen()
    assert log.channels() == sorted(names)
    for n, name in enumerate(names):
        assert log.last_position(name) == n + 1
        assert [v for _, v in log.read(name)] == [name.encode()] * (n + 1)


def test_reopen_keeps_everything_across_file_rolls(harness):
    log = harness.log
    for i in range(1, 101):
        assert log.append("c", payload(i)) == i
    log = harness.reopen()
    assert log.last_position("c") == 100
    assert list(log.read("c")) == [(i, payload(i)) for i in range(1, 101)]
    assert log.append("c", b"next") == 101


def test_truncate_before_keeps_later_records_and_positions(harness):
    log = harness.log
    log.append_batch("c", [payload(i) for i in range(1, 61)])
    log.truncate_before("c", 40)
    got = list(log.read("c"))
    assert got[-21:] == [(i, payload(i)) for i in range(40, 61)]
    assert [p for p, _ in got] == list(range(got[0][0], 61))  # a suffix, in order
    log.truncate_before("c", 1000)  # beyond the end: the counter still survives
    log = harness.reopen()
    assert log.last_position("c") == 60
    assert log.append("c", b"x") == 61
    assert list(log.read("c", 61)) == [(61, b"x")]
    log.truncate_before("unknown", 5)
    assert log.channels() == ["c"]


def test_drop_channel(harness):
    log = harness.log
    log.append_batch("a", [b"1", b"2"])
    log.append("b", b"1")
    log.drop_channel("a")
    log.drop_channel("never")
    assert log.channels() == ["b"]
    assert log.last_position("a") == 0 and list(log.read("a")) == []
    log = harness.reopen()
    assert log.channels() == ["b"]
    assert log.append("a", b"new") == 1


def test_bad_arguments(harness):
    log = harness.log
    with pytest.raises(InvalidParameter):
        log.append("", b"x")
    with pytest.raises(InvalidParameter):
        log.append("c", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        log.read("c", "1")  # type: ignore[arg-type]
    log.close()
    with pytest.raises(IoFailed):
        log.append("c", b"x")


@pytest.mark.parametrize("kind", ["wal", "jetstream", "remote"])
def test_random_operations_match_reference(request, tmp_path, kind):
    rng = random.Random(7)
    ref = MemoryLog()
    h = LogHarness(kind, str(tmp_path / "wal"), segment_bytes=300, nats_url=_nats_url(request, kind))
    cut = {}  # channel -> highest truncate_before position
    for _ in range(400):
        ch = rng.choice(["a", "b", "c/1"])
        op = rng.random()
        if op < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 60)))
            assert h.log.append(ch, data) == ref.append(ch, data)
        elif op < 0.7:
            batch = [os.urandom(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 6))]
            assert h.log.append_batch(ch, batch) == ref.append_batch(ch, batch)
        elif op < 0.75:
            pos = rng.randrange(1, ref.last_position(ch) + 3)
            cut[ch] = max(cut.get(ch, 1), min(pos, ref.last_position(ch) + 1))
            h.log.truncate_before(ch, pos)
            ref.truncate_before(ch, pos)
        elif op < 0.77:
            h.log.drop_channel(ch)
            ref.drop_channel(ch)
            cut.pop(ch, None)
        elif op < 0.8:
            h.reopen()
        else:
            lo = rng.randrange(1, ref.last_position(ch) + 2)
            hi = rng.choice([None, lo + rng.randrange(0, 10)])
            got = [r for r in h.log.read(ch, lo, hi) if r[0] >= cut.get(ch, 1)]
            assert got == list(ref.read(ch, lo, hi))
        assert h.log.last_position(ch) == ref.last_position(ch)
    assert h.log.channels() == ref.channels()
    h.log.close()


# --- JetStream specifics ---------------------------------------------------------------


def test_jetstream_server_sigkill_loses_no_acknowledged_record(tmp_path):
    """Appends run while the NATS server is killed (-9) and restarted on the same store: every
    append that returned a position is there afterwards, and appends resume on their own."""
    from vecdb.storage.servers import start_nats

    srv = start_nats(str(tmp_path / "nats"))
    log = JetStreamLog(srv.url, prefix="crash", timeout=2)
    acked, failed = [], []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                acked.extend(zip(log.append_batch("c", [payload(i), payload(i + 1)]), [payload(i), payload(i + 1)]))
            except IoFailed:
                failed.append(i)
                time.sleep(0.05)
            i += 2

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.5)
        srv.kill()
        at_kill = len(acked)
        srv = start_nats(str(tmp_path / "nats"), port=srv.ports[0], monitor_port=srv.ports[1])
        deadline = time.monotonic() + 15
        while len(acked) < at_kill + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join()
    assert at_kill > 0 and len(acked) >= at_kill + 20  # writes resumed after the restart
    stored = dict(log.read("c"))
    assert all(stored.get(pos) == data for pos, data in acked)
    positions = [p for p, _ in acked]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    log.close()
    srv.stop()


def test_jetstream_unreachable_server_is_an_io_error():
    from vecdb.storage.servers import free_port

    with pytest.raises(IoFailed):
        JetStreamLog(f"nats://127.0.0.1:{free_port()}", connect_timeout=1)


def test_jetstream_record_over_max_payload_is_refused(nats_server):
    log = JetStreamLog(nats_server.url, prefix="t" + uuid.uuid4().hex[:12])
    with pytest.raises(InvalidParameter, match="max_payload"):
        log.append_batch("c", [b"ok", b"x" * (log._nc.max_payload + 1)])
    assert log.last_position("c") == 0
    log.close()


def test_jetstream_reads_a_channel_of_large_records(nats_server):
    """Pages are bounded by bytes as well as records: 40 records of 8 MB (320 MB, past the client
    subscription's 128 MB pending limit in one 256-record page), then records larger than a page's
    bytes (each fetched alone) between small ones, read back whole and in order."""
    log = JetStreamLog(nats_server.url, prefix="t" + uuid.uuid4().hex[:12])
    try:
        sizes = [8 << 20] * 40 + [10, 20 << 20, 20 << 20, 10, 20 << 20]
        for i, size in enumerate(sizes):
            log.append("c", bytes([i]) * size)
        got = [(pos, len(data), data[:1]) for pos, data in log.read("c")]
        assert got == [(i + 1, size, bytes([i])) for i, size in enumerate(sizes)]
    finally:
        log.close()


# --- WAL specifics ---------------------------------------------------------------------


def wal_files(root: str, channel: str) -> list[str]:
    d = os.path.join(root, wal.encode_channel(channel))
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".wal"))


def test_files_roll_and_are_named_by_first_position(tmp_path):
    root = str(tmp_path / "w")
    with WalLog(root, segment_bytes=100) as log:
        for _ in range(10):
            log.append("ch", b"x" * 30)  # 50 bytes a record: 2 per file
    names = [os.path.basename(p) for p in wal_files(root, "ch")]
    assert names == [f"{i:020d}.wal" for i in (1, 3, 5, 7, 9)]
    assert all(os.path.getsize(p) == 100 for p in wal_files(root, "ch"))


def test_second_open_of_same_directory_is_refused(tmp_path):
    with WalLog(str(tmp_path)):
        with pytest.raises(IoFailed, match="already open"):
            WalLog(str(tmp_path))
    WalLog(str(tmp_path)).close()


def _write_records(root: str, n: int, segment_bytes: int = 1 << 20) -> None:
    with WalLog(root, segment_bytes) as log:
        for i in range(1, n + 1):
            log.append("ch", payload(i))


def _last_record_span(path: str) -> tuple[int, int]:
    data = open(path, "rb").read()
    seq, start, end = framing.scan(data, path).records[-1]
    return start - framing.HEADER_SIZE, end


@pytest.mark.parametrize("segment_bytes", [1 << 20, 200])
def test_torn_tail_at_every_offset_is_cut_back(tmp_path, segment_bytes):
    root = str(tmp_path / "w")
    _write_records(root, 12, segment_bytes)
    last = wal_files(root, "ch")[-1]
    good = open(last, "rb").read()
    rec_start, rec_end = _last_record_span(last)
    for cut in range(rec_start, rec_end):
        with open(last, "wb") as f:
            f.write(good[:cut])
        with WalLog(root, segment_bytes) as log:
            assert log.last_position("ch") == 11
            assert list(log.read("ch")) == [(i, payload(i)) for i in range(1, 12)]
        assert os.path.getsize(last) == rec_start
    with WalLog(root, segment_bytes) as log:  # appends continue after the cut
        assert log.append("ch", b"again") == 12
    with WalLog(root, segment_bytes) as log:
        assert list(log.read("ch", 11)) == [(11, payload(11)), (12, b"again")]


@pytest.mark.parametrize(
    "garbage",
    # seeded bytes: the same test ids in every collection (pytest-xdist's workers must agree on them)
    [b"\x00" * 4096, random.Random(1).randbytes(333), framing.MAGIC + random.Random(2).randbytes(30),
     framing.encode(99, b"wrong position")],
    ids=["zeros", "random", "magic-then-random", "wrong-position"],
)
def test_garbage_after_last_record_is_cut(tmp_path, garbage):
    root = str(tmp_path / "w")
    _write_records(root, 5)
    last = wal_files(root, "ch")[-1]
    size = os.path.getsize(last)
    with open(last, "ab") as f:
        f.write(garbage)
    with WalLog(root) as log:
        assert list(log.read("ch")) == [(i, payload(i)) for i in range(1, 6)]
        assert log.append("ch", b"6") == 6
    assert os.path.getsize(last) == size + framing.HEADER_SIZE + 1


def _flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x55]))


def test_bad_crc_in_last_record_is_cut(tmp_path):
    root = str(tmp_path / "w")
    _write_records(root, 5)
    last = wal_files(root, "ch")[-1]
    start, end = _last_record_span(last)
    _flip_byte(last, end - 1)  # payload byte
    with WalLog(root) as log:
        assert log.last_position("ch") == 4
        assert [p for p, _ in log.read("ch")] == [1, 2, 3, 4]


@pytest.mark.parametrize("where", ["header_crc", "payload", "length"])
def test_bad_record_in_the_middle_is_corruption(tmp_path, where):
    root = str(tmp_path / "w")
    _write_records(root, 5)
    path = wal_files(root, "ch")[-1]
    data = open(path, "rb").read()
    _, start, end = framing.scan(data, path).records[2]  # record 3 of 5
    offset = start - framing.HEADER_SIZE
    _flip_byte(path, {"header_crc": start - 1, "payload": end - 1, "length": offset + 4}[where])
    with pytest.raises(IoFailed) as e:
        WalLog(root)
    assert path in e.value.message and f"offset {offset}" in e.value.message
    # nothing was cut, and the directory lock was released
    assert open(path, "rb").read() != data and os.path.getsize(path) == len(data)
    _flip_byte(path, {"header_crc": start - 1, "payload": end - 1, "length": offset + 4}[where])
    with WalLog(root) as log:
        assert log.last_position("ch") == 5


def test_corruption_in_an_older_file_fails_the_read(tmp_path):
    root = str(tmp_path / "w")
    _write_records(root, 20, segment_bytes=200)
    first = wal_files(root, "ch")[0]
    _flip_byte(first, os.path.getsize(first) - 1)
    with WalLog(root, 200) as log:
        assert log.last_position("ch") == 20
        with pytest.raises(IoFailed, match="corrupt WAL record"):
            list(log.read("ch"))


def test_truncate_before_deletes_whole_old_files(tmp_path):
    root = str(tmp_path / "w")
    with WalLog(root, segment_bytes=100) as log:
        log.append_batch("ch", [b"x" * 30] * 10)  # one batch: one file
        for _ in range(6):
            log.append("ch", b"y" * 30)  # files start at 11, 13, 15
        log.truncate_before("ch", 14)
        assert [os.path.basename(p)[:20] for p in wal_files(root, "ch")] == [
            f"{13:020d}",
            f"{15:020d}",
        ]
        assert [p for p, _ in log.read("ch")] == [13, 14, 15, 16]
        log.truncate_before("ch", 100)  # the active file stays
        assert len(wal_files(root, "ch")) == 1
    with WalLog(root, segment_bytes=100) as log:
        assert log.last_position("ch") == 16
        assert log.append("ch", b"z") == 17


def test_concurrent_appends_get_unique_ordered_positions(tmp_path):
    log = WalLog(str(tmp_path / "w"), segment_bytes=4096)
    results: dict[int, list[tuple[int, bytes]]] = {}

    def worker(tid: int) -> None:
        out = results[tid] = []
        for n in range(60):
            if n % 3 == 0:
                batch = [f"{tid}-{n}-{k}".encode() * 9 for k in range(3)]
                out += zip(log.append_batch("ch", batch), batch)
            else:
                data = f"{tid}-{n}".encode() * 9
                out.append((log.append("ch", data), data))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [r for out in results.values() for r in out]
    for out in results.values():  # each thread's positions increase
        assert [p for p, _ in out] == sorted(p for p, _ in out)
    assert sorted(p for p, _ in every) == list(range(1, len(every) + 1))
    assert dict(log.read("ch")) == dict(every)
    log.close()
    with WalLog(str(tmp_path / "w"), segment_bytes=4096) as log:
        assert dict(log.read("ch")) == dict(every)


def test_group_commit_shares_fsyncs(tmp_path, monkeypatch):
    calls = []
    real = wal.datasync

    def slow_sync(fd):
        calls.append(fd)
        time.sleep(0.002)
        real(fd)

    monkeypatch.setattr(wal, "datasync", slow_sync)
    log = WalLog(str(tmp_path / "w"))
    log.append("ch", b"first")  # creates the file
    calls.clear()

    def worker():
        for _ in range(25):
            log.append("ch", b"x" * 1024)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.last_position("ch") == 201
    assert len(calls) <= 100, f"{len(calls)} fsyncs for 200 appends"
    log.close()


def test_readers_see_a_consistent_prefix_while_appending(tmp_path):
    log = WalLog(str(tmp_path / "w"), segment_bytes=2048)
    stop = threading.Event()
    errors = []

    def writer(tid):
        for n in range(150):
            log.append("ch", payload(tid * 1000 + n))

    def reader():
        while not stop.is_set():
            got = list(log.read("ch"))
            positions = [p for p, _ in got]
            if positions != list(range(1, len(got) + 1)):
                errors.append(positions)

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert len(list(log.read("ch"))) == 600
    log.close()


CRASH_WRITER = textwrap.dedent(
    """
    import sys, threading
    from vecdb.storage.wal import WalLog
    log = WalLog(sys.argv[1], segment_bytes=8192)
    out = threading.Lock()
    def body(tid, n):
        return f"t{tid}-n{n}|".encode() * (1 + n % 13)
    def worker(tid):
        n = 0
        while True:
            if n % 4 == 3:
                batch = [body(tid, n), body(tid, n + 1)]
                positions = log.append_batch("ch", batch)
                lines = "".join(f"{p} {tid} {n + k}\\n" for k, p in enumerate(positions))
                n += 2
            else:
                p = log.append("ch", body(tid, n))
                lines = f"{p} {tid} {n}\\n"
                n += 1
            with out:
                sys.stdout.write(lines)
                sys.stdout.flush()
    for t in range(4):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def test_sigkill_loses_no_acknowledged_record(tmp_path):
    root = str(tmp_path / "w")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, root], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    time.sleep(0.5)
    while proc.poll() is None and not os.path.isdir(os.path.join(root, "ch")):
        time.sleep(0.1)  # slow start (cold imports): wait for the first record
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    acked = {}
    for line in out.decode().splitlines(keepends=True):
        if line.endswith("\n"):
            pos, tid, n = map(int, line.split())
            acked[pos] = (tid, n)
    assert len(acked) > 10

    with WalLog(root, segment_bytes=8192) as log:
        records = list(log.read("ch"))
    assert [p for p, _ in records] == list(range(1, len(records) + 1))
    seen: dict[int, list[int]] = {}
    for pos, data in records:  # every record is one the writer made, none twice
        first = data.split(b"|")[0].decode()
        tid, n = int(first[1 : first.index("-")]), int(first[first.index("-n") + 2 :])
        assert data == f"t{tid}-n{n}|".encode() * (1 + n % 13)
        seen.setdefault(tid, []).append(n)
        if pos in acked:
            assert acked[pos] == (tid, n)
    for ns in seen.values():
        assert ns == list(range(len(ns)))  # each thread's records in order, no gaps
    assert max(acked) <= len(records)


def test_failed_write_is_rolled_back(tmp_path, monkeypatch):
    root = str(tmp_path / "w")
    log = WalLog(root)
    log.append("ch", b"one")

    def torn_write(fd, data):
        os.write(fd, bytes(data[:7]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal, "write_all", torn_write)
    with pytest.raises(IoFailed, match="No space"):
        log.append("ch", b"two")
    monkeypatch.undo()
    assert log.append("ch", b"two") == 2  # the failed append used no position
    log.close()
    with WalLog(root) as log:
        assert list(log.read("ch")) == [(1, b"one"), (2, b"two")]


def test_failed_fsync_fails_the_append_and_fences_the_channel(tmp_path, monkeypatch):
    root = str(tmp_path / "w")
    log = WalLog(root)
    log.append("ch", b"one")

    def failing_sync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal, "datasync", failing_sync)
    with pytest.raises(IoFailed, match="Input/output"):
        log.append("ch", b"two")
    monkeypatch.undo()
    with pytest.raises(IoFailed, match="refuses writes"):
        log.append("ch", b"three")
    assert log.last_position("ch") == 1 and list(log.read("ch")) == [(1, b"one")]
    assert log.append("other", b"fine") == 1
    log.close()
    with WalLog(root) as log:  # a restart recovers whatever reached the disk
        assert [p for p, _ in log.read("ch")][:1] == [1]
        assert log.append("ch", b"next") == log.last_position("ch")


# --- followers (every implementation) -------------------------------------------------------


def test_follower_tails_records_appended_later_once_and_in_order(harness):
    log = harness.log
    log.append_batch("c", [payload(i) for i in range(1, 6)])
    f = log.follow("c", 3)
    assert f.poll(timeout=2) == [(i, payload(i)) for i in range(3, 6)]
    assert f.poll(timeout=0.2) == []  # nothing new: waits, then nothing

    def late():
        time.sleep(0.3)
        log.append_batch("c", [payload(6), payload(7)])

    t = threading.Thread(target=late)
    t.start()
    t0 = time.monotonic()
    got = []
    while len(got) < 2 and time.monotonic() - t0 < 5:
        got += f.poll(timeout=5)
    t.join()
    assert got == [(6, payload(6)), (7, payload(7))]
    assert time.monotonic() - t0 < 3  # woken by the append, not by the timeout
    f.close()


def test_follower_from_an_unwritten_channel_and_max_records(harness):
    log = harness.log
    f = log.follow("fresh")
    assert f.poll(timeout=0.2) == []
    log.append_batch("fresh", [payload(i) for i in range(1, 11)])
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        page = f.poll(timeout=2, max_records=4)
        assert len(page) <= 4
        got += page
    assert got == [(i, payload(i)) for i in range(1, 11)]
    f.close()


def test_followers_keep_up_with_concurrent_writers(harness):
    log = harness.log
    followers = [log.follow("c") for _ in range(2)]
    n_writers, per = 3, 40

    def writer(w):
        for i in range(per):
            log.append("c", f"{w}:{i}".encode())

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    for f in followers:
        got = []
        deadline = time.monotonic() + 10
        while len(got) < n_writers * per and time.monotonic() < deadline:
            got += f.poll(timeout=1)
        assert [p for p, _ in got] == list(range(1, n_writers * per + 1))
        for w in range(n_writers):  # each writer's records in its order
            assert [v for _, v in got if v.startswith(f"{w}:".encode())] == [f"{w}:{i}".encode() for i in range(per)]
        f.close()
    for t in threads:
        t.join()


def test_append_with_expected_last_position(harness):
    log = harness.log
    assert log.append_batch("c", [b"a"], expect_last=0) == [1]
    assert log.append_batch("c", [b"b", b"c"], expect_last=1) == [2, 3]
    with pytest.raises(LogConflict):
        log.append_batch("c", [b"stale"], expect_last=1)
    with pytest.raises(LogConflict):
        log.append_batch("new", [b"x"], expect_last=5)
    assert log.last_position("c") == 3 and [v for _, v in log.read("c")] == [b"a", b"b", b"c"]
    assert log.last_position("new") == 0
    assert log.append_batch("c", [b"d"]) == [4]  # no condition: appends as before


def test_racing_conditional_writers_keep_a_gapless_agreed_order(harness):
    """Writers that read the end, then append expecting it, retry on conflict: every record
    lands once, and each writer saw the record before its own (the ordering the cluster's
    proxies rely on for timestamp order)."""
    log = harness.log
    results = []

    def writer(w):
        for i in range(10):
            while True:
                last = log.last_position("c")
                try:
                    (pos,) = log.append_batch("c", [f"{w}:{i}:{last}".encode()], expect_last=last)
                    results.append(pos)
                    break
                except LogConflict:
                    continue

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = list(log.read("c"))
    assert [p for p, _ in records] == list(range(1, 31)) and sorted(results) == list(range(1, 31))
    for pos, value in records:  # the writer of position p had seen p - 1 as the end
        assert int(value.decode().rsplit(":", 1)[1]) == pos - 1

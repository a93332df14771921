"""Metadata stores: LocalMetaStore checked against MemoryMetaStore, plus
journal recovery, compaction and a SIGKILL crash test."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from vecdb.errors import InvalidParameter, IoFailed, LeaseExpired
from vecdb.storage import framing
from vecdb.storage.base import MetaStore
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.local_meta import JOURNAL, SNAPSHOT, LocalMetaStore
from vecdb.storage.memory import MemoryMetaStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MetaHarness:
    """Opens a store of one kind; ``reopen`` simulates a restart (a new client, for etcd; each
    etcd harness has its own key namespace)."""

    def __init__(self, kind: str, path: str, compact_bytes: int = 1 << 20, etcd_url: str | None = None):
        self.kind, self.path, self.compact_bytes = kind, path, compact_bytes
        self.etcd_url, self.prefix = etcd_url, f"t{uuid.uuid4().hex[:12]}/"
        self.store = self._open()

    def _open(self):
        if self.kind == "memory":
            return MemoryMetaStore()
        if self.kind == "etcd":
            return EtcdMetaStore(self.etcd_url, prefix=self.prefix)
        return LocalMetaStore(self.path, self.compact_bytes)

    def reopen(self):
        if self.kind != "memory":
            self.store.close()
            self.store = self._open()
        return self.store


def _etcd_url(request, kind: str) -> str | None:
    return request.getfixturevalue("etcd_server").url if kind == "etcd" else None


@pytest.fixture(params=["memory", "local", "etcd"])
def harness(request, tmp_path):
    h = MetaHarness(request.param, str(tmp_path / "meta"), etcd_url=_etcd_url(request, request.param))
    yield h
    h.store.close()


def test_put_get_overwrite_delete(harness):
    s = harness.store
    assert isinstance(s, MetaStore)
    assert s.get("a/1") is None
    s.put("a/1", b"one")
    s.put("a/2", bytearray(b"two"))
    s.put("a/1", b"uno")
    s.put("empty", b"")
    s.delete("a/2")
    s.delete("missing")
    s = harness.reopen()
    assert s.get("a/1") == b"uno"
    assert s.get("a/2") is None
    assert s.get("empty") == b""


def test_scan_is_sorted_and_matches_string_prefixes(harness):
    s = harness.store
    for k in ["c/2", "c/10", "c/1", "cx", "b", "c"]:
        s.put(k, k.encode())
    assert [k for k, _ in s.scan("c/")] == ["c/1", "c/10", "c/2"]
    assert [k for k, _ in s.scan("c")] == ["c", "c/1", "c/10", "c/2", "cx"]
    assert s.scan("") == [(k, k.encode()) for k in ["b", "c", "c/1", "c/10", "c/2", "cx"]]
    assert s.scan("zzz") == []


def test_txn_applies_prefix_deletes_then_deletes_then_puts(harness):
    s = harness.store
    s.txn(puts={"col/1/a": b"1", "col/1/b": b"2", "col/2/a": b"3", "x": b"4"})
    s.txn(puts={"col/1/new": b"n", "x": b"5"}, deletes=["col/2/a", "nope"], delete_prefixes=["col/1/"])
    s.txn()  # nothing to do
    s = harness.reopen()
    assert s.scan("") == [("col/1/new", b"n"), ("x", b"5")]


def test_invalid_txn_changes_nothing(harness):
    s = harness.store
    s.put("k", b"v")
    with pytest.raises(InvalidParameter):
        s.txn(puts={"a": b"1", "b": "not bytes"})  # type: ignore[dict-item]
    with pytest.raises(InvalidParameter):
        s.txn(puts={"a": b"1"}, deletes=[""])
    with pytest.raises(InvalidParameter):
        s.put("", b"x")
    with pytest.raises(InvalidParameter):
        s.scan(None)  # type: ignore[arg-type]
    assert harness.reopen().scan("") == [("k", b"v")]


def test_txn_with_expected_values_is_compare_and_set(harness):
    s = harness.store
    assert s.txn(puts={"leader": b"a"}, expect={"leader": None}) is True  # absent: claimed
    assert s.txn(puts={"leader": b"b"}, expect={"leader": None}) is False  # taken: nothing changes
    assert s.txn(puts={"x": b"1"}, deletes=["leader"], expect={"leader": b"b"}) is False
    assert s.get("leader") == b"a" and s.get("x") is None
    assert s.txn(puts={"leader": b"b", "term": b"2"}, expect={"leader": b"a", "term": None}) is True
    assert s.txn(deletes=["leader"], expect={"leader": b"b", "term": b"2"}) is True
    assert s.txn(expect={"leader": None}) is True and s.txn(expect={"term": b"1"}) is False
    assert s.txn(puts={"k": b"v"}) is True
    with pytest.raises(InvalidParameter):
        s.txn(puts={"k": b"w"}, expect={"k": "text"})  # type: ignore[dict-item]
    s = harness.reopen()
    assert s.scan("") == [("k", b"v"), ("term", b"2")]


def test_compare_and_set_counter_under_concurrent_writers(harness):
    s = harness.store
    s.put("counter", b"0")
    n_threads, per = 4, 15

    def bump():
        for _ in range(per):
            while True:
                old = s.get("counter")
                if s.txn(puts={"counter": b"%d" % (int(old) + 1)}, expect={"counter": old}):
                    break

    threads = [threading.Thread(target=bump) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.get("counter") == b"%d" % (n_threads * per)  # no increment lost


def _gone_within(store, key: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store.get(key) is None:
            return True
        time.sleep(0.1)
    return False


def test_leased_keys_live_while_renewed_and_go_with_the_lease(harness):
    s = harness.store
    ttl = 2  # etcd's shortest
    session = s.grant_lease(ttl)
    other = s.grant_lease(ttl)
    s.txn(puts={"session/a": b"node a", "session/b": b"node b"}, lease=session)
    s.txn(puts={"session/c": b"node c"}, lease=other)
    s.txn(puts={"session/b": b"now durable"})  # a put without the lease takes the key out of it
    s.put("durable", b"x")
    deadline = time.monotonic() + ttl + 1.5
    while time.monotonic() < deadline:  # renewed: outlives its ttl
        assert s.renew_lease(session) is True
        time.sleep(0.3)
    assert s.get("session/a") == b"node a"
    assert _gone_within(s, "session/c", ttl + 3)  # not renewed: gone
    assert s.renew_lease(other) is False
    with pytest.raises(LeaseExpired):
        s.txn(puts={"session/d": b"late"}, lease=other)
    assert s.get("session/d") is None
    s.revoke_lease(session)
    s.revoke_lease(session)  # already ended: no error
    assert s.get("session/a") is None
    assert s.scan("") == [("durable", b"x"), ("session/b", b"now durable")]
    with pytest.raises(InvalidParameter):
        s.grant_lease(0)


def test_leased_keys_do_not_outlive_a_restart(harness):
    s = harness.store
    lease = s.grant_lease(2)
    s.txn(puts={"session/x": b"1", "k": b"v"}, lease=lease)
    s.put("durable", b"d")
    s = harness.reopen()  # a local store's leases end with its process; etcd's run out their ttl
    assert _gone_within(s, "session/x", 5) and s.get("k") is None
    assert s.scan("") == [("durable", b"d")]


def test_closed_store_refuses_calls(harness):
    harness.store.close()
    with pytest.raises(IoFailed):
        harness.store.get("k")
    with pytest.raises(IoFailed):
        harness.store.put("k", b"v")


def _random_ops(rng: random.Random, n: int):
    keys = [f"{a}/{b}" for a in "pqr" for b in range(8)]
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            yield "put", rng.choice(keys), os.urandom(rng.randrange(0, 50))
        elif r < 0.65:
            yield "delete", rng.choice(keys), None
        elif r < 0.9:
            puts = {rng.choice(keys): os.urandom(5) for _ in range(rng.randrange(0, 4))}
            dels = [rng.choice(keys) for _ in range(rng.randrange(0, 3))]
            prefixes = [rng.choice(["p/", "q/1", "r", "zz"]) for _ in range(rng.randrange(0, 2))]
            expect = {rng.choice(keys): None} if rng.random() < 0.3 else None  # applies if that key is absent
            yield "txn", (puts, dels, prefixes, expect), None
        else:
            yield "reopen", None, None


@pytest.mark.parametrize("compact_bytes", [1 << 20, 300])
def test_random_operations_match_reference_across_reopens(tmp_path, compact_bytes):
    rng = random.Random(compact_bytes)
    ref = MemoryMetaStore()
    h = MetaHarness("local", str(tmp_path / "m"), compact_bytes)
    _replay_random_ops(h, ref, rng)
    journal = os.path.getsize(os.path.join(h.path, JOURNAL))
    assert journal < max(compact_bytes, os.path.getsize(os.path.join(h.path, SNAPSHOT))) + 200
    h.store.close()


def test_etcd_random_operations_match_reference(etcd_server, tmp_path):
    h = MetaHarness("etcd", str(tmp_path / "m"), etcd_url=etcd_server.url)
    _replay_random_ops(h, MemoryMetaStore(), random.Random(11))
    h.store.close()


def test_etcd_restart_keeps_acknowledged_writes_and_the_client_reconnects(tmp_path):
    from vecdb.storage.servers import start_etcd

    srv = start_etcd(str(tmp_path / "etcd"))
    s = EtcdMetaStore(srv.url, prefix="r/", timeout=2)
    s.txn(puts={f"k/{i:02d}": b"%d" % i for i in range(40)})
    s.put("k/40", b"40")
    srv.kill()
    with pytest.raises(IoFailed):
        s.get("k/1")
    srv = start_etcd(str(tmp_path / "etcd"), port=srv.ports[0], peer_port=srv.ports[1])
    try:
        deadline = time.monotonic() + 10
        while True:  # the channel reconnects on its own; the first calls may still fail
            try:
                got = s.scan("k/")
                break
            except IoFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert got == [(f"k/{i:02d}", b"%d" % i) for i in range(40)] + [("k/40", b"40")]
        s.put("after", b"restart")
        assert s.get("after") == b"restart"
    finally:
        s.close()
        srv.stop()


def test_etcd_unreachable_server_is_an_io_error():
    from vecdb.storage.servers import free_port

    with pytest.raises(IoFailed):
        EtcdMetaStore(f"127.0.0.1:{free_port()}", timeout=1)


def _replay_random_ops(h: MetaHarness, ref: MemoryMetaStore, rng: random.Random) -> None:
    for op, a, b in _random_ops(rng, 300):
        if op == "put":
            h.store.put(a, b)
            ref.put(a, b)
        elif op == "delete":
            h.store.delete(a)
            ref.delete(a)
        elif op == "txn":
            assert h.store.txn(*a) == ref.txn(*a)
        else:
            h.reopen()
        assert h.store.scan("") == ref.scan("")
        for p in ("p/", "q", "r/3"):
            assert h.store.scan(p) == ref.scan(p)


def test_compaction_empties_the_journal(tmp_path):
    path = str(tmp_path / "m")
    with LocalMetaStore(path, compact_bytes=1000) as s:
        for i in range(100):
            s.put(f"k/{i % 10}", b"x" * 50)
        assert os.path.getsize(os.path.join(path, JOURNAL)) < 1000
    with LocalMetaStore(path) as s:  # open compacts
        assert os.path.getsize(os.path.join(path, JOURNAL)) == 0
        assert len(s.scan("k/")) == 10


def test_crash_between_snapshot_and_journal_reset_replays_to_same_state(tmp_path):
    path = str(tmp_path / "m")
    with LocalMetaStore(path) as s:
        s.put("a/1", b"old")
        s.put("b", b"b")
    with LocalMetaStore(path) as s:  # compacts: the snapshot holds a/1, b
        s.put("a/1", b"v1")
        s.txn(puts={"a/2": b"v2"}, delete_prefixes=["b"])
        s.put("a/1", b"v3")
        s.delete("a/2")
    journal = open(os.path.join(path, JOURNAL), "rb").read()
    with LocalMetaStore(path) as s:  # compacts again
        expected = s.scan("")
    # as if the crash came after the new snapshot's rename, before the journal reset
    with open(os.path.join(path, JOURNAL), "wb") as f:
        f.write(journal)
    with LocalMetaStore(path) as s:
        assert s.scan("") == expected == [("a/1", b"v3")]


def _journal_with_last_record(path: str) -> tuple[bytes, int]:
    with LocalMetaStore(path) as s:
        s.put("base", b"in snapshot")
    s = LocalMetaStore(path)
    s.put("k1", b"v1")
    s.txn(puts={"k2": b"v2", "k3": b"v3"}, deletes=["base"])
    s.close()
    data = open(os.path.join(path, JOURNAL), "rb").read()
    _, start, _ = framing.scan(data, JOURNAL, 1).records[-1]
    return data, start - framing.HEADER_SIZE


def test_torn_journal_tail_at_every_offset(tmp_path):
    path = str(tmp_path / "m")
    data, last_start = _journal_with_last_record(path)
    jpath = os.path.join(path, JOURNAL)
    for cut in list(range(last_start, len(data))) + [len(data)]:
        shutil.rmtree(path)
        _journal_with_last_record(path)
        with open(jpath, "wb") as f:
            f.write(data[:cut] + (os.urandom(7) if cut == len(data) else b""))
        with LocalMetaStore(path) as s:
            if cut == len(data):  # whole txn + garbage: txn kept, garbage cut
                assert s.scan("") == [("k1", b"v1"), ("k2", b"v2"), ("k3", b"v3")]
            else:  # the torn txn is dropped as a whole
                assert s.scan("") == [("base", b"in snapshot"), ("k1", b"v1")]
            s.put("after", b"cut")
        with LocalMetaStore(path) as s:
            assert s.get("after") == b"cut"


def test_bad_record_in_middle_of_journal_raises(tmp_path):
    path = str(tmp_path / "m")
    s = LocalMetaStore(path)
    for i in range(3):
        s.put(f"k{i}", b"value")
    s.close()
    jpath = os.path.join(path, JOURNAL)
    data = bytearray(open(jpath, "rb").read())
    data[framing.HEADER_SIZE + 2] ^= 0xFF  # payload of the first record
    open(jpath, "wb").write(data)
    with pytest.raises(IoFailed, match="offset 0"):
        LocalMetaStore(path)
    assert open(jpath, "rb").read() == data  # nothing cut
    with pytest.raises(IoFailed):  # the lock was released, the error stays
        LocalMetaStore(path)


def test_corrupt_snapshot_raises(tmp_path):
    path = str(tmp_path / "m")
    with LocalMetaStore(path) as s:
        s.put("k", b"v")
    with LocalMetaStore(path):
        pass
    spath = os.path.join(path, SNAPSHOT)
    data = bytearray(open(spath, "rb").read())
    data[-1] ^= 1
    open(spath, "wb").write(data)
    with pytest.raises(IoFailed, match="snapshot"):
        LocalMetaStore(path)


def test_second_open_is_refused(tmp_path):
    with LocalMetaStore(str(tmp_path)):
        with pytest.raises(IoFailed, match="already open"):
            LocalMetaStore(str(tmp_path))


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "m")
    s = LocalMetaStore(path, compact_bytes=2000)

    def worker(t):
        for i in range(40):
            s.put(f"t{t}/{i:03d}", f"{t}-{i}".encode())
            if i % 10 == 9:
                s.txn(deletes=[f"t{t}/{i - 5:03d}"])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.close()
    with LocalMetaStore(path) as s:
        for t in range(8):
            keys = [k for k, _ in s.scan(f"t{t}/")]
            assert keys == [f"t{t}/{i:03d}" for i in range(40) if i not in (4, 14, 24, 34)]


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from vecdb.storage.local_meta import LocalMetaStore
    s = LocalMetaStore(sys.argv[1], compact_bytes=4000)
    i = 0
    while True:
        s.txn(puts={f"k/{i:06d}": str(i).encode() * 20},
              deletes=[f"k/{i - 2:06d}"] if i % 5 == 0 else [])
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_sigkill_loses_no_acknowledged_write(tmp_path):
    path = str(tmp_path / "m")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, path], stdout=subprocess.PIPE, env=env)
    time.sleep(0.5)
    while proc.poll() is None and not os.path.exists(os.path.join(path, JOURNAL)):
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acked = [int(line) for line in out.decode().splitlines(keepends=True) if line.endswith("\n")]
    assert acked == list(range(len(acked))) and len(acked) > 10
    with LocalMetaStore(path) as s:
        got = dict(s.scan(""))
    # the last txn may or may not have landed (written, killed before the print)
    done = len(acked) + (1 if f"k/{len(acked):06d}" in got else 0)
    expected = {}
    for i in range(done):
        expected[f"k/{i:06d}"] = str(i).encode() * 20
        if i % 5 == 0:
            expected.pop(f"k/{i - 2:06d}", None)
    assert got == expected

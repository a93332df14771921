"""Metadata stores: LocalMetaStore checked against MemoryMetaStore, plus
journal recovery, compaction and a SIGKILL crash test. The "remote" kind is a LocalMetaStore
served by ``backend_server`` and used through ``RemoteMetaStore`` (``vecdb://``)."""

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

from tests.unit.storage_served import ServedMetaStore
from vecdb.errors import InvalidParameter, IoFailed, LeaseExpired
from vecdb.storage import framing
from vecdb.storage.base import MetaStore
from vecdb.storage.etcd_meta import EtcdMetaStore
from vecdb.storage.local_meta import JOURNAL, SNAPSHOT, LocalMetaStore, read_keys
from vecdb.storage.memory import MemoryMetaStore
from vecdb.storage.watch import DELETE, PUT, WatchCompacted

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
        if self.kind == "remote":  # reopen: the serving process restarts
            return ServedMetaStore(self.path, self.compact_bytes)
        return LocalMetaStore(self.path, self.compact_bytes)

    def reopen(self):
        if self.kind != "memory":
            self.store.close()
            self.store = self._open()
        return self.store

    def other(self, **kw):
        """Another store of the same kind with ``kw`` (etcd: on the same namespace, so the same keys;
        local: in a directory of its own, as a directory has one store at a time; remote: another
        client of the same served store, or with ``kw`` a store of its own served apart)."""
        if self.kind == "memory":
            return MemoryMetaStore(**kw)
        if self.kind == "etcd":
            return EtcdMetaStore(self.etcd_url, prefix=self.prefix, **kw)
        if self.kind == "remote":
            return ServedMetaStore(self.path + f"-{uuid.uuid4().hex[:6]}", self.compact_bytes, **kw) if kw \
                else self.store.client()
        return LocalMetaStore(self.path + f"-{uuid.uuid4().hex[:6]}", self.compact_bytes, **kw)


def _etcd_url(request, kind: str) -> str | None:
    return request.getfixturevalue("etcd_server").url if kind == "etcd" else None


@pytest.fixture(params=["memory", "local", "etcd", "remote"])
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


def test_read_keys_sees_what_the_owner_holds_without_its_lock(tmp_path):
    """vecdb inspect's reader (local_meta.read_keys): beside an open store, the snapshot and the journal
    (puts, deletes, a prefix delete) read as the store holds them; a torn journal tail is left out."""
    path = str(tmp_path / "m")
    with LocalMetaStore(path, compact_bytes=1 << 30) as s:  # nothing compacted: the journal holds it all
        s.txn(puts={f"a/{i}": str(i).encode() for i in range(5)} | {"b/1": b"x", "c": b"y"})
        s.delete("a/3")
        s.txn(delete_prefixes=["b/"], puts={"d": b"z"})
        assert read_keys(path) == dict(s.scan(""))  # the owner still open: no lock taken
    data, last_start = _journal_with_last_record(str(tmp_path / "t"))
    with open(os.path.join(str(tmp_path / "t"), JOURNAL), "wb") as f:
        f.write(data[:-3])  # the last txn torn
    assert read_keys(str(tmp_path / "t")) == {"base": b"in snapshot", "k1": b"v1"}


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


# --- revisions and watches (the rules: MetaStore's docstring) ---------------------------------


def _collect(watcher, n: int, seconds: float = 20.0) -> list:
    """Poll until ``n`` events came (failing after ``seconds``), then check that no more come."""
    out: list = []
    deadline = time.monotonic() + seconds
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} events: {out}"
        out += watcher.poll(0.5)
    assert watcher.poll(0.3) == []
    return out


def _changes(events) -> list[list[tuple]]:
    """Events grouped by revision (checking revisions grow), without the revision numbers."""
    groups: list[list[tuple]] = []
    last = 0
    for ev in events:
        assert ev.revision >= last
        if ev.revision != last:
            groups.append([])
            last = ev.revision
        groups[-1].append((ev.kind, ev.key, ev.value))
    return groups


def test_watch_hands_out_every_change_in_revision_order(harness):
    s = harness.store
    s.put("w/old", b"before the watch")
    w = s.watch("w/")
    s.put("w/a", b"1")
    s.put("w/a", b"1")  # the same value: still a change
    s.put("other", b"not under the prefix")
    s.delete("w/absent")  # changes nothing: no event
    s.txn(puts={"w/c": b"3", "w/b": b"2"})
    s.txn(puts={"w/x": b"no"}, expect={"w/a": None})  # not applied: no event
    s.txn(puts={"w/b": b"again", "w/d": b"4"}, deletes=["w/c", "w/zz"], delete_prefixes=["w/a", "w/o"])
    s.delete("w/d")
    events = _collect(w, 10)
    assert _changes(events) == [
        [(PUT, "w/a", b"1")],
        [(PUT, "w/a", b"1")],
        [(PUT, "w/c", b"3"), (PUT, "w/b", b"2")],
        # deletions in key order (a re-put key is only put), then the puts in the order given
        [(DELETE, "w/a", None), (DELETE, "w/c", None), (DELETE, "w/old", None),
         (PUT, "w/b", b"again"), (PUT, "w/d", b"4")],
        [(DELETE, "w/d", None)],
    ]
    revisions = sorted({ev.revision for ev in events})
    pairs, now = s.scan_revision("w/")
    assert pairs == [("w/b", b"again")] and now >= revisions[-1]
    assert s.scan_revision("nothing/") == ([], s.scan_revision("")[1])  # no change in between
    w.close()


def test_a_poll_never_splits_a_revision(harness):
    s = harness.store
    w = s.watch("p/")
    s.txn(puts={f"p/{i}": b"x" for i in range(5)})
    s.put("p/last", b"y")
    first = []
    deadline = time.monotonic() + 20
    while not first and time.monotonic() < deadline:
        first = w.poll(0.5, max_events=2)
    assert [ev.key for ev in first] == [f"p/{i}" for i in range(5)]
    assert [ev.key for ev in _collect(w, 1)] == ["p/last"]
    w.close()


def test_lease_ends_are_delete_events(harness):
    s = harness.store
    w = s.watch("session/")
    revoked, expiring = s.grant_lease(30), s.grant_lease(2)
    s.txn(puts={"session/b": b"node b", "session/a": b"node a"}, lease=revoked)
    s.txn(puts={"session/c": b"node c"}, lease=expiring)
    s.revoke_lease(revoked)
    # nothing calls the store now: the watcher alone sees the expiry (etcd: the server expires it)
    events = _collect(w, 6, seconds=15)
    assert _changes(events) == [
        [(PUT, "session/b", b"node b"), (PUT, "session/a", b"node a")],
        [(PUT, "session/c", b"node c")],
        [(DELETE, "session/a", None), (DELETE, "session/b", None)],
        [(DELETE, "session/c", None)],
    ]
    assert s.scan("session/") == []
    w.close()


def test_watch_from_a_scan_revision_misses_nothing(harness):
    s = harness.store
    s.put("cat/1", b"one")
    first = s.scan_revision("cat/")[1]
    s.put("cat/2", b"two")
    pairs, rev = s.scan_revision("cat/")
    assert pairs == [("cat/1", b"one"), ("cat/2", b"two")] and rev > first
    s.put("cat/3", b"between the scan and the watch")
    w = s.watch("cat/", rev + 1)
    s.delete("cat/1")
    assert _changes(_collect(w, 2)) == [[(PUT, "cat/3", b"between the scan and the watch")], [(DELETE, "cat/1", None)]]
    replay = s.watch("cat/", first)  # an older start replays from there
    assert [(ev.kind, ev.key) for ev in _collect(replay, 4)] == [
        (PUT, "cat/1"), (PUT, "cat/2"), (PUT, "cat/3"), (DELETE, "cat/1")]
    assert [ev.revision for ev in replay.poll(0)] == []
    late = s.watch("cat/")  # no start: only what comes after
    s.put("cat/4", b"four")
    assert [ev.key for ev in _collect(late, 1)] == ["cat/4"]
    for x in (w, replay, late):
        x.close()
    with pytest.raises(InvalidParameter):
        s.watch("cat/", 0)


def test_watchers_on_different_prefixes_see_only_theirs(harness):
    s = harness.store
    nodes, cats = s.watch("nodes/"), s.watch("catalog/")
    s.txn(puts={"nodes/1": b"n1", "catalog/c": b"c1", "nodesx": b"outside"})
    s.put("catalog/d", b"d1")
    s.put("nodes/2", b"n2")
    assert [(ev.key, ev.value) for ev in _collect(nodes, 2)] == [("nodes/1", b"n1"), ("nodes/2", b"n2")]
    assert [(ev.key, ev.value) for ev in _collect(cats, 2)] == [("catalog/c", b"c1"), ("catalog/d", b"d1")]
    nodes.close()
    cats.close()


def test_close_wakes_a_blocked_poll_and_the_store_is_not_blocked(harness):
    s = harness.store
    w = s.watch("q/")
    result = []

    def blocked():
        t0 = time.monotonic()
        try:
            result.append(w.poll(60))
        except IoFailed as e:
            result.append(e)
        result.append(time.monotonic() - t0)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.3)
    s.put("elsewhere", b"1")  # the store answers while a poll waits
    assert s.get("elsewhere") == b"1" and s.scan("elsewhere") == [("elsewhere", b"1")]
    w.close()
    t.join(30)
    assert not t.is_alive()
    assert isinstance(result[0], IoFailed) and result[1] < 30
    with pytest.raises(IoFailed, match="closed"):
        w.poll(0)
    w.close()  # twice: no error


def test_closing_the_store_ends_its_watchers(harness):
    w = harness.store.watch("q/")
    harness.store.close()
    with pytest.raises(IoFailed):
        w.poll(5)
    with pytest.raises(IoFailed):
        harness.store.watch("q/")


def test_a_watcher_sees_changes_made_through_another_client(harness):
    if harness.kind not in ("etcd", "remote"):
        pytest.skip("memory: one instance is the store; local: one process and one instance per "
                    "directory (test_second_open_is_refused)")
    other = harness.other()
    try:
        w = harness.store.watch("nodes/")
        other.put("nodes/7", b"from the other client")
        lease = other.grant_lease(30)
        other.txn(puts={"nodes/8": b"leased"}, lease=lease)
        other.revoke_lease(lease)
        assert _changes(_collect(w, 3)) == [[(PUT, "nodes/7", b"from the other client")],
                                            [(PUT, "nodes/8", b"leased")], [(DELETE, "nodes/8", None)]]
        w.close()
    finally:
        other.close()


def test_no_event_lost_under_concurrent_writers(harness):
    s = harness.store
    w = s.watch("c/")
    threads = [threading.Thread(target=lambda t=t: [s.put(f"c/{t}/{i:03d}", b"%d" % i) for i in range(200)])
               for t in range(4)]
    for t in threads:
        t.start()
    events = _collect(w, 800, seconds=120)
    for t in threads:
        t.join()
    revisions = [ev.revision for ev in events]
    assert revisions == sorted(set(revisions))  # one revision per put, in order
    for t in range(4):
        assert [ev.key for ev in events if ev.key.startswith(f"c/{t}/")] == [f"c/{t}/{i:03d}" for i in range(200)]
    w.close()


def _compact(harness, store, revision: int) -> None:
    """Make the revisions below ``revision`` unavailable: etcd compacts; the in-process stores
    (opened with a small ``watch_backlog``) just had more changes than they keep."""
    if harness.kind == "etcd":
        from aetcd import rpc

        async def compact():
            await store._client.kvstub.Compact(rpc.CompactionRequest(revision=revision, physical=True))

        store._run(compact(), "compact etcd")


def test_a_watch_below_the_kept_history_raises_compacted(harness):
    store = harness.other(watch_backlog=4)
    try:
        start = store.scan_revision("")[1] + 1
        for i in range(20):
            store.put(f"h/{i}", b"x")
        _compact(harness, store, store.scan_revision("")[1])
        with pytest.raises(WatchCompacted, match="scan again"):
            store.watch("h/", start)
        pairs, rev = store.scan_revision("h/")  # what a caller does then
        w = store.watch("h/", rev + 1)
        store.put("h/after", b"y")
        assert [ev.key for ev in _collect(w, 1)] == ["h/after"] and len(pairs) == 20
        w.close()
    finally:
        store.close()


def test_a_watcher_that_falls_too_far_behind_is_dropped(harness):
    store = harness.other(watch_backlog=4)
    try:
        w = store.watch("h/")
        for i in range(20):
            store.put(f"h/{i}", b"x")
        got = []
        deadline = time.monotonic() + 20
        with pytest.raises(WatchCompacted, match="behind"):
            while time.monotonic() < deadline:
                got += w.poll(0.5)
        assert len(got) <= 4 and [ev.key for ev in got] == [f"h/{i}" for i in range(len(got))]
        with pytest.raises(WatchCompacted):  # and stays dropped
            w.poll(0)
        w.close()
    finally:
        store.close()


def test_watch_events_match_the_reference(harness):
    """The same random changes give the same events, revision by revision, as the memory store."""
    ref = MemoryMetaStore()
    w, ref_w = harness.store.watch(""), ref.watch("")
    for op, a, b in _random_ops(random.Random(5), 200):
        if op == "put":
            harness.store.put(a, b), ref.put(a, b)
        elif op == "delete":
            harness.store.delete(a), ref.delete(a)
        elif op == "txn":
            assert harness.store.txn(*a) == ref.txn(*a)
    expected = ref_w.poll(0, max_events=10_000)
    assert _changes(_collect(w, len(expected))) == _changes(expected)
    w.close()

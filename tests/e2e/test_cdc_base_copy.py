"""CDC with ``"start": "copy"`` (vecdb.cdc.base_copy): a source whose log was cut by flushes before the
task existed (rows persisted, gone from the log) is copied through its Milvus API, then followed from
positions recorded before the copy: the target ends equal to the source (``verify``), with writes,
upserts and deletes made while the copy runs, and with a task stopped in the middle of its copy and
resumed."""

from __future__ import annotations

import threading
import time

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e._helpers import namespace_collection
from tests.e2e.test_cdc import DIM, Stream, _rows, replicating
from vecdb.cdc import base_copy
from vecdb.cdc.replicator import open_source, read_catalog
from vecdb.cdc.task import new_task_id


class CopyStream(Stream):
    """A ``Stream`` whose task is created later (``begin``), once the source holds its rows; the task's
    source carries the source's Milvus API address (``uri``) for the copy."""

    def __init__(self, tmp_path, storage: dict, target_uri: str):
        super().__init__(tmp_path, storage, target_uri, begin=False)
        self.storage = {**storage, "uri": self.source_uri}

    def begin(self, **spec):
        self.task, self.rep = self.start_task(self.target_uri, **spec)
        return self.rep


def copying(tmp_path, storage: dict, target):
    """``replicating`` with a ``CopyStream`` into ``target`` (a started standalone)."""
    return replicating(tmp_path, storage, target, f"http://127.0.0.1:{target.port}", CopyStream)


def _plain(c: MilvusClient, name: str, n: int) -> None:
    """Vectors, scalars, a nullable field, JSON, an array and dynamic keys, in three partitions."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", datatype=5, is_primary=True)
    schema.add_field("vector", datatype=101, dim=DIM)
    schema.add_field("tag", datatype=21, max_length=16)
    schema.add_field("score", datatype=10)
    schema.add_field("flag", datatype=1)
    schema.add_field("note", datatype=21, max_length=32, nullable=True)
    schema.add_field("doc", datatype=23)
    schema.add_field("nums", datatype=22, element_type=5, max_capacity=4)
    ip = c.prepare_index_params()
    ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=schema, index_params=ip, num_shards=2)
    for p in ("p1", "p2"):
        c.create_partition(name, p)
    for k, part in enumerate(("_default", "p1", "p2")):
        lo, hi = k * n // 3, (k + 1) * n // 3
        c.insert(name, _wide(range(lo, hi), seed=k), partition_name=part)


def _wide(ids, seed=0) -> list[dict]:
    rows = _rows(ids, seed=seed)
    for r in rows:
        i = r["id"]
        r.update({"score": i / 3, "flag": i % 2 == 0, "note": None if i % 5 == 0 else f"n{i}",
                  "doc": {"k": i, "s": [i, str(i)]}, "nums": [i, i + 1]})
    return rows


def _typed(c: MilvusClient, n: int) -> None:
    """Every vector type a query returns otherwise than an upsert takes it (byte vectors as ``[bytes]``),
    a sparse vector and a nullable TIMESTAMPTZ."""
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", datatype=5, is_primary=True)
    s.add_field("f", datatype=101, dim=4)
    s.add_field("bv", datatype=100, dim=16)
    s.add_field("h", datatype=102, dim=4)
    s.add_field("bf", datatype=103, dim=4)
    s.add_field("i8", datatype=105, dim=4)
    s.add_field("sp", datatype=104)
    s.add_field("ts", datatype=26, nullable=True)
    ip = c.prepare_index_params()
    for f, kind, metric in (("f", "FLAT", "L2"), ("bv", "BIN_FLAT", "HAMMING"), ("h", "FLAT", "L2"),
                            ("bf", "FLAT", "L2"), ("i8", "HNSW", "L2"), ("sp", "SPARSE_INVERTED_INDEX", "IP")):
        ip.add_index(field_name=f, index_type=kind, metric_type=metric)
    c.create_collection("typed", schema=s, index_params=ip)
    rng = np.random.default_rng(4)
    f32 = rng.random((n, 4), dtype=np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16: the high half of each float32
    c.insert("typed", [{"id": i, "f": f32[i].tolist(), "bv": bytes([i % 256, 255 - i % 256]),
                        "h": f32[i].astype(np.float16), "bf": bf16[i].tobytes(),
                        "i8": np.array([1, -2, 3, i % 100], np.int8), "sp": {1: 0.5, 7 + i % 3: float(i + 1)},
                        "ts": None if i % 2 else "2024-01-02T03:04:05Z"} for i in range(n)])


def _log_cut(storage: dict, names: list[str]) -> bool:
    """Whether every channel of the named collections lost its first record (the source cut its log)."""
    meta, log = open_source(storage)
    try:
        colls, _, _ = read_catalog(meta)
        chans = [ch for info in colls.values() if info.name in names for ch in info.channels]
        return all(log.last_position(ch) == 0 or not list(log.read(ch, 1, 1)) for ch in chans) and \
            any(log.last_position(ch) > 0 for ch in chans)
    finally:
        log.close()
        meta.close()


def _count(c: MilvusClient, name: str, **kw) -> int:
    return int(c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong", **kw)[0]["count(*)"])


def test_copy_brings_rows_the_source_cut_from_its_log(tmp_path, remote_storage):
    with copying(tmp_path, remote_storage("cdccp" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _plain(c, "plain", 900)
        c.upsert("plain", _wide(range(100, 150), seed=7))
        c.delete("plain", ids=list(range(0, 40)))
        c.delete("plain", filter="id in [400, 401]")
        keyed = MilvusClient.create_schema(auto_id=False)
        keyed.add_field("id", datatype=21, is_primary=True, max_length=12)
        keyed.add_field("vector", datatype=101, dim=DIM)
        keyed.add_field("tenant", datatype=5, is_partition_key=True)
        kip = c.prepare_index_params()
        kip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        c.create_collection("keyed", schema=keyed, index_params=kip, num_partitions=4)
        vecs = np.random.default_rng(9).random((300, DIM), dtype=np.float32)
        c.insert("keyed", [{"id": f"k{i}", "vector": vecs[i].tolist(), "tenant": i % 5} for i in range(300)])
        c.delete("keyed", filter="tenant == 3")
        # a namespace collection in partition mode: copied namespace by namespace
        namespace_collection(c, s.source_uri, "parted_ns", kip, DIM, {"east": _rows(range(0, 10), extra=False),
                                                                      "west": _rows(range(10, 25), extra=False)})
        _typed(c, 60)
        for name in ("plain", "keyed", "parted_ns", "typed"):
            c.flush(name)
        wait_until(lambda: _log_cut(s.storage, ["plain", "keyed", "parted_ns", "typed"]), 30, "the source kept its log")
        rep = s.begin(start="copy")
        wait_until(lambda: rep.progress.copied_rows and not s.store.copies(s.task.id), 60, "the copy did not end")
        s.wait_equal(60, "the base copy did not make the target equal")
        assert rep.progress.copy_pending == 0 and rep.progress.copying == "" and rep.progress.last_error == ""
        assert rep.progress.copied_rows == (900 - 42) + 240 + 25 + 60
        assert s.store.copies(s.task.id) == set()
        t = MilvusClient(uri=s.target_uri)
        assert _count(t, "plain") == 858 and _count(t, "plain", partition_names=["p2"]) == 300
        row = t.query("plain", filter="id == 125", output_fields=["*"])[0]
        assert row["color"] == "blue" and row["doc"] == {"k": 125, "s": [125, "125"]} and row["nums"] == [125, 126]
        assert t.query("plain", filter="id == 300", output_fields=["note"])[0]["note"] is None
        # later writes follow, from the positions recorded before the copy
        c.insert("plain", _wide(range(5000, 5010)), partition_name="p1")
        c.delete("keyed", ids=["k0", "k1"])
        s.wait_equal(60, "changes after the copy not replicated")
        # the contrast: a task from "now" gets the collection, not the rows the log no longer has
        _, now = s.start_task(s.target_uri, start="now", collections=["plain"], rename={"plain": "plain_now"})
        try:
            wait_until(lambda: t.has_collection("plain_now") and now.progress.channels, 30, "no plain_now")
            assert _count(t, "plain_now") == 0
        finally:
            now.stop()


def _slow_copy(monkeypatch, seconds: float) -> None:
    """Pages of 100 rows, each upsert of the copy ``seconds`` slower."""
    monkeypatch.setattr(base_copy, "COPY_BATCH", 100)
    real = base_copy.upsert_rows

    def slow(*a, **kw):
        time.sleep(seconds)
        return real(*a, **kw)

    monkeypatch.setattr(base_copy, "upsert_rows", slow)


def test_writes_during_the_copy_converge(tmp_path, remote_storage, monkeypatch):
    """Inserts, upserts and deletes on keys already copied, keys not copied yet and new keys, made while
    the copy pages through the collection: the log replayed from before the copy settles each key."""
    _slow_copy(monkeypatch, 0.1)
    with copying(tmp_path, remote_storage("cdccpw" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _plain(c, "plain", 3000)
        c.flush("plain")
        rep = s.begin(start="copy")
        during: list[int] = []
        stop = threading.Event()

        def write() -> None:  # every page of the copy holds keys changed while it is copied
            w = MilvusClient(uri=s.source_uri)
            k = 0
            while not stop.is_set() and k < 60:
                for p, part in enumerate(("_default", "p1", "p2")):
                    w.upsert("plain", _wide(range(1000 * p + k % 25, 1000 * (p + 1), 25), seed=100 + k),
                             partition_name=part)
                w.insert("plain", _wide(range(10_000 + k * 10, 10_000 + k * 10 + 10), seed=k))
                w.delete("plain", ids=[(k * 37) % 3000, (k * 37 + 1013) % 3000, (k * 37 + 2011) % 3000,
                                       10_000 + k * 10])
                if rep.progress.copy_pending:
                    during.append(k)
                k += 1
            w.close()

        wait_until(lambda: rep.progress.copied_rows > 0, 30, "the copy did not start")
        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_until(lambda: rep.progress.copy_pending == 0, 60, "the copy did not end")
        finally:
            stop.set()
            writer.join(30)
        assert len(during) >= 3, during  # the writes did overlap the copy
        s.wait_equal(60, "writes made during the copy did not converge")
        assert rep.progress.last_error == ""


def test_a_task_stopped_in_the_middle_of_its_copy_resumes_and_converges(tmp_path, remote_storage, monkeypatch):
    """The copy is recorded as pending with the positions taken before it: a task stopped mid-copy keeps
    both, copies again when it runs again (writes made meanwhile included), and ends equal."""
    _slow_copy(monkeypatch, 0.03)
    with copying(tmp_path, remote_storage("cdccpr" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _plain(c, "plain", 2400)
        c.flush("plain")
        rep = s.begin(start="copy")
        wait_until(lambda: rep.progress.copied_rows >= 300, 30, "the copy did not start")
        rep.stop()
        assert rep.progress.copy_pending == 1 and rep.progress.copied_rows < 2400
        positions = s.store.positions(s.task.id)
        assert s.store.copies(s.task.id) and positions and all(p > 0 for p in positions.values())
        c.upsert("plain", _wide(range(0, 50), seed=11))
        c.delete("plain", ids=list(range(2000, 2100)))
        c.insert("plain", _wide(range(7000, 7100), seed=12), partition_name="p2")
        rep = s.resume()
        wait_until(lambda: rep.progress.copied_rows and not s.store.copies(s.task.id), 60,
                   "the resumed copy did not end")
        assert rep.progress.copied_rows == 2400 - 100 + 100  # copied again from the start, as the source is now
        s.wait_equal(60, "a resumed copy did not converge")
        assert s.store.copies(s.task.id) == set()


def test_a_target_refusal_during_the_copy_is_reported_and_retried(tmp_path, remote_storage, monkeypatch):
    """The target refuses one page of the copy: the task stays running, reports the error, and after
    its backoff copies on from the last primary key it had copied (no page copied twice)."""
    monkeypatch.setattr(base_copy, "COPY_BATCH", 100)
    real, calls = base_copy.upsert_rows, []

    def refuse_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the target refused the page")
        return real(*a, **kw)

    monkeypatch.setattr(base_copy, "upsert_rows", refuse_third)
    with copying(tmp_path, remote_storage("cdccpe" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _plain(c, "plain", 600)
        rep = s.begin(start="copy")
        wait_until(lambda: rep.progress.copied_rows and not s.store.copies(s.task.id), 60, "the copy did not end")
        assert rep.progress.last_error_at > 0 and rep.progress.state == "running"
        assert rep.progress.copied_rows == 600 and len(calls) == 6 + 1  # 6 pages, the refused one sent again
        s.wait_equal(60, "not equal after a refused page")


def test_a_collection_created_while_the_task_was_stopped_and_cut_from_the_log_is_copied(tmp_path, remote_storage):
    """A collection created after the task, while it was stopped, whose log the source cut before the task
    ran again: copied too (followed from its beginning alone, its rows were silently missing). (A task of
    named collections: one of every collection holds a new collection's log whole until it takes it up,
    vecdb.cdc.follower's HOLD_NEW, so its log would not be cut.)"""
    with copying(tmp_path, remote_storage("cdccpl" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _plain(c, "plain", 30)
        rep = s.begin(start="copy", collections=["plain", "later"])
        s.wait_equal(60, "the first copy did not make the target equal")
        # the copy's rows can make the target equal a moment before the copy is recorded done: stopped in
        # between, the task copies plain again when it runs again (counted in copied_rows below)
        wait_until(lambda: not s.store.copies(s.task.id), 30, "the first copy was not recorded done")
        rep.stop()
        _plain(c, "later", 300)
        c.flush("later")
        wait_until(lambda: _log_cut(s.storage, ["later"]), 30, "the source kept its log")
        rep = s.resume()
        wait_until(lambda: rep.progress.copied_rows and not s.store.copies(s.task.id), 60, "no copy of later")
        s.wait_equal(60, "a collection created while the task was stopped is not on the target")
        assert rep.progress.copied_rows == 300


def test_a_task_past_the_retention_limit_with_source_uri_copies_the_collection_again(tmp_path, remote_storage,
                                                                                    monkeypatch):
    """The source cut its log past a stopped task's position on one collection (retention 0): a task with
    ``source.uri`` does not fail, it empties that collection on the target and copies it again (rows
    changed and deleted meanwhile included), and the other collection goes on from its position."""
    from vecdb.cdc import follower

    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    with copying(tmp_path, remote_storage("cdcgap" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        for name in ("cut", "kept"):
            c.create_collection(name, dimension=DIM)
            c.insert(name, _rows(range(50), extra=False))
        s.begin(start="copy")
        s.wait_equal(90, "not copied")
        wait_until(lambda: s.rep.progress.copy_pending == 0, 30, "the copies did not end")
        copied = s.rep.progress.copied_rows
        s.rep.stop()
        c.insert("cut", _rows(range(50, 80), seed=1, extra=False))
        c.upsert("cut", _rows(range(0, 10), seed=2, extra=False))
        c.delete("cut", ids=list(range(70, 80)))
        c.insert("kept", _rows(range(50, 60), seed=3, extra=False))
        c.flush("cut")  # the log of "cut" is cut at its checkpoint: past the task
        assert _log_cut(s.storage, ["cut"])
        rep = s.resume()
        s.wait_equal(90, "the collection cut from the log was not copied again")
        assert rep.progress.state == "running" and rep.progress.last_error == ""
        assert rep.progress.copied_rows == 70  # "cut" alone, as it is now (the first run copied both)
        assert copied == 100 and _count(t, "cut") == 70 and _count(t, "kept") == 60

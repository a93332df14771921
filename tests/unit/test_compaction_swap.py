"""A query node follows compaction (vecdb.querynode.compaction), and a load survives objects going away.

Every test runs the real data node persist and query node load on memory stores, and commits
compactions exactly as the shared contract says (``compact`` below: the new segment written with
``write_segment`` under ``segments/<cid>/<ch>/<pos>-<pid>-c<id>/``, then one metadata txn expecting
the checkpoint and the source seg keys, deleting them and the obsolete delta keys, putting the new
seg key, ``compacted/...`` and ``gc/...``). Results (search, query, count, the primary-key index) are
compared with a reference kept from the same operations, before and after the swap, and with a
node that loads the compacted state from scratch.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
import weakref
from functools import partial

import numpy as np
import pytest

from vecdb.catalog_model import CollectionInfo, PartitionInfo
from vecdb.datanode.node import DataNode
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode
from vecdb.querynode import compaction as qc
from vecdb.querynode.executor import SearchSpec, count
from vecdb.querynode.node import QueryNode
from vecdb.querynode.segment import Segment
from vecdb.querynode.shard import RETIRED_KEEP_S, Shard
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore
from vecdb.timestamp import MAX_TIMESTAMP

CID = 7
CH = f"c{CID}-s0"
DIM = 4
READ_TS = MAX_TIMESTAMP - 1


class _Ids:
    def __init__(self):
        self.next = 1000

    def allocate(self, count: int = 1) -> int:
        self.next += count
        return self.next - count


def _info(pk_type=DataType.INT64) -> CollectionInfo:
    pk = FieldSchema("id", pk_type, field_id=100, is_primary=True, max_length=64)
    schema = CollectionSchema("c", [pk, FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=DIM),
                                    FieldSchema("s", DataType.VARCHAR, field_id=102, max_length=64)])
    return CollectionInfo(id=CID, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1)])


class World:
    """One channel's log, metadata and objects, a data node, query nodes fed every record (as a
    standalone writer does), and the reference: pk -> (vector, tag) of every live row."""

    def __init__(self, pk_type=DataType.INT64, objects=None):
        self.info = _info(pk_type)
        self.log, self.meta = MemoryLog(), MemoryMetaStore()
        self.objects = MemoryObjectStore() if objects is None else objects
        self.ids = _Ids()
        self.dn = DataNode(self.log, self.meta, self.objects, self.ids, truncate=False)
        self.nodes: list[QueryNode] = []
        self.ref: dict = {}
        self.ts = 10

    def key(self, i: int):
        return i if self.info.schema.primary_field.dtype == DataType.INT64 else f"k{i:06d}"

    def _pks(self, ids) -> np.ndarray:
        if self.info.schema.primary_field.dtype == DataType.INT64:
            return np.asarray(ids, np.int64)
        return np.asarray([self.key(i) for i in ids], dtype=object)

    def append(self, rec, deliver_to=None) -> int:
        pos = self.log.append(CH, encode(rec))
        for node in self.nodes if deliver_to is None else deliver_to:
            node.deliver(CH, pos, rec)
        return pos

    def insert(self, ids, tag: str, deliver_to=None) -> int:
        """Insert (or upsert: same thing) rows ``ids``; a repeated id in the batch: the last wins."""
        self.ts += 1
        ids = list(ids)
        vecs = np.asarray([[i % 97, len(tag), self.ts % 13, i % 7] for i in ids], np.float32)
        tags = np.asarray([f"{tag}-{i}" for i in ids], dtype=object)
        for n, i in enumerate(ids):
            self.ref[self.key(i)] = (vecs[n], tags[n])
        return self.append(InsertRecord(CID, 0, self.ts, len(ids), {"id": self._pks(ids), "v": vecs, "s": tags}),
                           deliver_to)

    def delete(self, ids, deliver_to=None) -> int:
        self.ts += 1
        for i in ids:
            self.ref.pop(self.key(i), None)
        return self.append(DeleteRecord(CID, self.ts, self._pks(list(ids))), deliver_to)

    def seal_and_persist(self, deliver_to=None) -> int:
        self.ts += 1
        pos = self.append(SealRecord(CID, self.ts), deliver_to)
        self.dn.persist(self.info, CH, pos)
        return pos

    def node(self) -> QueryNode:
        qn = QueryNode(self.log, self.meta, self.objects)
        qn.load(self.info)
        self.nodes.append(qn)
        return qn

    def close(self):
        for qn in self.nodes:
            qn.close()
        self.dn.close()


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


# --- the contract's compaction commit ----------------------------------------------------------
def _state_at_checkpoint(w: World) -> Shard:
    """The channel as persisted (segments, deltas resolved as a load does): what a compactor sees at P."""
    shard = Shard(CH, w.info.schema)
    for seg in sf.list_segments(w.meta, CID, CH):
        columns, ts = sf.read_segment(w.objects, seg["prefix"], w.info.schema)
        s = shard.add_sealed(partial(Segment.from_columns, partition_id=seg["partition_id"], schema=w.info.schema,
                                     columns=columns, ts=ts, del_ts=np.full(len(ts), MAX_TIMESTAMP, np.uint64)))
        s.prefix = seg["prefix"]
    shard.rebuild_pk_index()
    for _, key in w.meta.scan(f"delta/{CID}/{CH}/"):
        shard.apply_deltas(*sf.read_delta(w.objects, key.decode()))
    return shard


def compact(w: World, prefixes: list[str] | None = None, index=None) -> dict:
    """Compact ``prefixes`` (default: every segment of the channel) at the checkpoint P, as
    vecdb/datanode/compactor.py does by the contract; returns the compacted/ record."""
    ckpt_raw = w.meta.get(f"ckpt/{CID}/{CH}")
    assert ckpt_raw is not None
    p = int(ckpt_raw)
    seg_pairs = dict(w.meta.scan(f"seg/{CID}/{CH}/"))
    infos = {json.loads(v)["prefix"]: (k, v) for k, v in seg_pairs.items()}
    prefixes = list(infos) if prefixes is None else prefixes
    state = _state_at_checkpoint(w)
    by_prefix = {s.prefix: s for s in state.segments.values()}
    srcs = [by_prefix[pr] for pr in prefixes]
    pid = srcs[0].partition_id
    columns = {f.name: np.concatenate([s.column(f.name)[s.del_ts() == MAX_TIMESTAMP] for s in srcs])
               for f in w.info.schema.fields}
    ts = np.concatenate([s.ts()[s.del_ts() == MAX_TIMESTAMP] for s in srcs])
    position = max(json.loads(infos[pr][1])["position"] for pr in prefixes)
    sid = w.ids.allocate()
    new_prefix = f"segments/{CID}/{CH}/{position:020d}-{pid}-c{sid}/" if len(ts) else None
    puts = {}
    if new_prefix is not None:
        w.meta.put(f"gcintent/{new_prefix}", json.dumps({"incarnation": "test"}).encode())
        sf.write_segment(w.objects, new_prefix, w.info.schema, columns, ts)
        if index is not None:
            index(new_prefix, columns)
        seg = {"segment_id": sid, "partition_id": pid, "num_rows": len(ts), "prefix": new_prefix,
               "position": position, "from": prefixes, "deltas_upto": p}
        puts[f"seg/{CID}/{CH}/{position:020d}-{pid}-c{sid}"] = json.dumps(seg).encode()
    # a delta at position q is obsolete once every remaining segment with position < q has deltas_upto >= q
    remaining = [json.loads(v) for k, v in seg_pairs.items() if json.loads(v)["prefix"] not in prefixes]
    remaining += [json.loads(v) for v in puts.values()]
    obsolete = []
    for key, raw in w.meta.scan(f"delta/{CID}/{CH}/"):
        q = int(key.rsplit("/", 1)[1])
        if all(s.get("deltas_upto", 0) >= q for s in remaining if s["position"] < q):
            obsolete.append((key, raw.decode()))
    record = {"from": prefixes, "to": new_prefix, "position": p, "at": time.time()}
    puts[f"compacted/{CID}/{CH}/{sid}"] = json.dumps(record).encode()
    puts[f"gc/{CID}/g{sid}"] = json.dumps({"prefixes": prefixes, "keys": [o for _, o in obsolete],
                                           "after": time.time()}).encode()
    expect = {f"ckpt/{CID}/{CH}": ckpt_raw, **{infos[pr][0]: infos[pr][1] for pr in prefixes}}
    deletes = [infos[pr][0] for pr in prefixes] + [k for k, _ in obsolete]
    if new_prefix is not None:
        deletes.append(f"gcintent/{new_prefix}")
    assert w.meta.txn(puts=puts, deletes=deletes, expect=expect)
    return record


def collect(w: World, record: dict) -> None:
    """What GC does after the grace period: the compacted-away objects and the record go."""
    for prefix in record["from"]:
        w.objects.delete_prefix(prefix)
    for key, raw in w.meta.scan(f"gc/{CID}/"):
        doc = json.loads(raw)
        if doc["prefixes"] == record["from"]:
            for k in doc["keys"]:
                w.objects.delete(k)
            w.meta.delete(key)
    for key, raw in w.meta.scan(f"compacted/{CID}/{CH}/"):
        if json.loads(raw)["from"] == record["from"]:
            w.meta.delete(key)


# --- reading and checking ------------------------------------------------------------------
def results(w: World, qn: QueryNode) -> dict:
    info = w.info
    rows = qn.query(info, READ_TS, None, None, ["id", "v", "s"], None, 0)
    order = np.argsort(rows["id"], kind="stable")
    queries = np.asarray([[i, 3, 2, i % 7] for i in range(0, 97, 12)], np.float32)
    spec = SearchSpec(field=info.schema.field("v"), queries=queries, limit=15, offset=0, metric="L2", params={},
                      ts=READ_TS)
    hits = qn.search(info, spec, None, ["s"])
    return {"count": qn.count(info, READ_TS, None, None), "ids": rows["id"][order].tolist(),
            "v": rows["v"][order].tolist(), "s": rows["s"][order].tolist(),
            "hits": (hits.topks, hits.pks.tolist(), np.round(hits.scores, 4).tolist(), hits.columns["s"].tolist())}


def reference(w: World) -> dict:
    keys = sorted(w.ref)
    return {"count": len(keys), "ids": keys, "v": [w.ref[k][0].tolist() for k in keys],
            "s": [w.ref[k][1] for k in keys]}


def check(w: World, qn: QueryNode) -> dict:
    got = results(w, qn)
    assert {k: got[k] for k in ("count", "ids", "v", "s")} == reference(w)
    shard = qn._by_channel[CH]
    assert sorted(shard.pk_index) == sorted(w.ref)  # the pk index holds exactly the live keys...
    for key, loc in shard.pk_index.items():  # ...each at its live row
        seg, off = shard.segments[loc >> 32], loc & 0xFFFFFFFF
        assert seg.pks()[off] == key and seg.del_ts()[off] == MAX_TIMESTAMP
    return got


def prefixes_held(qn: QueryNode) -> list:
    return sorted(s.prefix or "growing" for s in qn._by_channel[CH].segments.values())


def apply_records(qn: QueryNode) -> int:
    """Once the node's watch has every compaction record the store holds, one pass over them (its
    own thread may have made it already); returns how many still wait."""
    keys = {k for k, _ in qn.meta.scan(qc.COMPACTED_PREFIX)}
    wait_for(lambda: keys <= set(qn.compactions._records))
    return qn.compactions.process()


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pk_type", [DataType.INT64, DataType.VARCHAR], ids=["int64", "varchar"])
def test_swap_keeps_results_and_pk_index_with_deletes_and_upserts_before_and_after_p(pk_type):
    w = World(pk_type)
    try:
        early = w.node()  # follows from the start: its segments are sealed from the log
        w.insert(range(0, 100), "a")
        w.insert([100, 101, 102, 101, 100, *range(103, 200)], "b")  # duplicates in one batch: the last wins
        w.seal_and_persist()
        late = w.node()  # loads the first segment from its files
        w.insert(range(200, 300), "c")
        w.delete(range(0, 20))
        w.insert(range(50, 70), "up1")  # upserts of rows of the first segment, before P
        w.seal_and_persist()
        w.delete(range(60, 65))  # a delete of an upserted row, persisted (a delta at P) with no new rows
        p = w.seal_and_persist()
        # after P, in memory only: deletes and upserts of rows of the sources, new rows, a growing segment
        w.delete(range(100, 110))
        w.insert(range(110, 120), "up2")
        w.insert(range(300, 350), "d")
        w.delete(range(300, 305))
        before = {id(qn): check(w, qn) for qn in (early, late)}
        inflight = early.collections[CID].snapshot(None)
        sources = [weakref.ref(s) for s in early._by_channel[CH].segments.values() if s.sealed]
        held_before = prefixes_held(early)

        record = compact(w)
        assert record["position"] == p and len(record["from"]) == 2 and record["to"].endswith(f"-c{w.ids.next - 1}/")
        for qn in (early, late):
            apply_records(qn)
            assert prefixes_held(qn) == sorted([record["to"], "growing"])
            got = check(w, qn)
            assert got == before[id(qn)]  # search, query and count unchanged by the swap
        assert held_before == sorted(record["from"] + ["growing"])
        # a read that took its snapshot before the swap still reads the old segments, whole
        assert count(inflight, READ_TS, None) == before[id(early)]["count"]
        del inflight
        # kept for reads at snapshots older than the rows they lost (Shard.replace_segments), then released
        assert {id(s) for r in early._by_channel[CH].retired for s in r.old} == {id(r()) for r in sources}
        early._by_channel[CH].prune_retired(time.monotonic() + RETIRED_KEEP_S)
        gc.collect()
        assert [r() for r in sources] == [None, None]  # the swapped-out segments are released

        # the pk index points into the compacted segment: deletes and upserts after the swap work
        w.delete([120, 121, 5, 299])
        w.insert(range(130, 140), "up3")
        w.insert([121], "back")
        for qn in (early, late):
            check(w, qn)
        # a node loading the compacted state from scratch agrees; so does one after the next flush
        fresh = w.node()
        assert apply_records(fresh) == 0 and fresh.compactions.swapped == 0  # its sources: none held
        assert results(w, fresh) == results(w, early)
        w.seal_and_persist()
        assert results(w, w.node()) == results(w, early) == results(w, late)
    finally:
        w.close()


def test_to_null_drops_the_sources(world):
    w = world
    qn = w.node()
    w.insert(range(10), "a")
    w.seal_and_persist()
    w.insert(range(10, 20), "b")
    w.seal_and_persist()
    w.delete(range(10))
    w.seal_and_persist()
    first = sorted(s["prefix"] for s in sf.list_segments(w.meta, CID, CH))[0]
    record = compact(w, [first])
    assert record["to"] is None
    assert len(w.meta.scan(f"delta/{CID}/{CH}/")) == 1  # still needed by the segment at position 4
    apply_records(qn)
    assert first not in prefixes_held(qn) and len(prefixes_held(qn)) == 1
    check(w, qn)
    w.insert(range(5), "again")
    check(w, qn)
    assert results(w, w.node()) == results(w, qn)


def test_a_record_waits_until_the_node_applied_its_position(world):
    w = world
    qn = w.node()
    w.insert(range(100), "a")
    w.seal_and_persist()
    seg1 = sf.list_segments(w.meta, CID, CH)[0]["prefix"]
    # records the data node persisted and this node has not applied yet: a delete of seg1's rows
    w.delete(range(40), deliver_to=[])
    w.insert(range(100, 110), "b", deliver_to=[])
    lagging = [(pos, payload) for pos, payload in w.log.read(CH, 1)][-2:]
    w.seal_and_persist(deliver_to=[])
    record = compact(w, [seg1])  # folds the delete: 60 rows
    assert qn._by_channel[CH].applied_position < record["position"]
    assert apply_records(qn) == 1  # waits
    assert seg1 in prefixes_held(qn) and record["to"] not in prefixes_held(qn)
    from vecdb.log_records import decode
    for pos, payload in [*lagging, *w.log.read(CH, lagging[-1][0] + 1)]:
        qn.deliver(CH, pos, decode(payload))
    assert apply_records(qn) == 0
    assert record["to"] in prefixes_held(qn) and seg1 not in prefixes_held(qn)
    assert qn._by_channel[CH].segments[max(qn._by_channel[CH].segments)].n == 60
    check(w, qn)


def test_the_watch_applies_records_on_its_own(world):
    w = world
    qn = w.node()
    w.insert(range(50), "a")
    w.seal_and_persist()
    w.insert(range(50, 80), "b")
    w.delete(range(10))
    w.seal_and_persist()
    record = compact(w)
    wait_for(lambda: record["to"] in prefixes_held(qn))
    check(w, qn)


def _three_segments(w: World) -> list[str]:
    w.insert(range(30), "a")
    w.seal_and_persist()
    w.insert(range(30, 60), "b")
    w.seal_and_persist()
    w.delete(range(0, 40, 3))
    w.insert(range(60, 90), "c")
    w.seal_and_persist()
    return sorted(s["prefix"] for s in sf.list_segments(w.meta, CID, CH))


def test_a_chain_of_compactions_is_followed_link_by_link(world):
    w = world
    qn = w.node()
    a, b, c = _three_segments(w)
    with qn.compactions._lock:  # the node does not get to look before both are committed
        first = compact(w, [a, b])
        w.delete([31, 32])
        w.seal_and_persist()
        second = compact(w, [first["to"], c])
        assert second["position"] > first["position"]
    assert apply_records(qn) == 0 and qn.compactions.swapped == 2
    assert prefixes_held(qn) == [second["to"]]
    check(w, qn)
    assert results(w, w.node()) == results(w, qn)


def test_a_read_at_an_older_snapshot_sees_what_a_chain_of_compactions_dropped(world):
    """The second link drops nothing of its own, but its source (the first link's new segment) lacks
    the rows the first dropped: a read older than those deletes undoes both links, not neither."""
    w = world
    qn = w.node()
    w.insert(range(30), "a")
    w.seal_and_persist()
    w.insert(range(30, 60), "b")
    w.seal_and_persist()
    old_ts = w.ts  # rows 0..59 alive here
    w.delete(range(10))
    w.insert(range(60, 90), "c")
    w.seal_and_persist()
    a, b, c = sorted(s["prefix"] for s in sf.list_segments(w.meta, CID, CH))
    first = compact(w, [a, b])
    assert apply_records(qn) == 0
    assert qn.count(w.info, old_ts, None, None) == 60
    second = compact(w, [first["to"], c])
    assert apply_records(qn) == 0 and prefixes_held(qn) == [second["to"]]
    assert qn.count(w.info, old_ts, None, None) == 60  # was 50: the second link kept no sources
    got = qn.query(w.info, old_ts, None, None, ["id"], None, 0)["id"]
    assert sorted(got.tolist()) == list(range(60))
    assert qn.count(w.info, READ_TS, None, None) == 80  # the present: the compacted segment
    check(w, qn)


def test_kept_sources_go_after_their_time_without_a_read(world):
    """The follower's pass forgets sources kept past RETIRED_KEEP_S: their memory does not wait for a read."""
    w = world
    qn = w.node()
    a, b, _ = _three_segments(w)
    compact(w, [a, b])
    assert apply_records(qn) == 0
    shard = qn._by_channel[CH]
    [kept] = shard.retired
    shard.retired = (dataclasses.replace(kept, until=time.monotonic() - 1),)  # its time is up
    qn.compactions.process()  # what its thread does every few seconds, read or not
    assert shard.retired == ()


def test_a_chain_whose_first_record_was_collected_before_the_node_applied_it(world, caplog):
    w = world
    qn = w.node()
    a, b, c = _three_segments(w)
    with qn.compactions._lock:
        first = compact(w, [a, b])
        second = compact(w, [first["to"], c])
        collect(w, first)  # the node lagged past the grace period: the first record is gone
        keys = {k for k, _ in w.meta.scan(qc.COMPACTED_PREFIX)}
        wait_for(lambda: set(qn.compactions._records) == keys)  # its watch saw it go
    with caplog.at_level("WARNING", logger="vecdb.querynode.compaction"):
        assert apply_records(qn) == 0
    assert "holds only 1 of its 2 sources; keeping its segments" in caplog.text
    assert prefixes_held(qn) == [a, b, c]  # its own segments, still right
    check(w, qn)
    assert second["to"] not in prefixes_held(qn)


def test_a_lost_new_segment_is_stood_for_by_its_sources(world, caplog):
    """A record whose new segment is gone already: the next link of the chain swaps from its sources."""
    w = world
    qn = w.node()
    a, b, c = _three_segments(w)
    with qn.compactions._lock:
        first = compact(w, [a, b])
        second = compact(w, [first["to"], c])
        w.objects.delete_prefix(first["to"])
    with caplog.at_level("WARNING", logger="vecdb.querynode.compaction"):
        assert apply_records(qn) == 0
    assert "is gone before this node read it" in caplog.text
    assert prefixes_held(qn) == [second["to"]]
    check(w, qn)


def test_a_record_that_does_not_match_this_nodes_rows_is_refused(world, caplog):
    w = world
    qn = w.node()
    w.insert(range(20), "a")
    w.seal_and_persist()
    w.delete(range(3), deliver_to=[])  # a diverged node: it missed a delete
    w.seal_and_persist()
    record = compact(w)
    with caplog.at_level("ERROR", logger="vecdb.querynode.compaction"):
        apply_records(qn)
    assert "are alive in" in caplog.text
    assert record["to"] not in prefixes_held(qn)  # it keeps its own segments
    assert qn.count(w.info, READ_TS, None, None) == 20


def test_a_load_starts_over_when_objects_are_gone_between_metadata_and_files(world, monkeypatch, caplog):
    w = world
    w.insert(range(100), "a")
    w.seal_and_persist()
    w.delete(range(0, 100, 2))
    w.insert(range(100, 150), "b")
    w.seal_and_persist()
    w.insert(range(150, 160), "c")
    qn = QueryNode(w.log, w.meta, w.objects)
    real = sf.persisted_state
    snapshots = []

    def compacted_and_collected_after_the_snapshot(meta, cid, channel):
        state = real(meta, cid, channel)
        snapshots.append(state)
        if len(snapshots) == 1:
            collect(w, compact(w))  # segments and the delta file listed in `state` are gone now
        return state
    monkeypatch.setattr(sf, "persisted_state", compacted_and_collected_after_the_snapshot)
    try:
        with caplog.at_level("INFO", logger="vecdb.querynode.node"):
            qn.load(w.info)
        assert "an object is gone" in caplog.text and "loading again from new metadata" in caplog.text
        assert len(snapshots) == 2 and len(snapshots[0][1]) == 2 and snapshots[0][2]
        assert [s["prefix"] for s in snapshots[1][1]] == [p for p in prefixes_held(qn) if p != "growing"]
        assert "-c" in snapshots[1][1][0]["prefix"] and snapshots[1][2] == []
        w.nodes.append(qn)
        check(w, qn)
    finally:
        qn.close()


def test_the_metadata_snapshot_reads_segments_again_after_the_deltas(world, monkeypatch):
    """A compaction committing between the segment list and the delta list would give its sources
    without the deltas it folded (their rows alive again): the snapshot is read again."""
    w = world
    w.insert(range(40), "a")
    w.seal_and_persist()
    w.delete(range(10))
    w.seal_and_persist()
    qn = QueryNode(w.log, w.meta, w.objects)
    real = sf.list_deltas
    calls = []

    def compaction_commits_first(meta, cid, channel):
        calls.append(1)
        if len(calls) == 1:
            compact(w)
        return real(meta, cid, channel)
    monkeypatch.setattr(sf, "list_deltas", compaction_commits_first)
    try:
        start, segs, deltas = sf.persisted_state(w.meta, CID, CH)
        assert len(calls) == 2 and [("from" in s) for s in segs] == [True] and deltas == []
    finally:
        qn.close()


def test_match_rows_pairs_by_pk_and_ts():
    schema = _info().schema

    def seg(slot, ids, ts):
        n = len(ids)
        cols = {"id": np.asarray(ids, np.int64), "v": np.zeros((n, DIM), np.float32),
                "s": np.asarray([""] * n, dtype=object)}
        return Segment.from_columns(slot, 0, schema, cols, np.asarray(ts, np.uint64),
                                    np.full(n, MAX_TIMESTAMP, np.uint64))
    a = seg(0, [1, 2, 2, 3], [5, 5, 5, 5])  # key 2 twice in one batch
    b = seg(1, [1, 4], [9, 9])  # key 1 again, later
    src, superseded = match_rows_of([a, b], [4, 2, 1, 1, 7, 3, 3], [9, 5, 9, 5, 9, 5, 5])
    assert src.tolist() == [5, 2, 4, 0, -1, 3, 3]
    assert superseded.tolist() == [False, False, False, False, False, True, False]


def match_rows_of(segs, ids, ts):
    return qc.match_rows(segs, np.asarray(ids, np.int64), np.asarray(ts, np.uint64))


def test_deletes_and_upserts_between_reading_the_new_segment_and_the_swap_are_kept(world, monkeypatch):
    """The new segment is read and built outside the shard lock; writes that land meanwhile reach the
    sources' rows, and the swap carries them over."""
    w = world
    qn = w.node()
    w.insert(range(100), "a")
    w.seal_and_persist()
    w.delete(range(10))
    w.seal_and_persist()
    follower = qn.compactions
    real = follower._prepare

    def writes_meanwhile(shard, rec, held):
        prepared = real(shard, rec, held)
        w.delete(range(20, 30))
        w.insert(range(40, 45), "up")
        return prepared
    monkeypatch.setattr(follower, "_prepare", writes_meanwhile)
    record = compact(w)
    apply_records(qn)
    assert prefixes_held(qn) == sorted([record["to"], "growing"])
    got = check(w, qn)
    assert got["count"] == 80
    assert results(w, w.node()) == got


def test_the_new_segments_index_file_is_loaded(world):
    from vecdb.catalog_model import IndexInfo
    from vecdb.index import new_index

    w = world
    w.info.indexes = [IndexInfo(1, "v_idx", "v", "IVF_FLAT", "L2", {"nlist": 4})]
    qn = w.node()
    w.insert(range(300), "a")
    w.seal_and_persist()
    w.delete(range(0, 300, 4))
    w.seal_and_persist()
    field = w.info.schema.field("v")

    def build(prefix, columns):
        sf.save_index(w.objects, new_index(w.info.indexes[0], field, columns["v"]), sf.index_key(prefix, 101, 1))
    record = compact(w, index=build)
    apply_records(qn)
    seg = qn._by_channel[CH].segments[max(qn._by_channel[CH].segments)]
    assert seg.prefix == record["to"] and seg.n == 225 and "v" in seg.indexes and seg.indexes["v"].ntotal == 225
    check(w, qn)


def test_a_tailing_node_swaps_once_it_has_followed_the_log_up_to_the_record(world):
    """A cluster's query node follows the log on its own thread: the record waits for its position."""
    w = world
    qn = QueryNode(w.log, w.meta, w.objects, tail=True)
    try:
        qn.load(w.info)
        w.insert(range(60), "a")
        w.seal_and_persist(deliver_to=[])
        w.insert(range(60, 90), "b", deliver_to=[])
        w.delete(range(20), deliver_to=[])
        p = w.seal_and_persist(deliver_to=[])
        record = compact(w)
        wait_for(lambda: record["to"] in prefixes_held(qn))
        assert qn._by_channel[CH].applied_position >= p
        check(w, qn)
        w.delete(range(20, 30), deliver_to=[])
        wait_for(lambda: qn.count(w.info, READ_TS, None, None) == len(w.ref))
        check(w, qn)
    finally:
        qn.close()


def test_segments_this_node_sealed_apart_but_persisted_together_are_swapped_together(world, monkeypatch):
    """Two flushes racing: the data node persists up to the second seal record at once (one segment),
    where the node sealed two. The compacted segment's rows are found in both. (Data nodes cut a segment
    at each seal record now; this is data persisted before that, here by a persist that merges them.)"""
    w = world
    real = w.dn._read_records

    def merged(channel, start, upto):
        inserts, deletes = real(channel, start, upto)
        out: dict = {}
        for (_, pid), recs in sorted(inserts.items()):
            out.setdefault((upto, pid), []).extend(recs)
        return out, deletes
    monkeypatch.setattr(w.dn, "_read_records", merged)
    qn = w.node()
    w.insert(range(40), "a")
    w.ts += 1
    w.append(SealRecord(CID, w.ts))  # the first flush's seal record; its persist comes too late
    w.insert(range(40, 70), "b")
    w.delete(range(0, 10))
    p = w.seal_and_persist()
    assert len(sf.list_segments(w.meta, CID, CH)) == 1 and len(prefixes_held(qn)) == 2
    w.insert(range(70, 80), "c")
    w.seal_and_persist()
    record = compact(w)
    assert record["position"] > p
    apply_records(qn)
    assert prefixes_held(qn) == [record["to"]]
    check(w, qn)


def test_a_chain_at_one_checkpoint_is_followed_whatever_the_order_of_its_records(world):
    """Two compactions at the same checkpoint, the second of the first's segment: the records have the
    same position, and the one made first may come second (here its segment id is the larger)."""
    w = world
    qn = w.node()
    a, b, c = _three_segments(w)
    with qn.compactions._lock:
        w.ids.next = 5000
        first = compact(w, [a, b])
        w.ids.next = 4000
        second = compact(w, [first["to"], c])
        assert first["position"] == second["position"]
    assert apply_records(qn) == 0 and qn.compactions.swapped == 2
    assert prefixes_held(qn) == [second["to"]]
    check(w, qn)


def test_a_watch_that_cannot_start_does_not_fail_the_load(world, monkeypatch):
    from vecdb.errors import IoFailed

    w = world
    real = w.meta.scan_revision
    failures = []

    def flaky(prefix):
        if prefix == qc.COMPACTED_PREFIX and len(failures) < 2:
            failures.append(prefix)
            raise IoFailed("store unreachable")
        return real(prefix)
    monkeypatch.setattr(w.meta, "scan_revision", flaky)
    qn = w.node()  # loads although the watch cannot start yet
    w.insert(range(50), "a")
    w.seal_and_persist()
    w.delete(range(5))
    w.seal_and_persist()
    record = compact(w)
    wait_for(lambda: record["to"] in prefixes_held(qn))  # the watch started on a later try
    assert len(failures) == 2
    check(w, qn)


def test_the_cached_copies_of_swapped_out_segments_are_dropped(s3_server, tmp_path):
    """On S3 a query node reads segment files through local cache copies; the collector deletes the
    objects, not this node's copies: the node drops them when it swaps the segments out, and when it
    releases the collection."""
    import glob
    import uuid

    from vecdb.storage.s3_objects import S3ObjectStore

    store = S3ObjectStore("vecdb-test", endpoint_url=s3_server.url, prefix=f"t{uuid.uuid4().hex[:12]}",
                          access_key="test", secret_key="test", cache_dir=str(tmp_path / "cache"))
    w = World(objects=store)
    try:
        w.insert(range(100), "a")
        w.seal_and_persist()
        w.insert(range(100, 150), "b")
        w.delete(range(10))
        w.seal_and_persist()
        qn = w.node()  # loads both segments from their files: cached copies

        def cached(prefix):
            return [p for f in ("_ts.npy", "100.npy", "101.npy")
                    for p in glob.glob(glob.escape(store._cache_stem(prefix + f)) + "-*")]
        sources = [s["prefix"] for s in sf.list_segments(w.meta, CID, CH)]
        assert all(len(cached(p)) == 3 for p in sources)
        record = compact(w)
        apply_records(qn)
        assert prefixes_held(qn) == [record["to"]]
        assert [cached(p) for p in sources] == [[], []]
        assert len(cached(record["to"])) == 3  # the new segment's, read through the cache
        check(w, qn)
        qn.release(CID)  # a release drops the copies of what the node held too
        assert cached(record["to"]) == []
    finally:
        w.close()


def test_a_swap_that_fails_on_the_store_is_tried_again(world, monkeypatch, caplog):
    from vecdb.errors import IoFailed

    w = world
    qn = w.node()
    w.insert(range(50), "a")
    w.seal_and_persist()
    w.insert(range(50, 60), "b")
    w.seal_and_persist()
    real = w.objects.get
    failed = []

    def flaky(key):
        if "-c" in key and len(failed) < 2:  # the new segment's files, twice
            failed.append(key)
            raise IoFailed("S3 unreachable")
        return real(key)
    monkeypatch.setattr(w.objects, "get", flaky)
    with caplog.at_level("ERROR", logger="vecdb.querynode.compaction"):
        record = compact(w)
        wait_for(lambda: record["to"] in prefixes_held(qn))
    assert len(failed) == 2 and "swap failed (2 of 20 tries)" in caplog.text
    check(w, qn)


def test_readers_during_swaps_never_see_a_row_twice_or_miss_one(world):
    """Readers run without the shard lock while the node swaps segments (three compactions, one of
    them a chain): every answer is the same set of rows."""
    import threading

    w = world
    qn = w.node()
    for lo in range(0, 400, 100):
        w.insert(range(lo, lo + 100), f"b{lo}")
        w.insert(range(lo, lo + 10), f"u{lo}")  # upserts within the batch's segment
        w.seal_and_persist()
    w.delete(range(0, 400, 7))
    w.seal_and_persist()
    expected = sorted(w.ref)
    answers, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            rows = qn.query(w.info, READ_TS, None, None, ["id"], None, 0)["id"].tolist()
            answers.append((qn.count(w.info, READ_TS, None, None), sorted(rows)))
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        segs = sorted(s["prefix"] for s in sf.list_segments(w.meta, CID, CH))
        first = compact(w, segs[:2])
        wait_for(lambda: first["to"] in prefixes_held(qn))
        second = compact(w, segs[2:])
        third = compact(w, [first["to"], second["to"]])
        wait_for(lambda: prefixes_held(qn) == [third["to"]])
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert len(answers) > 3
    assert all(n == len(expected) and rows == expected for n, rows in answers)

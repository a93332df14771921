"""Clustering keys: the schema rules (Milvus's validateClusteringKey), the clustering compaction of the
data node (vecdb.datanode.compactor: rows sorted by the key, cut into segments of one key range each),
a query node following it (several new segments for the sources at once) and the pruning of segments
by the key's range (vecdb.expr.prune), all on the memory stores. Every read answers the same before
and after the compaction, deletes and upserts on either side of its checkpoint included."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb.catalog_model import CollectionInfo, PartitionInfo, coll_key
from vecdb.config import CompactionSettings
from vecdb.coord.assignment import Assignment, Replica, plan
from vecdb.datanode.compactor import compaction_state, request_compaction
from vecdb.datanode.node import DataNode
from vecdb.errors import IllegalSchema, InvalidParameter, VectorClusteringKeyNotAllowed
from vecdb.expr.filter import compile_filter
from vecdb.log_records import DeleteRecord, InsertRecord, SealRecord, encode
from vecdb.querynode import compaction as qc
from vecdb.querynode import executor
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.querynode.shard import ReadScope, SegmentView
from vecdb.schema import CollectionSchema, DataType, FieldSchema, added_field
from vecdb.storage import segments as sf
from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore
from vecdb.timestamp import MAX_TIMESTAMP

CID = 9
CH = f"c{CID}-s0"
READ_TS = MAX_TIMESTAMP - 1


# --- schema ------------------------------------------------------------------------------------
def _pb(*extra: tuple[str, int, dict]) -> schema_pb2.CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="4")
    for name, dtype, kwargs in extra:
        f = pb.fields.add(name=name, data_type=dtype, **kwargs)
        if dtype == DataType.VARCHAR:
            f.type_params.add(key="max_length", value="16")
        if dtype == DataType.BINARY_VECTOR:
            f.type_params.add(key="dim", value="8")
    return pb


@pytest.mark.parametrize("dtype", [DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
                                   DataType.DOUBLE, DataType.VARCHAR])
def test_a_clustering_key_is_kept_and_described(dtype):
    schema = CollectionSchema.from_proto(_pb(("k", dtype, {"is_clustering_key": True})), "c")
    assert schema.clustering_key_field is schema.field("k")
    out = schema_pb2.CollectionSchema()
    schema.to_proto(out)
    assert [f.is_clustering_key for f in out.fields] == [False, False, True]
    # the catalog record keeps it; a field without one writes no key (the previous version reads it)
    info = CollectionInfo(id=1, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1)
    again = CollectionInfo.from_json(info.to_json())
    assert again.schema.clustering_key_field is not None and again.schema.clustering_key_field.name == "k"
    stored = json.loads(info.to_json())["schema"]["fields"]
    assert [("is_clustering_key" in f) for f in stored] == [False, False, True]


def test_a_record_of_a_newer_version_is_read():
    d = FieldSchema("x", DataType.INT64).to_dict()
    assert FieldSchema.from_dict({**d, "some_future_key": 1}) == FieldSchema("x", DataType.INT64)


@pytest.mark.parametrize("fields,error,message", [
    ([("k", DataType.JSON, {"is_clustering_key": True})], IllegalSchema,
     "clustering key field k has unsupported data type JSON"),
    ([("k", DataType.BOOL, {"is_clustering_key": True})], IllegalSchema,
     "clustering key field k has unsupported data type Bool"),
    ([("k", DataType.BINARY_VECTOR, {"is_clustering_key": True})], IllegalSchema,
     "clustering key field k has unsupported data type BinaryVector"),
    ([("a", DataType.INT64, {"is_clustering_key": True}), ("b", DataType.VARCHAR, {"is_clustering_key": True})],
     IllegalSchema, "there are more than one clustering key, field name = a, b"),
])
def test_invalid_clustering_keys_are_refused_as_milvus_does(fields, error, message):
    with pytest.raises(error) as e:
        CollectionSchema.from_proto(_pb(*fields), "c")
    assert e.value.code == 105 and e.value.message == message


def test_a_vector_clustering_key_is_refused_with_107():
    pb = _pb()
    pb.fields[1].is_clustering_key = True
    with pytest.raises(VectorClusteringKeyNotAllowed) as e:
        CollectionSchema.from_proto(pb, "c")
    assert e.value.code == 107 and e.value.message == "vector clustering key not allowed[collection=c]"


def test_an_added_field_may_be_the_clustering_key_when_there_is_none():
    schema = CollectionSchema.from_proto(_pb(), "c")
    f = added_field(schema, schema_pb2.FieldSchema(name="k", data_type=DataType.INT64, nullable=True,
                                                   is_clustering_key=True))
    assert f.is_clustering_key
    schema.fields.append(f)
    with pytest.raises(InvalidParameter, match="already has another clustering key field, field name: k2"):
        added_field(schema, schema_pb2.FieldSchema(name="k2", data_type=DataType.INT64, nullable=True,
                                                   is_clustering_key=True))
    with pytest.raises(InvalidParameter, match="clustering key field j has unsupported data type JSON"):
        added_field(schema, schema_pb2.FieldSchema(name="j", data_type=DataType.JSON, nullable=True,
                                                   is_clustering_key=True))


# --- clustering compaction and the query node ----------------------------------------------------
class _Ids:
    def __init__(self) -> None:
        self.next = 5000

    def allocate(self, count: int = 1) -> int:
        self.next += count
        return self.next - count


def _info(key_type: DataType, nullable: bool = False) -> CollectionInfo:
    schema = CollectionSchema("c", [
        FieldSchema("id", DataType.INT64, field_id=100, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2),
        FieldSchema("k", key_type, field_id=102, max_length=16, nullable=nullable, is_clustering_key=True)])
    return CollectionInfo(id=CID, db="default", name="c", schema=schema, shards_num=1, consistency_level=0,
                          created_ts=1, partitions=[PartitionInfo(0, "_default", 1), PartitionInfo(1, "p1", 1)])


class World:
    """One channel: its log, metadata and objects, a data node, query nodes fed every record, and the
    reference of every live row: id -> (key, vector)."""

    def __init__(self, key_type: DataType = DataType.INT64, nullable: bool = False, rows: int = 60):
        self.info = _info(key_type, nullable)
        self.key_type, self.nullable = key_type, nullable
        self.log, self.meta, self.objects = MemoryLog(), MemoryMetaStore(), MemoryObjectStore()
        self.dn = DataNode(self.log, self.meta, self.objects, _Ids(), truncate=False,
                           compaction=CompactionSettings(small_rows=1000, max_rows=10_000, clustering_rows=rows))
        self.meta.put(coll_key(CID), self.info.to_json())
        self.nodes: list[QueryNode] = []
        self.ref: dict[int, tuple] = {}
        self.ts = 10
        self.rng = np.random.default_rng(7)

    def key_of(self, n: int):
        return f"k{n:04d}" if self.key_type == DataType.VARCHAR else n

    def append(self, rec) -> None:
        pos = self.log.append(CH, encode(rec))
        for qn in self.nodes:
            qn.deliver(CH, pos, rec)

    def insert(self, ids, partition: int = 0) -> None:
        self.ts += 1
        ids = np.asarray(list(ids), np.int64)
        nums = self.rng.integers(0, 500, len(ids))
        keys = np.array([self.key_of(int(n)) for n in nums], dtype=object if self.key_type == DataType.VARCHAR
                        else np.int64)
        vecs = self.rng.random((len(ids), 2), dtype=np.float32)
        cols = {"id": ids, "v": vecs, "k": keys}
        valid = np.ones(len(ids), bool)
        if self.nullable:
            valid = self.rng.random(len(ids)) > 0.2
            cols["$valid.k"] = valid
        for i, pk in enumerate(ids.tolist()):
            self.ref[pk] = (keys[i] if valid[i] else None, tuple(vecs[i].tolist()), partition)
        self.append(InsertRecord(CID, partition, self.ts, len(ids), cols))

    def delete(self, ids) -> None:
        self.ts += 1
        for i in ids:
            self.ref.pop(i, None)
        self.append(DeleteRecord(CID, self.ts, np.asarray(list(ids), np.int64)))

    def flush(self) -> None:
        self.ts += 1
        pos = self.log.append(CH, encode(SealRecord(CID, self.ts)))
        for qn in self.nodes:
            qn.deliver(CH, pos, SealRecord(CID, self.ts))
        self.dn.persist(self.info, CH, pos)

    def node(self) -> QueryNode:
        qn = QueryNode(self.log, self.meta, self.objects)
        qn.load(self.info)
        self.nodes.append(qn)
        return qn

    def segments(self) -> list[dict]:
        return sf.list_segments(self.meta, CID, CH)

    def close(self) -> None:
        for qn in self.nodes:
            qn.close()
        self.dn.close()


def answers(w: World, qn: QueryNode, filters: list[str]) -> dict:
    """count, every live row, a search, and filtered queries, searches and counts."""
    info = w.info
    out: dict = {}

    def rows(flt):
        got = qn.query(info, READ_TS, flt, None, ["id", "k", "v"] + (["$valid.k"] if w.nullable else []), None, 0)
        valid = got.get("$valid.k")
        keys = [None if valid is not None and not valid[i] else k for i, k in enumerate(got["k"].tolist())]
        return sorted(zip(got["id"].tolist(), keys, [tuple(v) for v in got["v"].tolist()]))

    queries = np.asarray([[0.1, 0.2], [0.9, 0.4], [0.5, 0.5]], np.float32)
    for expr in ["", *filters]:
        flt = compile_filter(expr, info.schema) if expr else None
        spec = SearchSpec(field=info.schema.field("v"), queries=queries, limit=7, offset=0, metric="L2", params={},
                          ts=READ_TS, flt=flt)
        hits = qn.search(info, spec, None, ["k"])
        out[expr] = (qn.count(info, READ_TS, flt, None), rows(flt),
                     (hits.topks, hits.pks.tolist(), np.round(hits.scores, 5).tolist()))
    ref = sorted((pk, k, v) for pk, (k, v, _) in w.ref.items())
    assert out[""][1] == ref  # every live row, once
    return out


def apply_records(qn: QueryNode) -> None:
    keys = {k for k, _ in qn.meta.scan(qc.COMPACTED_PREFIX)}
    deadline = time.monotonic() + 10
    while not keys <= set(qn.compactions._records):
        assert time.monotonic() < deadline, "the node's watch did not see the records"
        time.sleep(0.02)
    assert qn.compactions.process() == 0


def _filters(w: World) -> list[str]:
    k = w.key_of
    q = (lambda n: f'"{k(n)}"') if w.key_type == DataType.VARCHAR else (lambda n: str(k(n)))
    out = [f"k == {q(250)}", f"k in [{q(3)}, {q(120)}, {q(499)}]", f"{q(100)} <= k < {q(140)}",
           f"k > {q(480)} or k < {q(10)}", f"k != {q(7)}", f"k >= {q(400)} and id % 2 == 0", f"not (k < {q(300)})"]
    if w.nullable:
        out += ["k is null", "k is not null and k <= " + q(50)]
    return out


@pytest.mark.parametrize("key_type,nullable", [(DataType.INT64, False), (DataType.VARCHAR, False),
                                               (DataType.INT32, True)], ids=["int64", "varchar", "nullable"])
def test_clustering_compaction_sorts_rows_into_key_ranges_and_keeps_every_answer(key_type, nullable):
    w = World(key_type, nullable)
    try:
        early = w.node()  # follows the log from the start
        for lo in range(0, 400, 100):
            w.insert(range(lo, lo + 100), partition=lo // 100 % 2)
            w.flush()
        late = w.node()  # loads the persisted segments
        w.delete(range(0, 400, 7))
        w.insert(range(50, 80))  # upserts
        w.flush()
        # after the checkpoint the compaction reads, in memory only: deletes, upserts, new rows
        w.delete(range(300, 320))
        w.insert(range(100, 110), partition=1)
        w.insert(range(400, 420))
        filters = _filters(w)
        before = {id(qn): answers(w, qn, filters) for qn in (early, late)}
        assert before[id(early)] == before[id(late)]
        sources = w.segments()

        plans = w.dn.compactor.compact_channel(w.info, CH, manual=True, clustering=True)
        assert [p.kind for p in plans] == ["cluster", "cluster"]  # one per partition
        segs = w.segments()
        assert {s["prefix"] for s in segs}.isdisjoint(s["prefix"] for s in sources)
        for pid in (0, 1):
            mine = [s for s in segs if s["partition_id"] == pid]
            assert len(mine) > 2 and all(s["num_rows"] <= 60 for s in mine)
            ranges = sorted((s["cluster"]["min"], s["cluster"]["max"]) for s in mine if s["cluster"]["min"] is not None)
            assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))  # ranges that do not overlap
            for s in mine:  # each segment's rows hold its range, sorted
                cols, _ = sf.read_segment(w.objects, s["prefix"], w.info.schema)
                keys = cols["k"] if not nullable else cols["k"][cols["$valid.k"]]
                assert list(keys) == sorted(keys)
                if len(keys):
                    assert (min(keys), max(keys)) == (s["cluster"]["min"], s["cluster"]["max"])
        (key, raw), = [(k, v) for k, v in w.meta.scan(f"compacted/{CID}/{CH}/") if json.loads(v)["from"]
                       == [s["prefix"] for s in sources if s["partition_id"] == 0]]
        record = json.loads(raw)
        assert [record["to"], *record["more"]] == [p.target["prefix"] for p in plans if p.partition_id == 0] + \
            [t["prefix"] for p in plans if p.partition_id == 0 for t in p.more]

        for qn in (early, late):
            apply_records(qn)
            held = sorted(s.prefix for s in qn._by_channel[CH].segments.values() if s.sealed and s.prefix)
            assert held == sorted(s["prefix"] for s in segs)
            assert answers(w, qn, filters) == before[id(qn)]
        fresh = w.node()
        assert answers(w, fresh, filters) == before[id(early)]

        # deletes and upserts of rows in the new segments go on working
        w.delete([111, 112, 205])
        w.insert([113, 206], partition=1)
        after = answers(w, early, filters)
        assert after == answers(w, late, filters) == answers(w, fresh, filters)
        w.flush()
        assert answers(w, w.node(), filters) == after

        # clustered already: nothing to do; a plain compaction leaves clustered segments alone
        segs = w.segments()
        w.dn.compactor.compact_channel(w.info, CH, manual=True)  # the new flush's segment, the dead rows
        assert [s for s in w.segments() if "cluster" in s and s["prefix"] in {x["prefix"] for x in segs}]
        assert all(len(json.loads(v)["from"]) == 1 for k, v in w.meta.scan(f"seg/{CID}/{CH}/")
                   if "cluster" in json.loads(v) and json.loads(v)["prefix"] not in {x["prefix"] for x in segs})
    finally:
        w.close()


def test_a_clustered_partition_is_left_alone_and_requests_carry_the_kind():
    w = World(DataType.INT64, rows=40)
    try:
        w.insert(range(100))
        w.flush()
        w.insert(range(100, 200))
        w.flush()
        request_compaction(w.meta, 77, w.info, clustering=True)
        assert json.loads(w.meta.get(f"compaction/{CID}/77"))["clustering"] is True
        w.dn.compactor.carry_out(CID, 77)
        req = compaction_state(w.meta, 77)
        assert req is not None and req["channels"][CH]["state"] == "completed"
        plans = req["channels"][CH]["plans"]  # one entry per new segment, all from both sources
        assert len(plans) == len(w.segments()) == 5 and all(len(p["sources"]) == 2 for p in plans)
        assert {p["target"] for p in plans} == {s["segment_id"] for s in w.segments()}
        assert w.dn.compactor.compact_channel(w.info, CH, manual=True, clustering=True) == []
        request_compaction(w.meta, 78, w.info)  # a plain one: no "clustering" key in its record
        assert "clustering" not in json.loads(w.meta.get(f"compaction/{CID}/78"))
    finally:
        w.close()


# --- a channel spread over a replica's query nodes (vecdb.coord.assignment) --------------------------------
def _picture(w: World, names: list[str], current: dict | None = None) -> Replica:
    """The coord's picture of the replica: the channel's owner and the node each persisted segment of the
    channel is placed on (``plan`` with ``spread_min_rows`` 0, as the e2e cluster runs)."""
    sealed = {CID: {CH: {s["prefix"]: s["num_rows"] for s in w.segments()}}}
    a = plan({CID: ([CH], 1)}, names, current or {}, {}, sealed=sealed, spread_min_rows=0)[CID]
    (r,) = a.replicas
    assert sorted(r.segments[CH]) == sorted(s["prefix"] for s in w.segments())  # every segment placed
    return r


def _follow(nodes: dict[str, QueryNode], r: Replica) -> None:
    """What each node's assignment follower does once the others report (vecdb.querynode.assigned): hold in
    full the segments placed on it, let the others go (stubs)."""
    for name, qn in nodes.items():
        mine = {p for p, n in r.segments[CH].items() if n == name}
        full = qn.full_segments()[CID][CH]
        qn.promote(CID, CH, [p for p in qn.sealed_prefixes(CH) if p in mine and p not in full])
        qn.demote(CID, CH, [p for p in full if p not in mine])


def _replica_reads(w: World, nodes: dict[str, QueryNode], r: Replica, expr: str = "") -> tuple[int, list]:
    """count and every row, read as a proxy does: the leader everything but the segments placed elsewhere,
    each other node the segments placed on it (``CollectionNotLoaded`` where a node does not hold its part)."""
    flt = compile_filter(expr, w.info.schema) if expr else None
    placed = r.segments[CH]
    n, rows = 0, []
    for name, qn in nodes.items():
        mine = frozenset(p for p, node in placed.items() if node == name)
        if name == r.channels[CH]:
            scope = ReadScope(True, frozenset(placed) - mine)
        elif mine:
            scope = ReadScope(False, mine)
        else:
            continue
        got = qn.query(w.info, READ_TS, flt, None, ["id", "k", "v"], None, 0, scopes={CH: scope})
        n += qn.count(w.info, READ_TS, flt, None, scopes={CH: scope})
        rows += zip(got["id"].tolist(), got["k"].tolist(), [tuple(v) for v in got["v"].tolist()])
    return n, sorted(rows)


def _reference(w: World, keep=lambda k: True) -> tuple[int, list]:
    rows = sorted((pk, k, v) for pk, (k, v, _) in w.ref.items() if keep(k))
    return len(rows), rows


def test_a_clustering_compaction_of_a_channel_spread_over_three_query_nodes():
    """The sources of one clustering plan are held in full by different nodes, the others keeping stubs.
    Once the compaction commits, each node's assignment follower promotes or demotes sources (the coord
    no longer places them) while its compaction follower prepares the swap: the swap must take the
    sources as they are now (the same rows, in full or as stubs), else the node keeps them and never
    holds the new segments the coord places on it."""
    w = World(DataType.INT64, rows=40)
    try:
        names = ["a", "b", "c"]
        nodes = {"a": w.node()}  # the channel's leader: it seals the segments itself, from the log
        for lo in range(0, 400, 100):
            w.insert(range(lo, lo + 100), partition=lo // 100 % 2)
            w.flush()
        w.delete(range(0, 400, 7))
        w.insert(range(50, 80))  # upserts
        w.flush()
        r = _picture(w, names)
        assert r.channels[CH] == "a"
        for name in names[1:]:  # the others hold the channel's sealed segments placed on them only
            qn = nodes[name] = QueryNode(w.log, w.meta, w.objects)
            qn.load(w.info, [CH], leader=False, full=lambda ch, p, name=name: r.segments[CH][p] == name)
            w.nodes.append(qn)
        _follow(nodes, r)
        sources = w.segments()
        for pid in (0, 1):  # each plan's sources are spread over several nodes
            assert len({r.segments[CH][s["prefix"]] for s in sources if s["partition_id"] == pid}) > 1
        # in memory only (after the checkpoint the compaction reads): deletes, upserts, new rows
        w.delete(range(300, 320))
        w.insert(range(100, 110), partition=1)
        w.insert(range(400, 420))
        assert _replica_reads(w, nodes, r) == _reference(w)

        def racing(qn: QueryNode, prepare):
            def run(shard, rec, held):
                out = prepare(shard, rec, held)
                if shard.leader:  # it takes back in full the sources the others served
                    qn.promote(CID, CH, [s.prefix for s in held if s.stub])
                else:  # it lets its sources go
                    qn.demote(CID, CH, [s.prefix for s in held if not s.stub])
                return out
            return run

        for qn in nodes.values():
            qn.compactions._prepare = racing(qn, qn.compactions._prepare)  # type: ignore[method-assign]
        plans = w.dn.compactor.compact_channel(w.info, CH, manual=True, clustering=True)
        assert len(plans) == 2 and all(p.more for p in plans)  # several new segments per partition
        targets = w.segments()
        for qn in nodes.values():
            apply_records(qn)
            shard = qn._by_channel[CH]
            held = {s.prefix: s.segment_id for s in shard.segments.values() if s.sealed}
            assert held == {s["prefix"]: s["segment_id"] for s in targets}  # no source left, every target

        r = _picture(w, names, {CID: Assignment(CID, [r])})
        assert {r.segments[CH][s["prefix"]] for s in targets} == set(names)
        _follow(nodes, r)
        for name, qn in nodes.items():  # each serves exactly the new segments placed on it
            assert qn.full_segments()[CID][CH] == sorted(p for p, n in r.segments[CH].items() if n == name)
        assert _replica_reads(w, nodes, r) == _reference(w)
        assert _replica_reads(w, nodes, r, "k < 250") == _reference(w, lambda k: k < 250)
        w.delete([111, 112, 205])  # rows of the new segments, wherever they are served
        w.insert([113, 206, 401], partition=1)
        assert _replica_reads(w, nodes, r) == _reference(w)
    finally:
        w.close()


# --- pruning ----------------------------------------------------------------------------------------
def _schema(key_type: DataType) -> CollectionSchema:
    return CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                  FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
                                  FieldSchema("k", key_type, max_length=16, is_clustering_key=True),
                                  FieldSchema("x", DataType.INT64)])


@pytest.mark.parametrize("expr,lo,hi,may", [
    ("k == 5", 6, 9, False), ("k == 6", 6, 9, True), ("k == 9", 6, 9, True), ("k == 10", 6, 9, False),
    ("k < 6", 6, 9, False), ("k <= 6", 6, 9, True), ("k > 9", 6, 9, False), ("k >= 9", 6, 9, True),
    ("5 < k < 6", 6, 9, False), ("5 < k <= 6", 6, 9, True), ("k in [1, 2, 10]", 6, 9, False),
    ("k in [1, 7]", 6, 9, True), ("k not in [6, 7, 8, 9]", 6, 9, True), ("k != 6", 6, 6, False),
    ("k != 6", 6, 7, True), ("k == 5 or k == 20", 6, 9, False), ("k == 5 or x == 1", 6, 9, True),
    ("k == 5 and x == 1", 6, 9, False), ("not (k == 7)", 6, 9, True), ("x > 3", 6, 9, True),
    ("k == 6.5", 6, 9, True), ("k > 9.5", 6, 9, False), ("k + 1 == 5", 6, 9, True),
])
def test_may_match_says_no_only_when_no_value_of_the_range_passes(expr, lo, hi, may):
    flt = compile_filter(expr, _schema(DataType.INT64))
    assert flt.may_match("k", np.array([lo, hi], np.int64)) is may


def test_may_match_on_varchar_and_float32_ranges():
    flt = compile_filter('k == "b" or k in ["zz"]', _schema(DataType.VARCHAR))
    assert flt.may_match("k", np.array(["c", "y"], object)) is False
    assert flt.may_match("k", np.array(["a", "c"], object)) is True
    f32 = compile_filter("k == 0.1", _schema(DataType.FLOAT))
    assert f32.may_match("k", np.array([0.1, 0.1], np.float32)) is True  # compared as the scan compares


@pytest.mark.parametrize("key_type", [DataType.INT64, DataType.FLOAT, DataType.VARCHAR])
def test_may_match_never_prunes_a_segment_with_a_matching_row(key_type):
    """Random segments and filters: where may_match says no, the scan finds no row either."""
    rng = np.random.default_rng(11)
    schema = _schema(key_type)
    pruned = 0
    for _ in range(300):
        n = int(rng.integers(1, 6))
        nums = rng.integers(0, 30, n)
        if key_type == DataType.VARCHAR:
            keys, lit = np.array([f"s{v:02d}" for v in nums], object), (lambda v: f'"s{v:02d}"')
        elif key_type == DataType.FLOAT:
            keys, lit = (nums / 2).astype(np.float32), (lambda v: str(v / 2))
        else:
            keys, lit = nums.astype(np.int64), str
        a, b = (int(v) for v in rng.integers(0, 30, 2))
        expr = str(rng.choice([f"k == {lit(a)}", f"k < {lit(a)}", f"k >= {lit(a)}", f"k != {lit(a)}",
                               f"k in [{lit(a)}, {lit(b)}]", f"{lit(min(a, b))} <= k <= {lit(max(a, b))}",
                               f"k == {lit(a)} or k > {lit(b)}", f"k > {lit(a)} and x < 3"]))
        flt = compile_filter(expr, schema)
        cols = {"k": keys, "x": np.zeros(n, np.int64)}
        bounds = np.array([min(keys), max(keys)], dtype=keys.dtype)
        if not flt.may_match("k", bounds):
            pruned += 1
            assert not flt.evaluate(cols, n).any(), (expr, keys)
    assert pruned > 30


def test_a_read_skips_segments_outside_the_range():
    w = World(DataType.INT64, rows=50)
    try:
        w.insert(range(300))
        w.flush()
        w.dn.compactor.compact_channel(w.info, CH, manual=True, clustering=True)
        qn = w.node()
        segs = [s for s in qn._by_channel[CH].segments.values() if s.sealed]
        assert len(segs) == 6
        flt = compile_filter("k == 250", w.info.schema)
        skipped = [s for s in segs if executor.pruned(SegmentView(s, s.n), flt)]
        holding = [s for s in segs if (s.column("k") == 250).any()]
        assert len(skipped) >= len(segs) - 2 and not set(map(id, holding)) & set(map(id, skipped))
        want = sorted(pk for pk, (k, _, _) in w.ref.items() if k == 250)
        got = qn.query(w.info, READ_TS, flt, None, ["id"], None, 0)
        assert sorted(got["id"].tolist()) == want
    finally:
        w.close()


def test_expired_rows_go_and_the_rest_reads_the_same_with_a_ttl():
    from vecdb.catalog_model import TTL_PROPERTY
    from vecdb.timestamp import compose, now_ms

    w = World(DataType.INT64, rows=30)
    w.info.properties[TTL_PROPERTY] = "3600"
    w.meta.put(coll_key(CID), w.info.to_json())
    try:
        qn = w.node()
        w.ts = compose(now_ms() - 7200_000)  # two hours ago: expired
        w.insert(range(0, 50))
        w.flush()
        w.ts = compose(now_ms())
        w.insert(range(50, 150))
        w.delete(range(50, 60))
        w.flush()
        for i in range(50):
            w.ref.pop(i)
        at = compose(now_ms() + 60_000)

        def seen(node):
            got = node.query(w.info, at, compile_filter("k < 250", w.info.schema), None, ["id", "k"], None, 0)
            return node.count(w.info, at, None, None), sorted(zip(got["id"].tolist(), got["k"].tolist()))

        before = seen(qn)
        assert before[0] == 90
        w.dn.compactor.compact_channel(w.info, CH, manual=True, clustering=True)
        assert sum(s["num_rows"] for s in w.segments()) == 90 and len(w.segments()) == 3  # expired and deleted gone
        apply_records(qn)
        assert seen(qn) == before == seen(w.node())
    finally:
        w.close()


def test_cdc_creates_the_target_collection_with_the_clustering_key():
    from vecdb.cdc.target import field_kwargs

    assert field_kwargs(FieldSchema("k", DataType.INT64, is_clustering_key=True))["is_clustering_key"] is True
    assert "is_clustering_key" not in field_kwargs(FieldSchema("k", DataType.INT64))

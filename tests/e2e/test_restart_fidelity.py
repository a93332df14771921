"""Restart fidelity: everything a pymilvus client can read is the same after a restart as before it.

A rich state is built through the unmodified client (MilvusClient and the ORM): databases with
properties, collections of every field type (nullable, defaults, dynamic field, partition and clustering
keys, ARRAY of each element type, JSON, sparse, float16 / bfloat16 / binary / int8 vectors, struct
arrays, geometry, timestamptz, a BM25 function with analyzer params, fields added, a field dropped and
added again under its name, a function field added), collection, field and index properties, aliases
(altered, dropped), renamed collections (one into another database), partitions (one dropped and made
again), scalar and vector indexes, loaded / partly loaded / released collections, deletes, upserts,
truncation, compaction, a bulk import, a snapshot restored, users / roles / grants / privilege groups,
resource groups. Then every read a client has (describe_*, list_*, stats, load states, index progress,
query contents, searches on each vector field, filters through the scalar indexes, jobs, grants, what
each user may do) is captured as normalized JSON, and must be equal after a kill -9 and after a clean
stop, on a standalone server and on a cluster of processes (every role restarted). What legitimately
changes is left out: which query node serves a shard or segment. Ids handed out after a restart are
above every one handed out before it.

The bug this found: a row written before ``drop_collection_field`` and still in the log (growing) read
the dropped field's value under a field later added with the same name, once the log was replayed (a
restart) or persisted (a flush).
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
from pymilvus import (
    BulkInsertState,
    Collection,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    Role,
    connections,
    utility,
)
from pymilvus.client.types import ResourceGroupConfig

from tests.conftest import RoleProcesses, free_port, start_vecdb, wait_ready

DIM = 8
ROOT = "root:Milvus"
ELEMS = [DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
         DataType.DOUBLE, DataType.VARCHAR]
WORDS = ["apple", "banana", "the", "cherry", "Date", "elder", "fig"]


def _vec(i: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(i).random(dim, dtype=np.float32)


def _bf16(v) -> bytes:
    return (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def _wait(fn, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not fn():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _compacted(c: MilvusClient, job: int) -> int:
    _wait(lambda: c.get_compaction_state(job) == "Completed", f"compaction {job} not completed")
    return job


# --- the state -----------------------------------------------------------------------------------
def _every_type(c: MilvusClient, info: dict) -> None:
    s = MilvusClient.create_schema(enable_dynamic_field=True, description="every type")
    s.add_field("id", DataType.INT64, is_primary=True, description="the pk")
    for name, dt in (("b", DataType.BOOL), ("i8", DataType.INT8), ("i16", DataType.INT16), ("i32", DataType.INT32),
                     ("i64", DataType.INT64), ("f", DataType.FLOAT), ("d", DataType.DOUBLE), ("j", DataType.JSON)):
        s.add_field(name, dt)
    s.add_field("s", DataType.VARCHAR, max_length=32)
    for et in ELEMS:
        s.add_field(f"a_{et.name.lower()}", DataType.ARRAY, element_type=et, max_capacity=4,
                    **({"max_length": 8} if et == DataType.VARCHAR else {}))
    s.add_field("n_i", DataType.INT32, nullable=True)
    s.add_field("n_s", DataType.VARCHAR, max_length=16, nullable=True, default_value="dflt")
    s.add_field("df_f", DataType.FLOAT, default_value=1.5)
    s.add_field("n_j", DataType.JSON, nullable=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM, description="float vec")
    s.add_field("f16", DataType.FLOAT16_VECTOR, dim=DIM)
    s.add_field("bf16", DataType.BFLOAT16_VECTOR, dim=DIM)
    s.add_field("bin", DataType.BINARY_VECTOR, dim=16)
    s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_hnsw",
                  params={"M": 8, "efConstruction": 32})
    idx.add_index("f16", index_type="IVF_FLAT", metric_type="IP", params={"nlist": 4})
    idx.add_index("bf16", index_type="FLAT", metric_type="COSINE")
    idx.add_index("bin", index_type="BIN_IVF_FLAT", metric_type="HAMMING", params={"nlist": 2})
    idx.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="IP", params={"drop_ratio_build": 0.1})
    idx.add_index("s", index_type="INVERTED", index_name="s_inv")
    idx.add_index("i64", index_type="STL_SORT")
    idx.add_index("i8", index_type="BITMAP")
    idx.add_index("j", index_type="INVERTED", index_name="j_k",
                  params={"json_cast_type": "double", "json_path": "j['k']"})
    idx.add_index("a_int64", index_type="INVERTED")
    idx.add_index("n_s", index_type="NGRAM", params={"min_gram": 1, "max_gram": 2})
    c.create_collection("every_type", schema=s, index_params=idx, num_shards=2, consistency_level="Bounded",
                        properties={"collection.ttl.seconds": 86400 * 365})
    c.release_collection("every_type")
    c.alter_collection_properties("every_type", {"mmap.enabled": True, "custom.prop": "abc", "drop.me": "1"})
    c.drop_collection_properties("every_type", ["drop.me"])
    c.alter_index_properties("every_type", "vec_hnsw", {"mmap.enabled": True})
    c.create_partition("every_type", "p1")
    c.create_partition("every_type", "p2")

    def row(i: int, val: int = 0) -> dict:
        r = {"id": i, "b": i % 3 == 0, "i8": i % 128, "i16": i * 3, "i32": i * 1000, "i64": i * 10**12 + val,
             "f": i / 8, "d": i / 7, "s": f"str{i}-{val}", "j": {"k": i, "t": [i, "x"], "v": val},
             "n_i": None if i % 4 == 0 else i, "n_j": None if i % 5 == 0 else {"q": i},
             "vec": _vec(i + val * 7919).tolist(), "f16": _vec(i + 1).astype(np.float16), "bf16": _bf16(_vec(i + 2)),
             "bin": bytes([i % 256, (i * 7) % 256]), "sp": {i % 50: 1.0 + i, 100 + i % 7: 0.5}, "dyn_k": i * 2}
        arrays = ([i % 2 == 0, True], [i % 100, -1], [i, 300], [i * 1000], [i * 10**10, 1], [i / 4], [i / 3, 0.5],
                  [f"s{i}"])
        r.update({f"a_{et.name.lower()}": v for et, v in zip(ELEMS, arrays)})
        if i % 3:
            r["n_s"] = f"ns{i}"
        if i % 2 == 0:
            r["df_f"] = float(i)
        return r

    c.insert("every_type", [row(i) for i in range(200)])
    c.insert("every_type", [row(i) for i in range(200, 260)], partition_name="p1")
    c.insert("every_type", [row(i) for i in range(260, 290)], partition_name="p2")
    c.flush("every_type")
    c.delete("every_type", ids=list(range(0, 20)))
    c.upsert("every_type", [row(i, 1) for i in range(20, 40)])
    c.flush("every_type")
    info["compaction"] = _compacted(c, c.compact("every_type"))
    c.add_collection_field("every_type", "added", DataType.INT64, nullable=True, default_value=7)
    c.insert("every_type", [{**row(i, 2), "added": i} for i in range(290, 300)])  # growing from here on
    c.delete("every_type", filter="id in [41, 42, 43]")
    c.upsert("every_type", [row(i, 3) for i in range(44, 48)])
    c.alter_collection_field("every_type", "s", {"max_length": 64})
    c.drop_index("every_type", "i8")
    idx = c.prepare_index_params()
    idx.add_index("i8", index_type="INVERTED", index_name="i8_inv")
    c.create_index("every_type", idx)
    c.load_collection("every_type")
    c.release_partitions("every_type", ["p2"])


def _newer_types(c: MilvusClient, info: dict) -> None:
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("i8v", DataType.INT8_VECTOR, dim=DIM)
    s.add_field("geo", DataType.GEOMETRY, nullable=True)
    s.add_field("tsz", DataType.TIMESTAMPTZ, nullable=True)
    st = c.create_struct_field_schema()
    st.add_field("txt", DataType.VARCHAR, max_length=16)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=3)
    idx = c.prepare_index_params()
    idx.add_index("i8v", index_type="HNSW", metric_type="L2", params={"M": 4, "efConstruction": 16})
    idx.add_index("chunks[emb]", index_type="HNSW", metric_type="MAX_SIM_COSINE", params={"M": 4, "efConstruction": 16})
    idx.add_index("geo", index_type="RTREE")
    c.create_collection("newer_types", schema=s, index_params=idx, properties={"timezone": "Asia/Shanghai"})
    c.insert("newer_types", [{"id": i, "i8v": (np.arange(DIM) * (i % 5) - 7).astype(np.int8),
                              "geo": None if i % 3 == 0 else f"POINT ({i} {i + 1})",
                              "tsz": None if i % 4 == 0 else f"2024-01-0{1 + i % 9}T10:00:00+02:00",
                              "chunks": [{"txt": f"c{i}_{k}", "emb": _vec(i * 10 + k, 4).tolist()}
                                         for k in range(1 + i % 3)]}
                             for i in range(25)])
    c.flush("newer_types")
    c.add_collection_field("newer_types", "late", DataType.VARCHAR, max_length=8, nullable=True, default_value="zz")
    c.insert("newer_types", [{"id": 100, "i8v": np.ones(DIM, np.int8), "chunks": [], "late": "yy"}])


def _text(c: MilvusClient, info: dict) -> None:
    s = MilvusClient.create_schema(description="bm25 docs")
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=16)
    s.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True, enable_match=True, analyzer_params={
        "tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": ["the"]}]})
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    s.add_function(Function("bm25fn", function_type=FunctionType.BM25, input_field_names=["text"],
                            output_field_names=["sparse"], description="bm25 it"))
    idx = c.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                  params={"bm25_k1": 1.5, "bm25_b": 0.6, "inverted_index_algo": "DAAT_MAXSCORE"})
    idx.add_index("dense", index_type="IVF_SQ8", metric_type="L2", params={"nlist": 2})
    c.create_collection("docs", schema=s, index_params=idx)
    c.insert("docs", [{"pk": f"d{i}", "text": " ".join(WORDS[(i + k) % 7] for k in range(i % 5 + 1)),
                       "dense": _vec(i, 4).tolist()} for i in range(40)])
    c.flush("docs")
    c.insert("docs", [{"pk": f"g{i}", "text": f"apple fig {i}", "dense": _vec(100 + i, 4).tolist()} for i in range(5)])
    c.delete("docs", ids=["d3", "g1"])
    c.release_collection("docs")
    c.alter_collection_field("docs", "dense", {"mmap.enabled": True})
    c.alter_index_properties("docs", "dense", {"mmap.enabled": True})
    c.drop_index_properties("docs", "dense", ["mmap.enabled"])
    c.load_collection("docs")


def _keyed(c: MilvusClient, info: dict) -> None:
    """Partition key + clustering key, clustering-compacted, released."""
    s = MilvusClient.create_schema(partition_key_field="tenant", description="pk+ck")
    s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    s.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    s.add_field("ck", DataType.INT64, is_clustering_key=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="IVF_PQ", metric_type="L2", params={"nlist": 4, "m": 2, "nbits": 8})
    idx.add_index("ck", index_type="INVERTED")
    c.create_collection("keyed", schema=s, index_params=idx, num_partitions=5,
                        properties={"partitionkey.isolation": True})
    c.insert("keyed", [{"tenant": f"t{i % 6}", "ck": i % 11, "vec": _vec(1000 + i).tolist()} for i in range(120)])
    c.flush("keyed")
    c.release_collection("keyed")
    info["clustering"] = _compacted(c, c.compact("keyed", is_clustering=True))


def _schema_changes(c: MilvusClient, info: dict) -> None:
    """A field dropped with sealed and growing rows, added again under its name (a new field id): the rows
    written before read null there, through the log's replay too; a function field added; another dropped."""
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("text", DataType.VARCHAR, max_length=64, enable_analyzer=True)
    s.add_field("score", DataType.INT64)
    s.add_field("tmp", DataType.VARCHAR, max_length=8)
    idx = c.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    idx.add_index("score", index_type="STL_SORT")
    c.create_collection("schema_ops", schema=s, index_params=idx)
    w = WORDS
    c.insert("schema_ops", [{"id": i, "v": [i % 7, i % 5], "text": f"{w[i % 7]} {w[i * 3 % 7]}", "score": i, "tmp": "t"}
                            for i in range(20)])
    c.flush("schema_ops")
    c.insert("schema_ops", [{"id": i, "v": [i % 7, i % 5], "text": w[i % 7], "score": i, "tmp": "g"}
                            for i in range(20, 30)])  # growing: in the log only
    c.drop_collection_field("schema_ops", field_name="score")
    c.add_collection_field("schema_ops", "score", DataType.INT64, nullable=True)
    c.insert("schema_ops", [{"id": i, "v": [1, 1], "text": "elder", "score": -i, "tmp": "n"} for i in range(30, 33)])
    bm25 = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                    output_field_names=["sparse"])
    sidx = c.prepare_index_params()
    sidx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    c.add_function_field("schema_ops", MilvusClient.create_field_schema("sparse", DataType.SPARSE_FLOAT_VECTOR), bm25,
                         sidx)
    c.drop_collection_field("schema_ops", field_name="tmp")
    c.insert("schema_ops", [{"id": i, "v": [2, 2], "text": "date elder", "score": i} for i in range(33, 36)])


def _renames(c: MilvusClient, info: dict) -> None:
    """Databases with properties (one dropped), a renamed collection with a partition dropped and made again
    right after writes to it, one renamed into another database, aliases made, altered and dropped."""
    c.create_database("db_a", properties={"database.max.collections": 20, "custom.k": "v1"})
    c.create_database("db_b", properties={"timezone": "America/New_York"})
    c.alter_database_properties("db_b", {"database.replica.number": 1, "x.y": "z", "gone": "1"})
    c.drop_database_properties("db_b", ["gone"])
    c.create_database("db_tmp")
    c.drop_database("db_tmp")
    c.create_collection("old_name", dimension=DIM, metric_type="IP", auto_id=False, description="renamed")
    c.insert("old_name", [{"id": i, "vector": _vec(i).tolist(), "extra": i} for i in range(30)])
    c.rename_collection("old_name", "renamed")
    c.create_partition("renamed", "gone")
    c.insert("renamed", [{"id": 1000 + i, "vector": _vec(i).tolist()} for i in range(5)], partition_name="gone")
    c.release_partitions("renamed", ["gone"])
    c.drop_partition("renamed", "gone")  # a query node may read those rows from the log after this
    c.create_partition("renamed", "gone")
    c.delete("renamed", filter="id < 3")
    c.insert("renamed", [{"id": 1, "vector": _vec(1).tolist(), "extra": -1}])  # a deleted key again
    c.create_collection("moved", dimension=4, auto_id=False, description="moved to db_b")
    c.insert("moved", [{"id": i, "vector": _vec(i, 4).tolist()} for i in range(6)])
    c.flush("moved")
    c.rename_collection("moved", "moved_b", target_db="db_b")
    c.create_alias("renamed", "al_a")
    c.create_alias("renamed", "al_c")
    c.drop_alias("al_c")
    c.use_database("db_b")
    c.create_alias("moved_b", "al_b")
    c.use_database("db_a")
    c.create_collection("in_db", dimension=4, auto_id=False, properties={"collection.ttl.seconds": 1000000})
    c.insert("in_db", [{"id": i, "vector": _vec(i, 4).tolist(), "x": f"v{i}"} for i in range(12)])
    c.create_alias("in_db", "db_alias")
    c.use_database("default")


def _drops(c: MilvusClient, info: dict) -> None:
    """A collection dropped and made again under its name, a truncation, a partly loaded collection, an
    unindexed one, an alias moved."""
    c.create_collection("recreated", dimension=4, auto_id=False)
    c.insert("recreated", [{"id": i, "vector": _vec(i, 4).tolist(), "old": True} for i in range(10)])
    c.flush("recreated")
    c.insert("recreated", [{"id": i, "vector": _vec(i, 4).tolist(), "old": True} for i in range(10, 15)])
    c.drop_collection("recreated")
    c.create_collection("recreated", dimension=4, auto_id=False, metric_type="L2")
    c.insert("recreated", [{"id": i, "vector": _vec(100 + i, 4).tolist(), "new": True} for i in range(5, 8)])
    c.create_collection("trunc", dimension=4, auto_id=False)
    c.insert("trunc", [{"id": i, "vector": _vec(i, 4).tolist()} for i in range(20)])
    c.flush("trunc")
    c.insert("trunc", [{"id": i, "vector": _vec(i, 4).tolist()} for i in range(20, 30)])
    c.truncate_collection("trunc")
    c.insert("trunc", [{"id": i, "vector": _vec(i, 4).tolist()} for i in range(25, 28)])
    c.create_alias("trunc", "al_t")
    c.alter_alias("recreated", "al_t")
    c.create_collection("partial", dimension=DIM, auto_id=False)
    c.release_collection("partial")
    for p in ("pa", "pb"):
        c.create_partition("partial", p)
    c.insert("partial", [{"id": i, "vector": _vec(i).tolist()} for i in range(10)], partition_name="pa")
    c.insert("partial", [{"id": i, "vector": _vec(i).tolist()} for i in range(10, 20)], partition_name="pb")
    c.load_partitions("partial", ["pa"])
    s = MilvusClient.create_schema()
    s.add_field("k", DataType.VARCHAR, is_primary=True, max_length=10)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    c.create_collection("no_index", schema=s)
    c.insert("no_index", [{"k": f"k{i}", "v": _vec(i, 4).tolist()} for i in range(7)])


def _jobs(c: MilvusClient, info: dict) -> None:
    """A bulk import that completes and one that fails, a snapshot restored into a new collection."""
    uri, put = info.pop("uri"), info.pop("put")
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("tag", DataType.VARCHAR, max_length=16)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection("imported", schema=s, index_params=idx)
    put("imp/a.json", json.dumps({"rows": [{"id": i, "vec": _vec(5000 + i).tolist(), "tag": f"t{i % 3}", "extra": i}
                                           for i in range(50)]}).encode())
    put("imp/bad.json", b"{not json")
    connections.connect("rf_build", uri=uri, token=ROOT)
    try:
        info["imports"] = [utility.do_bulk_insert("imported", files=[f], using="rf_build")
                           for f in ("imp/a.json", "imp/bad.json")]
        for job in info["imports"]:
            _wait(lambda j=job: utility.get_bulk_insert_state(j, using="rf_build").state in (
                BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed), f"import {job} not done")
    finally:
        connections.disconnect("rf_build")
    c.create_snapshot("snap1", "renamed", description="a snapshot")
    info["restore"] = c.restore_snapshot("snap1", source_collection_name="renamed", target_collection_name="restored")
    _wait(lambda: c.get_restore_snapshot_state(info["restore"]).state in (
        "RestoreSnapshotCompleted", "RestoreSnapshotFailed"), "restore not done")


def _security(c: MilvusClient, info: dict) -> None:
    c.create_user("alice", "password1")
    c.create_user("bob", "password2")
    c.update_password("bob", "password2", "password3")
    c.update_user("alice", "the reader")
    c.create_user("carol", "password4")
    c.drop_user("carol")
    c.create_role("reader")
    c.create_role("writer")
    c.alter_role("writer", "writes things")
    c.create_privilege_group("pg_read")
    c.add_privileges_to_group("pg_read", ["Query", "Search", "Load"])
    c.remove_privileges_from_group("pg_read", ["Load"])
    c.grant_privilege("reader", "Collection", "Search", "renamed")
    c.grant_privilege("reader", "Global", "DescribeCollection", "*")
    c.revoke_privilege("reader", "Global", "DescribeCollection", "*")
    c.grant_privilege_v2("writer", "Insert", "renamed", db_name="default")
    c.grant_privilege_v2("writer", "pg_read", "*", db_name="db_a")
    c.grant_privilege_v2("writer", "CollectionReadOnly", "in_db", db_name="db_a")
    c.grant_role("alice", "reader")
    c.grant_role("alice", "writer")
    c.grant_role("bob", "writer")
    c.create_resource_group("rg1")
    c.update_resource_groups({"rg1": ResourceGroupConfig(requests={"node_num": 0}, limits={"node_num": 2})})
    c.create_resource_group("rg2")
    c.drop_resource_group("rg2")
    c.alter_database_properties("db_b", {"database.force.deny.writing": True})


def build(uri: str, put, steps) -> dict:
    """The state of ``steps``; returns the ids of its jobs. ``put(key, bytes)``: into the object store."""
    c = MilvusClient(uri=uri, token=ROOT)
    info: dict = {"uri": uri, "put": put}  # for _jobs
    try:
        for step in steps:
            step(c, info)
    finally:
        c.close()
    return info


# --- what a client reads ------------------------------------------------------------------------------
# which query node serves a shard or a segment (and which node a resource group got) may change on a restart
_PLACEMENT = re.compile(r"node_ids=\[[^\]]*\]|<shard_leader:-?\d+>|<shard_nodes:\{[^}]*\}>|<group_nodes:\([^)]*\)>"
                        r"|<nodes:\([^)]*\)>")


def _norm(x):
    if hasattr(x, "items") and not isinstance(x, dict):
        x = dict(x.items())
    if isinstance(x, dict):
        return {str(k): _norm(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, list | tuple):
        return [_norm(v) for v in x]
    if isinstance(x, bytes | bytearray):
        return bytes(x).hex()
    if isinstance(x, np.ndarray | np.generic):
        return _norm(x.tolist())
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, str):
        return _PLACEMENT.sub("", x)
    if isinstance(x, bool | int) or x is None:
        return x
    if hasattr(x, "num_loaded_replica"):  # a resource group (its maps print in any order)
        return _norm({k: getattr(x, k) for k in ("name", "capacity", "num_loaded_replica", "num_outgoing_node",
                                                 "num_incoming_node")} | {"config": str(x.config)})
    return _PLACEMENT.sub("", str(x))


def _read(fn, *args, **kwargs):
    """``fn``'s answer normalized, or its error (code and message): both are what the client reads."""
    try:
        return _norm(fn(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - an error is a reading too
        code = getattr(e, "code", None)
        return {"error": str(code() if callable(code) else code), "message": str(getattr(e, "message", e))[:200]}


_VECTORS = {DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR, DataType.BINARY_VECTOR,
            DataType.SPARSE_FLOAT_VECTOR, DataType.INT8_VECTOR}


def _query_vector(field: dict, bm25: bool):
    if bm25:
        return "apple cherry fig"
    v = _vec(424242, field.get("params", {}).get("dim") or 4)
    return {DataType.FLOAT16_VECTOR: lambda: v.astype(np.float16), DataType.BFLOAT16_VECTOR: lambda: _bf16(v),
            DataType.BINARY_VECTOR: lambda: bytes([3, 250]), DataType.SPARSE_FLOAT_VECTOR: lambda: {1: 1.0, 101: 0.5},
            DataType.INT8_VECTOR: lambda: (v * 100).astype(np.int8)}.get(field["type"], v.tolist)()


FILTERS = {"every_type": ["j['k'] > 100", "array_contains(a_int64, 1)", "n_s like '%s1%'", "i8 in [1, 2, 3]",
                          "s == 'str50-0'", "i64 > 100000000000000", "added == 7", "n_i is null"],
           "newer_types": ["ST_WITHIN(geo, 'POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))')", "late == 'zz'"],
           "docs": ["TEXT_MATCH(text, 'apple')"], "schema_ops": ["score is null", "TEXT_MATCH(text, 'elder')"]}


def _collection(c: MilvusClient, orm: str, name: str) -> dict:
    desc = c.describe_collection(name)
    pk = next(f["name"] for f in desc["fields"] if f.get("is_primary"))
    indexes = sorted(c.list_indexes(name))
    out = {"describe": _norm(desc), "load": _read(c.get_load_state, name), "stats": _read(c.get_collection_stats, name),
           "indexes": {i: _read(c.describe_index, name, i) for i in indexes}, "aliases": _read(c.list_aliases, name),
           "segments": _read(lambda: sorted(str(s) for s in c.list_persistent_segments(name))),
           "compactions": _read(lambda: str(c.list_compaction_tasks(name))), "snapshots": _read(c.list_snapshots, name),
           "partitions": {p: [_read(c.get_partition_stats, name, p), _read(c.get_load_state, name, partition_name=p)]
                          for p in c.list_partitions(name)}}
    indexed = {c.describe_index(name, i)["field_name"] for i in indexes}
    released = str(c.get_load_state(name)["state"]) == "NotLoad" and all(f["name"] in indexed for f in desc["fields"]
                                                           if f["type"] in _VECTORS)
    if released:  # its rows are read too: loaded for the reads, released again
        c.load_collection(name)
    out["rows"] = _read(lambda: sorted((_norm(r) for r in c.query(
        name, filter="", output_fields=["*"], limit=16384, consistency_level="Strong")), key=lambda r: str(r[pk])))
    out["count"] = _read(c.query, name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    out["loaded_segments"] = _read(lambda: sorted(str(s) for s in c.list_loaded_segments(name)))
    out["replicas"] = _read(lambda: [str(r) for r in c.describe_replica(name)])
    for expr in FILTERS.get(name, ()):
        out[f"filter {expr}"] = _read(lambda e=expr: sorted(str(r[pk]) for r in c.query(
            name, filter=e, output_fields=[pk], limit=16384, consistency_level="Strong")))
    for f in desc["fields"]:
        if f["type"] in _VECTORS:
            bm25 = any(fn.get("output_field_names") == [f["name"]] for fn in desc.get("functions", []))
            out[f"search {f['name']}"] = _read(lambda f=f, bm25=bm25: [
                (h[pk], round(h["distance"], 3)) for h in c.search(
                    name, [_query_vector(f, bm25)], anns_field=f["name"], limit=5, consistency_level="Strong")[0]])
        if f.get("params", {}).get("enable_analyzer"):
            out["analyzer"] = _read(lambda f=f: list(c.run_analyzer("The apple Elder fig", collection_name=name,
                                                                     field_name=f["name"]).tokens))
    if released:
        c.release_collection(name)
    coll = Collection(name, using=orm)
    out["orm"] = {"num_entities": _read(lambda: coll.num_entities),
                  "partitions": _read(lambda: [(p.name, p.description, p.num_entities) for p in coll.partitions]),
                  "indexes": _read(lambda: [(i.field_name, i.index_name, i.params) for i in coll.indexes]),
                  "loading": _read(utility.loading_progress, name, using=orm),
                  "index_progress": {i: _read(utility.index_building_progress, name, index_name=i, using=orm)
                                     for i in indexes}}
    return out


def _may(uri: str, user: str, password: str) -> dict:
    """What ``user`` may do: the answers, or the errors' codes (a wrong password: no connection)."""
    try:
        u = MilvusClient(uri=uri, token=f"{user}:{password}")
    except MilvusException as e:
        return {"connect": e.code}
    try:
        return {what: _read(fn) for what, fn in {
            "databases": u.list_databases, "collections": u.list_collections,
            "search": lambda: len(u.search("renamed", [_vec(1).tolist()], limit=1)[0]),
            "query": lambda: len(u.query("renamed", "id < 5")),
            "insert_bad": lambda: u.insert("renamed", [{"id": "x"}])}.items()}
    finally:
        u.close()


def capture(uri: str, info: dict) -> dict:
    c = MilvusClient(uri=uri, token=ROOT)
    out: dict = {"databases": {}}
    try:
        for db in sorted(c.list_databases()):
            c.use_database(db)
            connections.connect("rf_cap", uri=uri, token=ROOT, db_name=db)
            try:
                aliases = c.list_aliases()["aliases"]
                out["databases"][db] = {
                    "describe": _read(c.describe_database, db),
                    "aliases": {a: _read(c.describe_alias, a) for a in aliases},
                    "collections": {n: _collection(c, "rf_cap", n) for n in sorted(c.list_collections())}}
            finally:
                connections.disconnect("rf_cap")
        c.use_database("default")
        connections.connect("rf_cap", uri=uri, token=ROOT)
        try:
            roles = sorted(c.list_roles())
            out["users"] = {u: _read(c.describe_user, u) for u in sorted(c.list_users())}
            out["roles"] = {r: [_read(c.describe_role, r), _read(lambda r=r: Role(r, using="rf_cap").list_grants()),
                                _read(lambda r=r: Role(r, using="rf_cap").get_users())] for r in roles}
            out["privilege_groups"] = _read(c.list_privilege_groups)
            out["resource_groups"] = {g: _read(c.describe_resource_group, g) for g in sorted(c.list_resource_groups())}
            for job in ("compaction", "clustering"):
                if job in info:
                    out[job] = [_read(c.get_compaction_state, info[job]), _read(c.get_compaction_plans, info[job])]
            out["imports"] = [_read(utility.get_bulk_insert_state, j, using="rf_cap") for j in info.get("imports", ())]
            out["import_list"] = _read(lambda: sorted(str(t) for t in utility.list_bulk_insert_tasks(using="rf_cap")))
            if "restore" in info:
                out["restore"] = [_read(c.get_restore_snapshot_state, info["restore"]),
                                  _read(lambda: sorted(str(j) for j in c.list_restore_snapshot_jobs()))]
        finally:
            connections.disconnect("rf_cap")
        out["may"] = {f"{u}:{p}": _may(uri, u, p) for u, p in (("alice", "password1"), ("bob", "password3"),
                                                                 ("bob", "password2"), ("root", "Milvus"))}
        b = MilvusClient(uri=uri, token=ROOT, db_name="db_b")
        out["deny_writing"] = _read(b.delete, "moved_b", ids=[12345])
        b.close()
    finally:
        c.close()
    return out


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in (
            [f"{path}/{k}: only {'after' if k in b else 'before'}"] if (k in a) != (k in b)
            else differences(a[k], b[k], f"{path}/{k}"))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:1500]} -> {str(b)[:1500]}"]


def fresh_ids(uri: str) -> list[int]:
    """A collection id, an auto id and a compaction id handed out now (each above every earlier one)."""
    c = MilvusClient(uri=uri, token=ROOT)
    c.create_collection("fresh", dimension=4, auto_id=True)
    try:
        pk = c.insert("fresh", [{"vector": [1, 2, 3, 4]}])["ids"][0]
        c.flush("fresh")
        return [c.describe_collection("fresh")["collection_id"], pk, c.compact("fresh")]
    finally:
        c.drop_collection("fresh")
        c.close()


def _check_anchors(state: dict) -> None:
    """Some readings the capture must hold, so an empty or failing capture cannot pass for a faithful one."""
    default = state["databases"]["default"]["collections"]
    ops = {r["id"]: r["score"] for r in default["schema_ops"]["rows"]}
    assert ops == {**{i: None for i in range(30)}, **{i: -i for i in range(30, 33)}, **{i: i for i in range(33, 36)}}
    assert default["renamed"]["count"] == [{"count(*)": 28}]
    if "trunc" in default:
        assert [r["id"] for r in default["trunc"]["rows"]] == [25, 26, 27]
    assert state["users"]["alice"]["roles"] == ["reader", "writer"]


def _check_restart(before: dict, uri: str, info: dict, floor: int, what: str) -> int:
    """The capture after a restart equals ``before``; ids handed out now are above ``floor`` (the largest
    seen before); returns the new floor."""
    after = capture(uri, info)
    assert not differences(before, after), f"after {what}:\n" + "\n".join(differences(before, after)[:40])
    fresh = fresh_ids(uri)
    assert min(fresh) > floor, (what, fresh, floor)
    return max(fresh)


def _id_floor(state: dict, info: dict) -> int:
    """The largest collection or job id handed out (they, row ids and segment ids come from one allocator)."""
    ids = [coll["describe"]["collection_id"] for db in state["databases"].values()
           for coll in db["collections"].values()]
    return max(ids + [v for k, v in info.items() if isinstance(v, int)] + [j for j in info.get("imports", ())])


ALL_STEPS = [_renames, _drops, _every_type, _newer_types, _text, _keyed, _schema_changes, _jobs, _security]


def test_standalone_keeps_everything_across_kill9_and_clean_restart(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"

    def start():
        return start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--auth", data_dir=tmp_path)

    from vecdb.storage.local_objects import LocalObjectStore

    objects = LocalObjectStore(str(tmp_path / "objects"))  # the server's: where the files to import go
    proc = start()
    try:
        info = build(uri, objects.put, ALL_STEPS)
        before = capture(uri, info)
        _check_anchors(before)
        ids = _id_floor(before, info)
        proc.kill()
        proc.wait()
        proc = start()
        ids = _check_restart(before, uri, info, ids, "kill -9")
        assert proc.stop() == 0
        proc = start()
        _check_restart(before, uri, info, ids, "a clean restart")
    finally:
        proc.stop()
        objects.close()


def _start_roles(cluster, names, env: dict) -> None:
    """The coord, then the other roles at once (they find it and each other in the sessions)."""
    cluster.start("coord", env=env)
    for name in names:
        cluster.start(name, env=env, ready=None)
    for name in names:
        wait_ready(cluster.procs[name])


def test_cluster_keeps_everything_when_every_role_restarts(tmp_path, remote_storage):
    """coord, query node, data node and proxy on NATS, etcd and S3: every role killed (-9) and started
    again, then every role stopped cleanly and started again."""
    from vecdb.config import StorageSettings
    from vecdb.storage.backends import open_objects

    storage = remote_storage()
    # a killed node's session ends 2 s after it: its successor of the same name does not wait 10 s
    env = {"VECDB_SECURITY__AUTHORIZATION_ENABLED": "true", "VECDB_STORAGE__SESSION_TTL": "2"}
    roles = ("qn0", "dn0", "proxy")
    cluster = RoleProcesses(storage, tmp_path)
    objects = open_objects(StorageSettings(**storage, data_dir=str(tmp_path / "objects")))
    try:
        _start_roles(cluster, roles, env)
        uri = cluster.uri()
        info = build(uri, objects.put, [_renames, _schema_changes, _jobs, _security])
        before = capture(uri, info)
        _check_anchors(before)
        ids = _id_floor(before, info)
        for name in ("coord", *roles):
            cluster.kill(name)
        _start_roles(cluster, roles, env)
        ids = _check_restart(before, uri, info, ids, "kill -9 of every role")
        cluster.stop_all()
        _start_roles(cluster, roles, env)
        _check_restart(before, uri, info, ids, "a clean restart of every role")
    finally:
        objects.close()
        cluster.close()

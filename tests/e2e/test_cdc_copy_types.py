"""CDC ``"start": "copy"`` (vecdb.cdc.base_copy) of the data real users have: a source whose log was cut
before the task existed (retention 0 and a flush) holds collections of every kind of field, key and
function; the base copy reads them through the source's Milvus API and the target ends equal to the
source (``verify``), with rows compared field by field and searches answering alike."""

from __future__ import annotations

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, _equal, _rows
from tests.e2e.test_cdc_base_copy import copying
from vecdb.cdc import base_copy, follower
from vecdb.cdc.task import new_task_id

BIG = 2**63 - 1


def _index(c: MilvusClient, *specs):
    ip = c.prepare_index_params()
    for field, kind, metric in specs:
        ip.add_index(field_name=field, index_type=kind, metric_type=metric)
    return ip


def _nullables(c: MilvusClient) -> None:
    """Every scalar type nullable, some with a default value; a nullable float vector and sparse vector."""
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("b", DataType.BOOL, nullable=True)
    s.add_field("i8", DataType.INT8, nullable=True)
    s.add_field("i16", DataType.INT16, nullable=True)
    s.add_field("i32", DataType.INT32, nullable=True)
    s.add_field("i64", DataType.INT64, nullable=True, default_value=7)
    s.add_field("f", DataType.FLOAT, nullable=True, default_value=1.5)
    s.add_field("d", DataType.DOUBLE, nullable=True)
    s.add_field("s", DataType.VARCHAR, max_length=32, nullable=True, default_value="dflt")
    s.add_field("j", DataType.JSON, nullable=True)
    s.add_field("a", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4, nullable=True)
    s.add_field("nv", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    s.add_field("nsp", DataType.SPARSE_FLOAT_VECTOR, nullable=True)
    c.create_collection("nullables", schema=s, index_params=_index(
        c, ("v", "FLAT", "L2"), ("nv", "FLAT", "L2"), ("nsp", "SPARSE_INVERTED_INDEX", "IP")))
    vecs = np.random.default_rng(1).random((60, DIM), dtype=np.float32)
    rows = []
    for i in range(60):
        r: dict = {"id": i, "v": vecs[i].tolist()}
        if i % 3 == 0:  # every nullable field null (explicit None)
            r.update(dict.fromkeys(("b", "i8", "i16", "i32", "i64", "f", "d", "s", "j", "a", "nv", "nsp")))
        elif i % 3 == 1:  # left out: null, or the default value
            pass
        else:
            r.update({"b": i % 2 == 0, "i8": i % 100, "i16": -i, "i32": i * 1000, "i64": -(2**40) - i, "f": i / 4,
                      "d": i / 7, "s": f"s{i}", "j": {"n": i, "x": [1, {"y": None}]}, "a": [i, -i],
                      "nv": vecs[(i + 1) % 60].tolist(), "nsp": {i % 9: 0.5, 30: float(i)}})
        rows.append(r)
    c.insert("nullables", rows)


def _structs(c: MilvusClient) -> None:
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    st = c.create_struct_field_schema()
    st.add_field("text", DataType.VARCHAR, max_length=64)
    st.add_field("score", DataType.FLOAT)
    st.add_field("emb", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("chunks", DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=st, max_capacity=4)
    ip = _index(c, ("v", "FLAT", "L2"))
    ip.add_index("chunks[emb]", index_type="HNSW", metric_type="MAX_SIM_COSINE", params={"M": 16,
                                                                                          "efConstruction": 64})
    c.create_collection("structs", schema=s, index_params=ip)
    rng = np.random.default_rng(2)
    c.insert("structs", [{"id": i, "v": rng.random(DIM, dtype=np.float32).tolist(),
                          "chunks": [{"text": f"t{i}-{k}", "score": k / 2,
                                      "emb": rng.random(4, dtype=np.float32).tolist()} for k in range(1 + i % 3)]}
                         for i in range(40)])


def _geo_time(c: MilvusClient, uri: str) -> None:
    """GEOMETRY and TIMESTAMPTZ, in a database with a time zone."""
    c.create_database("zoned", properties={"timezone": "Asia/Shanghai"})
    z = MilvusClient(uri=uri, db_name="zoned")
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("geo", DataType.GEOMETRY)
    s.add_field("ngeo", DataType.GEOMETRY, nullable=True)
    s.add_field("ts", DataType.TIMESTAMPTZ)
    s.add_field("nts", DataType.TIMESTAMPTZ, nullable=True)
    z.create_collection("geotime", schema=s, index_params=_index(c, ("v", "FLAT", "L2")))
    z.insert("geotime", [{"id": i, "v": [i / 10] * DIM, "geo": f"POINT ({i} {i / 2})",
                          "ngeo": None if i % 2 else "LINESTRING (0 0, 1 1, 2 3)",
                          "ts": f"2024-03-0{1 + i % 9}T10:20:30", "nts": None if i % 3 else "2025-12-31T23:59:59Z"}
                         for i in range(30)])
    z.insert("geotime", [{"id": 100, "v": [0.0] * DIM, "geo": "POINT (0.123456789012345 -179.99999999999)",
                          "ngeo": "POLYGON ((0 0, 10 0, 10 10, 0 0))", "ts": "2024-03-01T10:20:30.123456Z",
                          "nts": "1969-07-20T20:17:40.5-05:00"}])
    z.close()


def _functions(c: MilvusClient) -> None:
    """A BM25 function (sparse output computed by the target) and a MinHash one (binary output)."""
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("text", DataType.VARCHAR, max_length=400, enable_analyzer=True)
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_function(Function("bm25", FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]))
    c.create_collection("bm25", schema=s, index_params=_index(c, ("sparse", "SPARSE_INVERTED_INDEX", "BM25")))
    words = ["apple", "banana", "cherry", "delta", "echo", "fox", "golf", "hotel"]
    rng = np.random.default_rng(3)
    c.insert("bm25", [{"id": i, "text": " ".join(rng.choice(words, 4 + i % 5))} for i in range(80)])
    m = MilvusClient.create_schema(auto_id=False)
    m.add_field("id", DataType.INT64, is_primary=True)
    m.add_field("text", DataType.VARCHAR, max_length=400, enable_analyzer=True)
    m.add_field("sig", DataType.BINARY_VECTOR, dim=32 * 8)
    m.add_function(Function("mh", FunctionType.MINHASH, input_field_names=["text"], output_field_names=["sig"],
                            params={"num_hashes": 8, "shingle_size": 3}))
    c.create_collection("minhash", schema=m, index_params=_index(c, ("sig", "MINHASH_LSH", "MHJACCARD")))
    c.insert("minhash", [{"id": i, "text": f"the quick brown fox number {i} jumps over {i % 7} dogs"}
                         for i in range(30)])


def _keys_and_json(c: MilvusClient) -> None:
    """VARCHAR keys with quotes, backslashes and non-ASCII; INT64 keys near 2^63 (and negative); JSON
    and dynamic keys that look like field names or ``$meta``."""
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("j", DataType.JSON)
    c.create_collection("vkeys", schema=s, index_params=_index(c, ("v", "FLAT", "L2")))
    keys = ['a"b', "a'b", "back\\slash", 'both\\"', "ünïcødé", "日本語", "emoji😀", "plain", "x\ny", "tab\tz",
            "", "a\\", "\\\\", '"', "zz"] + [f"k{i:03d}" for i in range(30)]
    c.insert("vkeys", [{"pk": k, "v": [n / 50] * DIM, "j": {"nested": {"deep": [n, {"k": k}]}, "pk": k, "$meta": n},
                        "meta": {"$meta": n}, "v2": n, "dyn": {"pk": "not a key", "j": [1, 2]}}
                       for n, k in enumerate(keys)])
    # JSON values that are not objects: a list, strings (pymilvus takes a str as JSON text: '"123"' is the
    # string 123, which a query returns as "123"), a number, null inside, unicode and escapes
    c.upsert("vkeys", [{"pk": f"k{n:03d}", "v": [0.5] * DIM, "j": value} for n, value in enumerate(
        [[1, [2, {"a": None}]], '"just a string"', '"123"', '"[1]"', 12.5, True,
         {"quote\"key": "back\\slash", "ü": "日本"}, 2**62])])
    b = MilvusClient.create_schema(auto_id=False)
    b.add_field("id", DataType.INT64, is_primary=True)
    b.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection("bigkeys", schema=b, index_params=_index(c, ("v", "FLAT", "L2")))
    ids = [BIG - k for k in range(20)] + [-BIG - 1 + k for k in range(20)] + list(range(-5, 5))
    c.insert("bigkeys", [{"id": i, "v": [0.25] * DIM} for i in ids])


def _shapes(c: MilvusClient) -> None:
    """auto_id; renamed on the target; partition key with num_partitions; 0 rows."""
    a = MilvusClient.create_schema(auto_id=True)
    a.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
    a.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection("auto", schema=a, index_params=_index(c, ("v", "FLAT", "L2")))
    c.insert("auto", [{"v": [i / 100] * DIM} for i in range(50)])
    c.create_collection("renamed", dimension=DIM)
    c.insert("renamed", _rows(range(25), extra=False))
    k = MilvusClient.create_schema(auto_id=False)
    k.add_field("id", DataType.INT64, is_primary=True)
    k.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    k.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    c.create_collection("pkeyed", schema=k, index_params=_index(c, ("v", "FLAT", "L2")), num_partitions=5)
    c.insert("pkeyed", [{"id": i, "v": [i / 70] * DIM, "tenant": f"t{i % 6}"} for i in range(70)])
    c.create_collection("empty", dimension=DIM)


def _cut(uri: str, names: list[str], dbs: dict[str, list[str]] | None = None) -> None:
    """The collections flushed: with retention 0 the source cuts their log."""
    c = MilvusClient(uri=uri)
    for name in names:
        c.flush(name)
    c.close()
    for db, more in (dbs or {}).items():
        z = MilvusClient(uri=uri, db_name=db)
        for name in more:
            z.flush(name)
        z.close()


def _sorted(rows: list[dict], key: str) -> list[dict]:
    return sorted(rows, key=lambda r: r[key])


def _same_rows(a: MilvusClient, b: MilvusClient, name: str, key: str, flt: str, fields: list[str],
               target_name: str | None = None) -> list[dict]:
    got = _sorted(b.query(target_name or name, filter=flt, output_fields=fields, consistency_level="Strong"), key)
    want = _sorted(a.query(name, filter=flt, output_fields=fields, consistency_level="Strong"), key)
    assert len(want) > 0 and len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want, strict=True):
        assert {k: _plain(v) for k, v in g.items()} == {k: _plain(v) for k, v in w.items()}, (g, w)
    return want


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float):
        return round(v, 5)
    return v


def test_copy_of_every_field_kind_key_and_function(tmp_path, remote_storage, monkeypatch):
    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    monkeypatch.setattr(base_copy, "COPY_BATCH", 7)  # many pages: the iterator and the copy page on every key kind
    with copying(tmp_path, remote_storage("cdcty" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        _nullables(c)
        _structs(c)
        _geo_time(c, s.source_uri)
        _functions(c)
        _keys_and_json(c)
        _shapes(c)
        names = ["nullables", "structs", "bm25", "minhash", "vkeys", "bigkeys", "auto", "renamed", "pkeyed", "empty"]
        _cut(s.source_uri, names, {"zoned": ["geotime"]})
        rep = s.begin(start="copy", rename={"renamed": "renamed_t"})
        wait_until(lambda: not s.store.copies(s.task.id) and rep.progress.copy_pending == 0, 60,
                   "the copy did not end")
        seen: list = []

        def equal() -> bool:
            seen[:] = [rep.progress.to_dict(), {k: v for k, v in _equal(s.source_uri, s.target_uri).items()
                                                if v and not k.endswith(".renamed") and not k.endswith("renamed_t")}]
            return rep.progress.lag_records == 0 and not seen[1]

        try:
            wait_until(equal, 60, "not equal")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        from vecdb.cdc.verify import verify

        renamed = verify(s.source_uri, s.target_uri, collection="renamed", rename={"renamed": "renamed_t"})
        assert len(renamed) == 1 and not any(renamed.values()), renamed
        assert rep.progress.last_error == "", rep.progress.last_error
        t = MilvusClient(uri=s.target_uri)
        _same_rows(c, t, "nullables", "id", "id in [0, 1, 2, 3, 4, 5]", ["*", "nv", "nsp"])
        got = t.query("nullables", filter="id in [0, 1]", output_fields=["i16", "i64", "f", "s", "b"])
        got = _sorted(got, "id")
        assert got[0]["i16"] is None and got[0]["i64"] == 7 and got[1]["i64"] == 7  # null kept, defaults kept
        assert got[1]["s"] == "dflt" and got[1]["b"] is None and got[1]["f"] == 1.5
        _same_rows(c, t, "structs", "id", "id < 5", ["*"])
        _same_rows(c, t, "vkeys", "pk", 'pk in ["a\\"b", "back\\\\slash", "日本語", "emoji😀", "", "k000", '
                   '"k001", "k002", "k003", "k004", "k005"]', ["*"])
        _same_rows(c, t, "bigkeys", "id", f"id >= {BIG - 3} or id <= {-BIG + 1}", ["*"])
        _same_rows(c, t, "auto", "pk", "pk > 0", ["*"])
        _same_rows(c, t, "renamed", "id", "id < 5", ["*"], target_name="renamed_t")
        _same_rows(c, t, "minhash", "id", "id < 5", ["*", "sig"])
        want = _same_rows(c, t, "pkeyed", "id", "tenant == 't3'", ["*"])
        assert len(want) == 12
        assert t.describe_collection("pkeyed")["num_partitions"] == 5
        z, zt = MilvusClient(uri=s.source_uri, db_name="zoned"), MilvusClient(uri=s.target_uri, db_name="zoned")
        _same_rows(z, zt, "geotime", "id", "id < 6 or id == 100", ["*"])
        assert zt.describe_database("zoned").get("timezone") == "Asia/Shanghai"
        # the target computed the BM25 output: a search answers as on the source
        for q in ("apple banana", "fox golf hotel"):
            a = c.search("bm25", [q], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"})[0]
            b = t.search("bm25", [q], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"})[0]
            assert [h["id"] for h in a] == [h["id"] for h in b]
            assert np.allclose([h["distance"] for h in a], [h["distance"] for h in b], rtol=1e-4)


def test_copy_with_authentication_and_a_collection_ttl(tmp_path, remote_storage, monkeypatch):
    """Source and target require a user: the copy reads with the task's source token and writes with its
    target token. A TTL collection: rows expired on the source before the copy are not copied."""
    import time

    from tests import conftest
    from vecdb.cdc.replicator import Replicator
    from vecdb.cdc.task import Task, TaskSpec
    from vecdb.cdc.verify import verify

    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    real = conftest.server_settings

    def with_auth(*a, **kw):
        settings = real(*a, **kw)
        settings.security.authorization_enabled = True
        return settings

    monkeypatch.setattr(conftest, "server_settings", with_auth)
    token = "root:Milvus"
    with copying(tmp_path, remote_storage("cdcau" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri, token=token)
        c.create_collection("ttl", dimension=DIM, properties={"collection.ttl.seconds": 8})
        c.insert("ttl", _rows(range(0, 20), extra=False))
        time.sleep(8.5)  # expired on the source (the later rows live 8 s: the copy and checks fit)
        c.insert("ttl", _rows(range(20, 30), extra=False))
        c.create_collection("plain", dimension=DIM)
        c.insert("plain", _rows(range(0, 40), extra=False))
        _cut_auth(s.source_uri, token, ["ttl", "plain"])
        s.task = Task(new_task_id(), TaskSpec(source={**s.storage, "token": token},
                                              target={"uri": s.target_uri, "token": token}, start="copy"))
        s.store.put(s.task)
        rep = s.rep = Replicator(s.task, s.store).start()
        wait_until(lambda: rep.progress.copied_rows and not s.store.copies(s.task.id), 60,
                   f"the copy did not end: {rep.progress.to_dict()}")
        assert rep.progress.copied_rows == 10 + 40 and rep.progress.last_error == ""
        t = MilvusClient(uri=s.target_uri, token=token)
        assert sorted(r["id"] for r in t.query("ttl", filter="id >= 0", consistency_level="Strong")) == \
            list(range(20, 30))
        assert t.describe_collection("ttl")["properties"]["collection.ttl.seconds"] == "8"
        report = verify(s.source_uri, s.target_uri, collection="plain", source_token=token, target_token=token)
        assert not any(report.values()), report
        _same_rows(c, t, "plain", "id", "id < 10", ["*"])


def _cut_auth(uri: str, token: str, names: list[str]) -> None:
    c = MilvusClient(uri=uri, token=token)
    for name in names:
        c.flush(name)
    c.close()


def test_a_collection_dropped_on_the_source_while_it_is_copied(tmp_path, remote_storage, monkeypatch):
    """The source drops a collection in the middle of its copy: the copy of it stops (no copy left
    pending, no error loop), the drop reaches the target, and the next collection is copied in full."""
    import time

    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    monkeypatch.setattr(base_copy, "COPY_BATCH", 50)
    real = base_copy.upsert_rows

    def slow(*a, **kw):
        time.sleep(0.2)
        return real(*a, **kw)

    monkeypatch.setattr(base_copy, "upsert_rows", slow)
    with copying(tmp_path, remote_storage("cdcdr" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        c.create_collection("a_dropped", dimension=DIM)
        c.insert("a_dropped", _rows(range(0, 1000), extra=False))
        c.create_collection("b_kept", dimension=DIM)
        c.insert("b_kept", _rows(range(0, 120), extra=False))
        _cut(s.source_uri, ["a_dropped", "b_kept"])
        rep = s.begin(start="copy")
        wait_until(lambda: rep.progress.copied_rows >= 100, 30, "the copy did not start")
        assert rep.progress.copying == "default.a_dropped", rep.progress.to_dict()
        c.drop_collection("a_dropped")
        wait_until(lambda: not s.store.copies(s.task.id) and rep.progress.copy_pending == 0, 60,
                   f"the copy did not end: {rep.progress.to_dict()}")
        t = MilvusClient(uri=s.target_uri)
        wait_until(lambda: not t.has_collection("a_dropped"), 30, "the drop did not reach the target")
        s.wait_equal(60, "not equal after a drop during the copy")
        assert rep.progress.copied_rows < 1000 + 120
        assert _same_rows(c, t, "b_kept", "id", "id >= 0", ["*"]) and len(t.query("b_kept", filter="id >= 0")) == 120


def test_a_collection_not_loaded_on_the_source_waits_and_the_others_are_copied(tmp_path, remote_storage,
                                                                                monkeypatch):
    """A released collection cannot be read through the Milvus API: the task says so (last_error, the
    copy pending), copies the others meanwhile and applies their logs, and copies it once it is loaded."""
    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    with copying(tmp_path, remote_storage("cdcrl" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        c.create_collection("a_released", dimension=DIM)
        c.insert("a_released", _rows(range(0, 30), extra=False))
        c.release_collection("a_released")
        c.create_collection("b_loaded", dimension=DIM)
        c.insert("b_loaded", _rows(range(0, 40), extra=False))
        _cut(s.source_uri, ["a_released", "b_loaded"])
        rep = s.begin(start="copy")
        wait_until(lambda: rep.progress.copied_rows == 40 and rep.progress.copy_pending == 1, 30,
                   "the loaded collection was not copied")
        wait_until(lambda: "not loaded" in rep.progress.last_error, 10, "the task did not say why it waits")
        assert "a_released" in rep.progress.last_error and rep.progress.state == "running"
        c.insert("b_loaded", _rows(range(40, 50), extra=False))  # its log is applied meanwhile
        t = MilvusClient(uri=s.target_uri)
        wait_until(lambda: len(t.query("b_loaded", filter="id >= 0", consistency_level="Strong")) == 50, 30,
                   "the log of a copied collection was not applied while another waits")
        c.insert("a_released", _rows(range(30, 35), extra=False))
        c.load_collection("a_released")
        wait_until(lambda: not s.store.copies(s.task.id) and rep.progress.copy_pending == 0, 60,
                   f"the copy did not end once loaded: {rep.progress.to_dict()}")
        s.wait_equal(60, "not equal once the released collection was loaded and copied")
        assert rep.progress.last_error == ""

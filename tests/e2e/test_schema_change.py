"""Schema changes on a collection with data, through pymilvus 2.6 on every deployment:
``add_collection_field`` (rows written before read as null or as the field's default, in growing
and sealed segments, through compaction, a release/load and a restart; inserts carry it from then
on; ``is null`` filters; describe shows it with a new id and the schema version moved; Milvus's
refusals) and ``alter_collection_field`` (max_length, max_capacity, mmap.enabled taken; the rest
refused). Every answer is checked against the rows computed here."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import wait_until
from tests.e2e._helpers import check_compacted_and_reloaded, compact


def _create(client, name, properties=None):
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("tag", DataType.VARCHAR, max_length=8)
    s.add_field("a", DataType.ARRAY, element_type=DataType.INT64, max_capacity=2)
    client.create_collection(name, schema=s, properties=properties or {})
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _rows(lo, hi, new=False):
    out = []
    for i in range(lo, hi):
        r = {"id": i, "v": [float(i % 13), float(i % 7)], "tag": f"t{i % 5}", "a": [i % 3]}
        if new and i % 3:  # every third new row leaves the new fields out
            r["score"] = i / 2
            r["label"] = f"l{i % 4}"
        out.append(r)
    return out


def _want(rows, new=False):
    out = {}
    for r in rows:
        out[r["id"]] = {"id": r["id"], "score": r.get("score"), "label": r.get("label", "none"),
                        "tag": r["tag"]} if new else {"id": r["id"], "tag": r["tag"]}
    return out


def _check(client, name, live):
    got = client.query(name, "id >= 0", output_fields=["id", "tag", "score", "label"], consistency_level="Strong",
                       limit=16384)
    assert {r["id"]: {k: r[k] for k in ("id", "score", "label", "tag")} for r in got} == live
    for expr, pred in [("score is null", lambda r: r["score"] is None),
                       ("score is not null and score > 20", lambda r: r["score"] is not None and r["score"] > 20),
                       ('label == "none"', lambda r: r["label"] == "none"),
                       ('label == "l1"', lambda r: r["label"] == "l1")]:
        hits = client.query(name, expr, output_fields=["id"], consistency_level="Strong", limit=16384)
        assert sorted(h["id"] for h in hits) == sorted(pk for pk, r in live.items() if pred(r)), expr
    res = client.search(name, [[1.0, 1.0]], limit=10, filter="score is null", output_fields=["score", "label"],
                        consistency_level="Strong")
    want_null = [pk for pk, r in live.items() if r["score"] is None]
    assert len(res[0]) == min(10, len(want_null))
    for h in res[0]:
        assert h["entity"] == {"score": None, "label": live[h["id"]]["label"]}


def _add_fields(client, name):
    client.add_collection_field(name, "score", DataType.DOUBLE, nullable=True)
    client.add_collection_field(name, "label", DataType.VARCHAR, max_length=8, nullable=True, default_value="none")


def test_add_field_to_growing_and_sealed_rows(client, name):
    _create(client, name)
    old = _rows(0, 120)
    client.insert(name, old[:60])
    client.flush(name)  # sealed
    client.insert(name, old[60:])  # growing
    before = client.describe_collection(name)
    _add_fields(client, name)
    desc = client.describe_collection(name)
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["score"]["type"] == DataType.DOUBLE and fields["score"].get("nullable") is True
    assert fields["label"]["default_value"].string_data == "none"
    # a new id above every field's, the hidden dynamic field's ($meta, 104) too
    assert fields["score"]["field_id"] == max(f["field_id"] for f in before["fields"]) + 2
    assert fields["label"]["field_id"] == fields["score"]["field_id"] + 1
    assert [f["name"] for f in desc["fields"]][-2:] == ["score", "label"]
    live = {pk: {**r, "score": None, "label": "none"} for pk, r in _want(old).items()}
    _check(client, name, live)
    new = _rows(120, 240, new=True)
    client.insert(name, new[:60])  # into the growing segment that was there before the fields
    live.update(_want(new[:60], new=True))
    _check(client, name, live)
    client.flush(name)
    client.insert(name, new[60:])
    live.update(_want(new[60:], new=True))
    _check(client, name, live)
    client.upsert(name, [{"id": 5, "v": [0.0, 0.0], "tag": "u", "a": [], "score": 99.0, "label": "up"}])
    live[5] = {"id": 5, "tag": "u", "score": 99.0, "label": "up"}
    _check(client, name, live)
    client.flush(name)
    check_compacted_and_reloaded(client, name, lambda: _check(client, name, live))


def test_add_field_before_load(client, name):
    """Added while released: the load reads the old segments' missing columns as null."""
    _create(client, name)
    client.insert(name, _rows(0, 40))
    client.flush(name)
    client.release_collection(name)
    _add_fields(client, name)
    client.load_collection(name)
    _check(client, name, {pk: {**r, "score": None, "label": "none"} for pk, r in _want(_rows(0, 40)).items()})


@pytest.mark.parametrize("kwargs, message", [
    ({"field_name": "nn", "data_type": DataType.INT64}, "added field must be nullable"),
    ({"field_name": "tag", "data_type": DataType.INT64, "nullable": True}, "duplicate field name"),
    ({"field_name": "v2", "data_type": DataType.FLOAT_VECTOR, "nullable": True}, "dimension"),  # (nullable: Milvus 3.0)
    ({"field_name": "pk2", "data_type": DataType.INT64, "nullable": True, "is_primary": True}, "pk field"),
    ({"field_name": "s", "data_type": DataType.VARCHAR, "nullable": True}, "max_length"),
    ({"field_name": "i8", "data_type": DataType.INT8, "nullable": True, "default_value": 1000}, "default value"),
])
def test_add_field_refused(client, name, kwargs, message):
    _create(client, name)
    with pytest.raises(MilvusException) as e:
        client.add_collection_field(name, **kwargs)
    assert message in e.value.message
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "v", "tag", "a"]


def test_add_field_to_missing_collection(client):
    with pytest.raises(MilvusException) as e:
        client.add_collection_field("no_such_coll_sc", "x", DataType.INT64, nullable=True)
    assert "not found" in e.value.message or "can't find" in e.value.message


def test_alter_collection_field(client, name):
    _create(client, name)
    client.insert(name, _rows(0, 10))
    long = {"id": 100, "v": [0.0, 0.0], "tag": "x" * 20, "a": [1, 2, 3]}
    with pytest.raises(MilvusException):
        client.insert(name, [long])
    client.alter_collection_field(name, "tag", field_params={"max_length": 32})
    client.alter_collection_field(name, "a", field_params={"max_capacity": 4})
    client.alter_collection_field(name, "tag", field_params={"mmap.enabled": True})
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert fields["tag"]["params"]["max_length"] == 32
    assert fields["tag"]["params"]["mmap_enabled"] is True  # pymilvus's name for the mmap.enabled param
    assert fields["a"]["params"]["max_capacity"] == 4
    client.insert(name, [long])
    got = client.query(name, "id == 100", output_fields=["tag", "a"], consistency_level="Strong")
    assert got[0]["tag"] == "x" * 20 and list(got[0]["a"]) == [1, 2, 3]
    for field, params, message in [
        ("v", {"dim": 4}, "does not allow update"),
        ("id", {"max_length": 10}, "primary field id can not be altered"),
        ("a", {"max_length": 10}, "can not modify the maxlength"),
        ("tag", {"max_capacity": 3}, "can not modify the maxcapacity"),
        ("tag", {"max_length": 70000}, "exceeds the maximum"),
        ("nope", {"max_length": 10}, "does not exist"),
    ]:
        with pytest.raises(MilvusException) as e:
            client.alter_collection_field(name, field, field_params=params)
        assert message in e.value.message, (field, params)
    assert client.describe_collection(name)["fields"][2]["params"]["max_length"] == 32


def test_added_field_survives_a_restart(tmp_path):
    """Standalone on a data directory: sealed rows from before and after the field, growing rows
    replayed from the log (some written before the field), after a restart."""
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _create(c, "added_restart")
        old, new = _rows(0, 60), _rows(60, 120, new=True)
        c.insert("added_restart", old[:30])
        c.flush("added_restart")
        c.insert("added_restart", old[30:])  # growing, written without the field
        _add_fields(c, "added_restart")
        c.insert("added_restart", new)
        live = {pk: {**r, "score": None, "label": "none"} for pk, r in _want(old).items()}
        live.update(_want(new, new=True))
        _check(c, "added_restart", live)
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("added_restart")
        _check(c, "added_restart", live)
        c.close()
    finally:
        node.stop()


def _count(client, name):
    return client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def test_truncate_collection(client, name):
    """Sealed, growing and partition rows gone; schema, index, partitions, alias, load state kept;
    inserts after it served alone, through a flush, a release/load and a compaction."""
    _create(client, name)
    client.create_partition(name, "p1")
    alias = name + "_al"
    client.create_alias(name, alias)
    client.insert(name, _rows(0, 60))
    client.flush(name)
    client.insert(name, _rows(60, 100))
    client.insert(name, _rows(100, 120), partition_name="p1")
    assert _count(client, name) == 120
    before = client.describe_collection(name)
    client.truncate_collection(name)
    assert _count(client, name) == 0
    assert client.query(name, "id >= 0", consistency_level="Strong") == []
    assert client.search(name, [[1.0, 1.0]], limit=5, consistency_level="Strong")[0] == []
    after = client.describe_collection(name)
    assert (after["fields"], after["collection_id"], after["aliases"]) == (
        before["fields"], before["collection_id"], before["aliases"])
    assert client.list_partitions(name) == ["_default", "p1"]
    assert client.list_indexes(name) == ["v"]
    assert str(client.get_load_state(name)["state"]) == "Loaded"
    new = [{"id": i, "v": [float(i), 0.0], "tag": "n", "a": []} for i in range(50, 80)]  # ids of old rows too
    client.insert(alias, new)
    want = {r["id"] for r in new}
    hits = client.search(name, [[55.0, 0.0]], limit=100, consistency_level="Strong")[0]
    assert {h["id"] for h in hits} == want and hits[0]["id"] == 55
    assert _count(client, name) == 30
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)
    assert {r["id"] for r in client.query(name, "id >= 0", consistency_level="Strong")} == want
    compact(client, name)
    assert _count(client, name) == 30
    client.truncate_collection(name)  # twice: the new rows go too
    assert _count(client, name) == 0
    assert client.get_collection_stats(name)["row_count"] == 0  # the sealed segments' metadata went too
    client.insert(name, _rows(0, 10))
    client.flush(name)
    client.release_collection(name)
    client.truncate_collection(name)  # released: the load drops what is older
    client.load_collection(name)
    assert _count(client, name) == 0
    client.insert(name, _rows(10, 12))
    assert sorted(r["id"] for r in client.query(name, "id >= 0", consistency_level="Strong")) == [10, 11]


def test_truncate_during_inserts(client, name):
    """Inserts racing a truncate: each batch is wholly gone or wholly kept, every batch acknowledged
    after the truncate returned is kept, and what a query sees stays so after a flush and a reload."""
    import threading

    _create(client, name)
    batches, done, acked = 40, threading.Event(), []
    truncated_at: list[int] = []

    def writer():
        for b in range(batches):
            begun_after = len(truncated_at)  # read before the call: begun after the truncate returned
            client.insert(name, [{"id": b * 1000 + i, "v": [float(i), 1.0], "tag": "w", "a": []} for i in range(50)])
            acked.append((b, begun_after))
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    wait_until(lambda: len(acked) >= 10, 60, "inserts under way")
    client.truncate_collection(name)
    truncated_at.append(len(acked))
    t.join(120)
    assert done.is_set()

    def per_batch():
        ids = [r["id"] for r in client.query(name, "id >= 0", consistency_level="Strong", limit=16384)]
        counts: dict[int, int] = {}
        for pk in ids:
            counts[pk // 1000] = counts.get(pk // 1000, 0) + 1
        return counts

    counts = per_batch()
    assert set(counts.values()) <= {50}, counts  # never half a batch
    after = [b for b, seen in acked if seen]  # begun after the truncate returned
    assert after and all(b in counts for b in after), (sorted(counts), acked)
    assert all(b not in counts for b, _ in acked[:10])  # acknowledged before it began
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)
    assert per_batch() == counts


def test_truncate_survives_a_restart(tmp_path):
    """Standalone: truncated rows (sealed and still in the log) stay gone after a restart; rows
    written after the truncate are replayed."""
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _create(c, "trunc_restart")
        c.insert("trunc_restart", _rows(0, 40))
        c.flush("trunc_restart")
        c.insert("trunc_restart", _rows(40, 80))
        c.truncate_collection("trunc_restart")
        c.insert("trunc_restart", _rows(200, 210))
        assert _count(c, "trunc_restart") == 10
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("trunc_restart")
        assert sorted(r["id"] for r in c.query("trunc_restart", "id >= 0", consistency_level="Strong")) == list(
            range(200, 210))
        c.close()
    finally:
        node.stop()


def test_a_client_with_the_old_schema_cached_sends_the_new_field(server, name):
    """Client B read the schema (pymilvus caches it) before client A added a field through another
    proxy (on the cluster): B's next insert carries the field — the server answers its old
    schema_timestamp with SchemaMismatch, pymilvus reads the schema again and retries."""
    ports = getattr(server, "ports", [server.port])
    a = MilvusClient(uri=f"http://127.0.0.1:{ports[0]}")
    b = MilvusClient(uri=f"http://127.0.0.1:{ports[-1]}")
    try:
        _create(a, name)
        b.insert(name, _rows(0, 10))  # B caches the schema without the field
        _add_fields(a, name)
        new = _rows(10, 20, new=True)
        b.insert(name, new)
        live = {pk: {**r, "score": None, "label": "none"} for pk, r in _want(_rows(0, 10)).items()}
        live.update(_want(new, new=True))
        _check(b, name, live)
        _check(a, name, live)
        assert not any("$meta" in str(r) for r in b.query(name, "id >= 10", output_fields=["*"],
                                                          consistency_level="Strong"))
    finally:
        if a.has_collection(name):
            a.drop_collection(name)
        a.close()
        b.close()


@pytest.mark.parametrize("late_catalog", [False, True], ids=["catalog-pass", "catalog-pass-late"])
def test_cdc_replicates_an_added_field(tmp_path, remote_storage, late_catalog):
    """A CDC task adds the field on the target when the source adds it, and rows written with it
    after reach the target with their values (rows before it null there too). The task's catalog
    pass is not ordered with the log: ``late_catalog`` holds it back (as a slow pass would) so the
    rows carrying the new field arrive first, and the task must add the field for them itself."""
    from tests.conftest import start_standalone
    from tests.e2e.test_cdc import replicating
    from vecdb.cdc.task import new_task_id

    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcsc" + new_task_id()), target, tu) as stream:
        c = MilvusClient(uri=stream.source_uri)
        _create(c, "grow")
        c.insert("grow", _rows(0, 20))
        stream.wait_equal(60, "target never equal before the field")
        if late_catalog:
            stream.rep._sync_catalog = lambda: None  # the instance's attribute shadows the method
        _add_fields(c, "grow")
        new = _rows(20, 40, new=True)
        c.insert("grow", new)
        stream.wait_equal(60, "target never equal after the field")
        if late_catalog:
            del stream.rep._sync_catalog
        t = MilvusClient(uri=tu)
        fields = {f["name"]: f for f in t.describe_collection("grow")["fields"]}
        assert fields["score"].get("nullable") is True and fields["label"]["default_value"].string_data == "none"
        live = {pk: {**r, "score": None, "label": "none"} for pk, r in _want(_rows(0, 20)).items()}
        live.update(_want(new, new=True))
        _check(t, "grow", live)
        assert stream.rep.progress.last_error == ""
        c.close()
        t.close()

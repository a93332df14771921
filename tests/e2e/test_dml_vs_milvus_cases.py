"""Insert, upsert and delete as Milvus 2.3.5 answers them: counts, rows, delete_count, errors.

Each expectation was measured with pymilvus 3.0.2 against the real Milvus 2.3.5 server (the `milvus`
PyPI package) and vecdb running the same script. Where they differ by design it is said so: vecdb keeps
primary keys unique (README: an insert of an existing key replaces the row, in any partition), where
Milvus 2.3.5 keeps every copy (count(*) counts them, query returns one of them, not always the last).
"""

from __future__ import annotations

import pytest
from pymilvus import Collection, DataType, MilvusClient, MilvusException, Partition, connections

from tests.conftest import start_standalone
from tests.e2e._helpers import make_collection


def _schema(pk: DataType = DataType.INT64):
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if pk == DataType.VARCHAR:
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    else:
        s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("tag", DataType.VARCHAR, max_length=16)
    s.add_field("val", DataType.INT64)
    return s


def _make(client, name, parts=(), pk: DataType = DataType.INT64):
    make_collection(client, name, _schema(pk), consistency_level="Strong")
    for p in parts:
        client.create_partition(name, p)


def _rows(ids, val, tag="x"):
    return [{"id": i, "vec": [float(i) if isinstance(i, int) else 1.0, 0.0, 0.0, 0.0], "tag": tag, "val": val}
            for i in ids]


def _count(client, name, **kw) -> int:
    return client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong", **kw)[0]["count(*)"]


def _rows_of(client, name, **kw) -> list[list]:
    res = client.query(name, filter="id >= 0", output_fields=["val"], consistency_level="Strong", **kw)
    return sorted([r["id"], r["val"]] for r in res)


def _hits(client, name, **kw) -> list[list]:
    res = client.search(name, [[0.0] * 4], limit=20, output_fields=["val"], consistency_level="Strong", **kw)
    return sorted([h["id"], h["entity"]["val"]] for h in res[0])


def _res(result) -> dict:
    """A MilvusClient mutation result as a plain dict (its counts and keys)."""
    return {k: list(v) if k == "ids" else v for k, v in dict(result).items() if k != "cost"}


def _code(call) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        call()
    return e.value.code, e.value.message


# --- partition-scoped deletes --------------------------------------------------------------------
def _partition_deletes(client, name, flush: bool) -> None:
    """Milvus 2.3.5 and vecdb alike: a delete naming a partition removes only that partition's rows."""
    client.insert(name, _rows([1, 2, 3, 4], 1), partition_name="p1")
    client.insert(name, _rows([5, 6, 7, 8], 2), partition_name="p2")
    if flush:
        client.flush(name)
    # pk fast path: delete_count is the number of keys listed, found in that partition or not
    assert client.delete(name, ids=[1, 5], partition_name="p2")["delete_count"] == 2
    assert client.delete(name, filter="id in [2, 6]", partition_name="p1")["delete_count"] == 2
    # a filter on other fields counts the rows it matched, in that partition only
    assert client.delete(name, filter="val >= 0", partition_name="p2")["delete_count"] == 3
    assert client.delete(name, ids=[3], partition_name="_default")["delete_count"] == 1
    # a key deleted, then written into the other partition: deletes in the old partition miss it
    client.insert(name, _rows([9], 3), partition_name="p1")
    client.delete(name, ids=[9])
    client.insert(name, _rows([9], 4), partition_name="p2")
    if flush:
        client.flush(name)
    assert client.delete(name, ids=[9], partition_name="p1")["delete_count"] == 1
    assert client.delete(name, filter="val == 4", partition_name="p1")["delete_count"] == 0
    client.insert(name, _rows([10], 5), partition_name="p1")
    if flush:
        client.flush(name)
    assert client.delete(name, ids=[10], partition_name="p2")["delete_count"] == 1


def _assert_partition_deletes_state(client, name) -> None:
    assert _count(client, name) == 5
    assert _rows_of(client, name) == [[1, 1], [3, 1], [4, 1], [9, 4], [10, 5]]
    assert _hits(client, name) == [[1, 1], [3, 1], [4, 1], [9, 4], [10, 5]]
    assert _rows_of(client, name, partition_names=["p1"]) == [[1, 1], [3, 1], [4, 1], [10, 5]]
    assert _count(client, name, partition_names=["p2"]) == 1
    assert _hits(client, name, partition_names=["p2"]) == [[9, 4]]


@pytest.mark.parametrize("flush", [False, True], ids=["growing", "sealed"])
def test_partition_scoped_deletes(client, name, flush):
    _make(client, name, ("p1", "p2"))
    _partition_deletes(client, name, flush)
    _assert_partition_deletes_state(client, name)
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)
    _assert_partition_deletes_state(client, name)


def test_partition_scoped_deletes_survive_a_restart(tmp_path):
    node = start_standalone(tmp_path / "data")
    port = node.port
    client = MilvusClient(f"http://127.0.0.1:{port}")
    _make(client, "pd", ("p1", "p2"))
    _partition_deletes(client, "pd", flush=True)
    client.insert("pd", _rows([11], 6), partition_name="p1")  # only in the log at the restart
    client.delete("pd", ids=[11], partition_name="p2")
    client.close()
    node.stop()
    node = start_standalone(tmp_path / "data", port)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        client.load_collection("pd")
        assert _rows_of(client, "pd") == [[1, 1], [3, 1], [4, 1], [9, 4], [10, 5], [11, 6]]
        assert _count(client, "pd", partition_names=["p2"]) == 1
        client.close()
    finally:
        node.stop()


def test_delete_in_a_missing_partition(client, name):
    _make(client, name, ("p1",))
    assert _code(lambda: client.delete(name, ids=[1], partition_name="nosuch")) == (
        200, "Failed to get partition id: partition not found[partition=nosuch]")
    assert _code(lambda: client.insert(name, _rows([1], 1), partition_name="nosuch")) == (
        200, "partition not found[partition=nosuch]")
    assert _code(lambda: client.upsert(name, _rows([1], 1), partition_name="nosuch")) == (
        200, "partition not found[partition=nosuch]")


# --- delete_count ----------------------------------------------------------------------------------
def test_delete_count_counts_the_keys_listed(client, name):
    """Milvus's simple delete (``pk in [...]``, ``pk == v``, ``ids=``) reports the keys as listed:
    duplicates and absent keys counted, nothing scanned."""
    _make(client, name)
    client.insert(name, _rows(range(20), 1))
    assert client.delete(name, filter="id in [3, 3, 3]")["delete_count"] == 3
    assert client.delete(name, ids=[11, 11, 11])["delete_count"] == 3
    assert client.delete(name, ids=[12] * 5 + list(range(1000, 1005)))["delete_count"] == 10
    assert client.delete(name, ids=[0, 1000, 0])["delete_count"] == 3
    assert client.delete(name, filter="id in [1000, 1001]")["delete_count"] == 2
    assert client.delete(name, filter="id in []")["delete_count"] == 0
    assert client.delete(name, filter=" id in [4 , 5] ")["delete_count"] == 2
    assert client.delete(name, filter="(id in [6])")["delete_count"] == 1
    # other expressions count the rows they matched
    assert client.delete(name, filter="id == 1 or id == 2")["delete_count"] == 2
    assert client.delete(name, filter="10 == id")["delete_count"] == 1
    assert client.delete(name, filter="id >= 0 and id < 0")["delete_count"] == 0
    assert client.delete(name, filter="id not in [13, 14, 15, 16, 17, 18, 19]")["delete_count"] == 3
    assert _rows_of(client, name) == [[i, 1] for i in range(13, 20)]


def test_delete_count_varchar_keys(client, name):
    _make(client, name, pk=DataType.VARCHAR)
    assert _res(client.insert(name, _rows(["a", "b", "c", "d"], 1))) == {"insert_count": 4, "ids": ["a", "b", "c", "d"]}
    assert _res(client.upsert(name, _rows(["d", "e"], 2))) == {"upsert_count": 2, "ids": ["d", "e"]}
    assert client.delete(name, filter='id in ["a", "a", "zz"]')["delete_count"] == 3
    assert client.delete(name, ids=["b", "b"])["delete_count"] == 2
    assert client.delete(name, filter='id == "c"')["delete_count"] == 1
    assert client.delete(name, filter='id like "d%"')["delete_count"] == 1
    res = client.query(name, filter='id != ""', output_fields=["val"], consistency_level="Strong")
    assert [(r["id"], r["val"]) for r in res] == [("e", 2)]


def test_delete_by_expression_counts(client, name):
    _make(client, name)
    client.insert(name, _rows(range(10), 1, "x") + _rows(range(10, 20), 2, "y"))
    assert client.delete(name, filter='id > 5 and tag == "x"')["delete_count"] == 4
    assert client.delete(name, filter="val == 2 and id < 13")["delete_count"] == 3
    assert client.delete(name, filter='tag == "zzz"')["delete_count"] == 0
    assert client.delete(name, ids=[1000])["delete_count"] == 1
    assert _count(client, name) == 13
    assert client.delete(name, ids=list(range(1, 10001)))["delete_count"] == 10000
    in_10k = "id in [" + ",".join(map(str, range(100, 10100))) + "]"
    assert client.delete(name, filter=in_10k)["delete_count"] == 10000
    assert _rows_of(client, name) == [[0, 1]]
    assert client.delete(name, filter="id >= 15")["delete_count"] == 0
    assert _count(client, name) == 1


def test_delete_by_mixed_expressions(client, name):
    _make(client, name, ("p1",))
    client.insert(name, _rows(range(10), 1))
    client.insert(name, _rows(range(10, 15), 2), partition_name="p1")
    for expr, part, n in [("id in [1, 2, 3] and val > 0", None, 3), ("id in [1, 10, 11] and val > 0", "p1", 2),
                          ("id > 1000000", None, 0), ("id == -5", None, 1), ("id in [4] or id in [5]", None, 2),
                          ("not (id != 6)", None, 1), ("7 <= id < 9", None, 2), ('tag like "x%" and id == 9', None, 1)]:
        assert client.delete(name, filter=expr, partition_name=part)["delete_count"] == n, expr
    assert _rows_of(client, name) == [[0, 1], [12, 2], [13, 2], [14, 2]]
    client.release_collection(name)
    assert client.delete(name, ids=list(range(20000, 30000)))["delete_count"] == 10000
    assert client.delete(name, filter="id == 12")["delete_count"] == 1
    client.load_collection(name)
    assert _rows_of(client, name) == [[0, 1], [13, 2], [14, 2]]


def test_constant_true_delete_is_refused(client, name):
    """Milvus 2.3.5 deletes nothing for ``1 == 1`` (its query node cannot run the folded constant);
    newer ones refuse an always-true plan with this message. vecdb deleted every row."""
    _make(client, name)
    client.insert(name, _rows(range(5), 1))
    code, msg = _code(lambda: client.delete(name, filter="1 == 1"))
    assert (code, msg) == (1100, "delete plan can't be empty or always true : 1 == 1")
    assert _code(lambda: client.delete(name, filter="not (1 == 2)"))[0] == 1100
    assert _count(client, name) == 5
    assert client.delete(name, filter="1 == 2")["delete_count"] == 0
    assert _count(client, name) == 5


def test_delete_on_a_released_collection(client, name):
    _make(client, name)
    client.insert(name, _rows(range(3), 1))
    client.release_collection(name)
    assert _code(lambda: client.delete(name, filter="val > 0"))[0] == 101  # a scan needs it loaded
    assert client.delete(name, ids=[1])["delete_count"] == 1  # the key list does not
    assert _res(client.upsert(name, _rows([2], 5))) == {"upsert_count": 1, "ids": [2]}
    client.load_collection(name)
    assert _rows_of(client, name) == [[0, 1], [2, 5]]


# --- upsert ------------------------------------------------------------------------------------------
def test_upsert_delete_upsert(client, name):
    _make(client, name)
    assert _res(client.upsert(name, _rows([7], 1))) == {"upsert_count": 1, "ids": [7]}
    assert client.delete(name, ids=[7])["delete_count"] == 1
    assert _count(client, name) == 0 and _hits(client, name) == []
    assert _res(client.upsert(name, _rows([7], 2))) == {"upsert_count": 1, "ids": [7]}
    assert _rows_of(client, name) == [[7, 2]]
    client.flush(name)
    assert client.delete(name, filter="id == 7")["delete_count"] == 1
    assert _res(client.upsert(name, _rows([7], 3))) == {"upsert_count": 1, "ids": [7]}
    assert _rows_of(client, name) == [[7, 3]] and _hits(client, name) == [[7, 3]]


def test_upsert_on_auto_id_is_refused(client, name):
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    make_collection(client, name, s, consistency_level="Strong")
    client.insert(name, [{"vec": [1.0] * 4}])
    # Milvus 2.3.5: 1100 too ("the number of fields is less than needed ...")
    assert _code(lambda: client.upsert(name, [{"id": 5, "vec": [1.0] * 4}]))[0] == 1100
    assert _count(client, name) == 1


def test_mutation_results_of_the_orm(uri, name):
    alias = "dml_" + name
    connections.connect(alias, uri=uri)
    try:
        mc = MilvusClient(uri)
        make_collection(mc, name, _schema(), consistency_level="Strong")
        mc.close()
        col = Collection(name, using=alias)
        Partition(col, "p1")  # created
        r = col.insert([[1, 2, 2], [[1.0] * 4] * 3, ["a", "b", "c"], [1, 2, 3]])
        assert (r.insert_count, list(r.primary_keys), r.delete_count, r.upsert_count) == (3, [1, 2, 2], 0, 0)
        assert r.timestamp > 0
        r = col.upsert([[2, 3], [[1.0] * 4] * 2, ["d", "e"], [4, 5]])
        # as Milvus's upsertTask: n inserted, n deleted (there or not), n upserted
        assert (r.insert_count, list(r.primary_keys), r.delete_count, r.upsert_count) == (2, [2, 3], 2, 2)
        r = col.delete("id in [2, 3, 99]")
        assert (r.insert_count, list(r.primary_keys), r.delete_count) == (0, [], 3)
        assert Partition(col, "p1").delete("id in [1]").delete_count == 1  # listed, not in p1
        assert col.query("", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 1
    finally:
        connections.disconnect(alias)


# --- unique primary keys: vecdb's design, where Milvus 2.3.5 keeps copies --------------------------
def test_same_key_in_two_partitions_is_one_row(client, name):
    """Milvus 2.3.5 here: count 4, p1 keeps its copies; the delete in p2 leaves count 3 (pk 1 in p1).
    vecdb: the second insert replaces the rows (last write wins), so a key is one row."""
    _make(client, name, ("p1", "p2"))
    client.insert(name, _rows([1, 2], 10), partition_name="p1")
    client.insert(name, _rows([1, 2], 20), partition_name="p2")
    assert _count(client, name) == 2
    assert _rows_of(client, name, partition_names=["p2"]) == [[1, 20], [2, 20]]
    assert _count(client, name, partition_names=["p1"]) == 0
    assert client.delete(name, ids=[1], partition_name="p1")["delete_count"] == 1  # not there: kept
    assert _rows_of(client, name) == [[1, 20], [2, 20]]
    assert client.delete(name, filter="id in [1]", partition_name="p2")["delete_count"] == 1
    assert _rows_of(client, name) == [[2, 20]]


def test_duplicate_keys_and_upsert_into_another_partition(client, name):
    """Milvus 2.3.5: count 3 after the batch (its query even missed pk 2), and an upsert into p2
    leaves the p1 row. vecdb: the last row of a key wins; an upsert moves the key to its partition."""
    _make(client, name, ("p1", "p2"))
    assert _res(client.insert(name, _rows([1], 1) + _rows([1], 2) + _rows([2], 3))) == {
        "insert_count": 3, "ids": [1, 1, 2]}
    assert _count(client, name) == 2 and _rows_of(client, name) == [[1, 2], [2, 3]]
    client.insert(name, _rows([1], 4))
    assert _rows_of(client, name) == [[1, 4], [2, 3]]
    assert _res(client.upsert(name, _rows([2], 6) + _rows([2], 7))) == {"upsert_count": 2, "ids": [2, 2]}
    assert _rows_of(client, name) == [[1, 4], [2, 7]]
    client.upsert(name, _rows([1], 8), partition_name="p2")
    assert _rows_of(client, name, partition_names=["p2"]) == [[1, 8]]
    assert _rows_of(client, name, partition_names=["_default"]) == [[2, 7]]

"""Scalar indexes (INVERTED, BITMAP, STL_SORT, Trie, AUTOINDEX) through pymilvus on every deployment:
accepted on the field types Milvus allows and refused elsewhere with its code and message; shown by
describe_index / list_indexes, dropped by drop_index; filters over sealed and growing rows of indexed
fields return exactly the rows a reference computed here selects."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

N = 3000
DIM = 4
WORDS = np.array(["apple", "pear", "fig", "kiwi", "lime", "", "Apple", "été"], dtype=object)


def _schema():
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("i32", DataType.INT32)
    schema.add_field("f", DataType.FLOAT)
    schema.add_field("d", DataType.DOUBLE)
    schema.add_field("s", DataType.VARCHAR, max_length=16)
    schema.add_field("b", DataType.BOOL)
    schema.add_field("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4)
    schema.add_field("j", DataType.JSON)
    return schema


def _data(seed=3):
    rng = np.random.default_rng(seed)
    return {
        "id": rng.permutation(N).astype(np.int64) * 2 + 1,
        "vec": rng.random((N, DIM), dtype=np.float32),
        "i32": rng.integers(-40, 40, N).astype(np.int32),
        "f": np.round(rng.normal(0, 2, N), 1).astype(np.float32),
        "d": np.round(rng.normal(0, 2, N), 2),
        "s": WORDS[rng.integers(0, len(WORDS), N)],
        "b": rng.random(N) < 0.4,
    }


def _rows(cols, lo, hi):
    return [{"id": int(cols["id"][i]), "vec": cols["vec"][i].tolist(), "i32": int(cols["i32"][i]),
             "f": float(cols["f"][i]), "d": float(cols["d"][i]), "s": str(cols["s"][i]), "b": bool(cols["b"][i]),
             "arr": [int(cols["i32"][i]), 1], "j": {"k": int(cols["i32"][i])}} for i in range(lo, hi)]


def _index(client, name, field, index_type, **params):
    idx = client.prepare_index_params()
    idx.add_index(field_name=field, index_type=index_type, index_name=f"{field}_idx", params=params)
    client.create_index(name, idx)


def _refused(client, name, field, index_type, code, message, **params):
    with pytest.raises(MilvusException) as e:
        _index(client, name, field, index_type, **params)
    assert e.value.code == code, e.value
    assert message in e.value.message, e.value.message


def test_scalar_index_types_accepted_and_refused(client, name):
    client.create_collection(name, schema=_schema())
    _refused(client, name, "i32", "Trie", 1100, "TRIE are only supported on varchar field")
    _refused(client, name, "b", "STL_SORT", 1100,
             "STL_SORT are only supported on numeric, varchar or timestamptz field, got Bool")
    _refused(client, name, "f", "BITMAP", 1100, "bitmap index are only supported on bool, int, string and array field")
    _refused(client, name, "id", "BITMAP", 1100, "create bitmap index on primary key not supported")
    _refused(client, name, "j", "INVERTED", 1100, "json index must specify cast type")
    _refused(client, name, "arr", "STL_SORT", 1100, "got Array")
    _index(client, name, "vec", "FLAT", metric_type="L2")
    accepted = {"i32": "STL_SORT", "f": "INVERTED", "s": "Trie", "b": "BITMAP", "arr": "INVERTED", "id": "INVERTED"}
    for field, itype in accepted.items():
        _index(client, name, field, itype)
    _index(client, name, "j", "INVERTED", json_cast_type="double", json_path='j["k"]')
    assert sorted(client.list_indexes(name)) == sorted([f"{f}_idx" for f in [*accepted, "vec", "j"]])
    for field, itype in accepted.items():
        d = client.describe_index(name, f"{field}_idx")
        assert (d["index_type"], d["field_name"]) == (itype, field)
    assert client.describe_index(name, "j_idx")["json_cast_type"] == "double"
    assert client.list_indexes(name, field_name="s") == ["s_idx"]
    client.drop_index(name, "s_idx")
    assert "s_idx" not in client.list_indexes(name)
    _index(client, name, "s", "INVERTED")  # another type on the field once the first is gone
    assert client.describe_index(name, "s_idx")["index_type"] == "INVERTED"


FILTERS = {
    "i32 > 5": lambda c: c["i32"] > 5,
    "-3 <= i32 < 7": lambda c: (c["i32"] >= -3) & (c["i32"] < 7),
    "i32 in [1, 2, 39, 77]": lambda c: np.isin(c["i32"], [1, 2, 39, 77]),
    "f > 0.1": lambda c: c["f"] > np.float32(0.1),
    "f == 1.5": lambda c: c["f"] == np.float32(1.5),
    "d <= -0.5": lambda c: c["d"] <= -0.5,
    "d not in [0.5, 1.25]": lambda c: ~np.isin(c["d"], [0.5, 1.25]),
    "s == 'apple'": lambda c: c["s"] == "apple",
    "s in ['pear', 'été', 'nope']": lambda c: np.isin(c["s"].astype(str), ["pear", "été", "nope"]),
    "s > 'fig'": lambda c: c["s"].astype(str) > "fig",
    "b == true and i32 < 0": lambda c: c["b"] & (c["i32"] < 0),
    "not b or s == ''": lambda c: ~c["b"] | (c["s"] == ""),
}


def test_filters_on_indexed_fields_equal_the_reference(client, name):
    client.create_collection(name, schema=_schema())
    cols = _data()
    _index(client, name, "vec", "FLAT", metric_type="L2")
    _index(client, name, "i32", "STL_SORT")
    _index(client, name, "f", "INVERTED")
    _index(client, name, "s", "Trie")
    _index(client, name, "b", "BITMAP")
    client.insert(name, _rows(cols, 0, 2000))
    client.flush(name)  # sealed rows, then growing ones
    client.load_collection(name)
    client.insert(name, _rows(cols, 2000, N))
    _index(client, name, "d", "AUTOINDEX")  # on a loaded collection
    for expr, ref in FILTERS.items():
        want = sorted(cols["id"][ref(cols)].tolist())
        got = client.query(name, filter=expr, output_fields=["id"], limit=N)
        assert sorted(r["id"] for r in got) == want, expr
        assert client.query(name, filter=expr, output_fields=["count(*)"])[0]["count(*)"] == len(want), expr
    # a filtered search returns only the reference's rows, nearest first
    q = cols["vec"][0]
    keep = FILTERS["s == 'apple'"](cols) & (cols["i32"] > 5)
    dist = ((cols["vec"][keep] - q) ** 2).sum(1)
    want = cols["id"][keep][np.argsort(dist, kind="stable")][:10].tolist()
    res = client.search(name, [q.tolist()], limit=10, filter="s == 'apple' and i32 > 5")[0]
    assert [h["id"] for h in res] == want
    client.release_collection(name)
    client.drop_index(name, "i32_idx")
    assert "i32_idx" not in client.list_indexes(name)


def test_sealed_segments_hold_the_sorted_index(server, client, name):
    """Standalone (the query node is in this process): each sealed segment gets the sorted index of a
    field with a scalar index (built when it is loaded, and when an index is made on a loaded
    collection), none for a field without one; filters read it."""
    if not hasattr(server, "querynode"):
        pytest.skip("looks inside the query node: a cluster's nodes are processes; the standalone variants cover it")
    import time

    from vecdb.index.scalar import segment_scalar_index

    client.create_collection(name, schema=_schema())
    cols = _data(5)
    _index(client, name, "vec", "FLAT", metric_type="L2")
    _index(client, name, "s", "Trie")
    client.insert(name, _rows(cols, 0, 2000))
    client.flush(name)
    client.load_collection(name)
    _index(client, name, "i32", "STL_SORT")
    coll = next(c for c in server.querynode.collections.values() if c.info.name == name)
    sealed = [s for shard in coll.shards for s in shard.segments.values() if s.sealed]
    assert sealed and sum(s.n for s in sealed) == 2000
    deadline = time.time() + 30
    while time.time() < deadline and not all(
            segment_scalar_index(s, f) is not None for s in sealed for f in ("s", "i32")):
        time.sleep(0.05)
    for seg in sealed:
        for f in ("s", "i32"):
            idx = segment_scalar_index(seg, f)
            assert idx is not None and idx.n == seg.n
            np.testing.assert_array_equal(idx.values, np.sort(seg.column(f), kind="stable"))
        assert segment_scalar_index(seg, "d") is None
    got = client.query(name, filter="i32 >= 30 and s == 'kiwi'", output_fields=["id"], limit=N)
    keep = (cols["i32"][:2000] >= 30) & (cols["s"][:2000] == "kiwi")
    assert sorted(r["id"] for r in got) == sorted(cols["id"][:2000][keep].tolist())


def test_ngram_index_and_like_filters(client, name):
    """NGRAM (Milvus 2.6) on a VARCHAR field and a JSON path cast to VARCHAR: taken with Milvus's checks,
    described with its grams, and ``like`` filters over sealed and growing rows answer as without it."""
    client.create_collection(name, schema=_schema())
    _index(client, name, "vec", "FLAT", metric_type="L2")
    _refused(client, name, "i32", "NGRAM", 1100, "Ngram index can only be created on VARCHAR or JSON field",
             min_gram=2, max_gram=3)
    _refused(client, name, "s", "NGRAM", 1100, "invalid min_gram or max_gram value for Ngram index, min_gram: 3, "
             "max_gram: 2", min_gram=3, max_gram=2)
    _index(client, name, "s", "NGRAM", min_gram=2, max_gram=3)
    _index(client, name, "j", "NGRAM", json_cast_type="varchar", json_path='j["w"]', min_gram=1, max_gram=2)
    d = client.describe_index(name, "s_idx")
    assert (d["index_type"], str(d["min_gram"]), str(d["max_gram"])) == ("NGRAM", "2", "3")
    client.load_collection(name)
    cols = _data(5)
    rows = _rows(cols, 0, N)
    for r in rows:
        r["j"] = {"w": r["s"]}
    client.insert(name, rows[:2000])
    client.flush(name)
    client.insert(name, rows[2000:])
    for expr, want in (("s like 'ap%'", [w.startswith("ap") for w in cols["s"]]),
                       ("s like '%i%'", ["i" in w for w in cols["s"]]),
                       ('j["w"] like "%e"', [w.endswith("e") for w in cols["s"]])):
        got = client.query(name, expr, output_fields=["id"], limit=N, consistency_level="Strong")
        assert sorted(r["id"] for r in got) == sorted(cols["id"][np.array(want)].tolist()), expr


def test_nullable_fields_with_an_index_equal_the_reference(server, client, name):
    """Nullable fields with scalar indexes (their null rows sorted with the placeholder, the validity
    masked as the scan masks it): comparisons, in-lists, `not` and `is null` give the reference's rows,
    sealed and growing; a standalone server's sealed segments answer from the index."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("i32", DataType.INT32, nullable=True)
    schema.add_field("s", DataType.VARCHAR, max_length=16, nullable=True)
    schema.add_field("b", DataType.BOOL, nullable=True)
    client.create_collection(name, schema=schema)
    cols = _data(7)
    rng = np.random.default_rng(7)
    null = {f: rng.random(N) < 0.3 for f in ("i32", "s", "b")}
    rows = [{"id": int(cols["id"][i]), "vec": cols["vec"][i].tolist(),
             "i32": None if null["i32"][i] else int(cols["i32"][i]), "s": None if null["s"][i] else str(cols["s"][i]),
             "b": None if null["b"][i] else bool(cols["b"][i])} for i in range(N)]
    _index(client, name, "vec", "FLAT", metric_type="L2")
    _index(client, name, "i32", "STL_SORT")
    _index(client, name, "s", "INVERTED")
    _index(client, name, "b", "BITMAP")
    client.insert(name, rows[:2000])
    client.flush(name)
    client.load_collection(name)
    client.insert(name, rows[2000:])

    def ok(f):
        return ~null[f]

    filters = {
        "i32 == 0": ok("i32") & (cols["i32"] == 0), "i32 != 0": ok("i32") & (cols["i32"] != 0),
        "i32 < 3": ok("i32") & (cols["i32"] < 3), "not (i32 >= 3)": ok("i32") & ~(cols["i32"] >= 3),
        "i32 in [0, 5]": ok("i32") & np.isin(cols["i32"], [0, 5]),
        "i32 not in [0]": ok("i32") & (cols["i32"] != 0), "i32 is null": null["i32"],
        "s == ''": ok("s") & (cols["s"] == ""), "s != 'fig'": ok("s") & (cols["s"] != "fig"),
        "s > 'kiwi'": ok("s") & (cols["s"].astype(str) > "kiwi"), "s is not null and b == false":
            ok("s") & ok("b") & ~cols["b"], "b == false": ok("b") & ~cols["b"], "not b": ok("b") & ~cols["b"],
    }
    if hasattr(server, "querynode"):
        import time

        from vecdb.index.scalar import segment_scalar_index

        coll = next(c for c in server.querynode.collections.values() if c.info.name == name)
        sealed = [s for shard in coll.shards for s in shard.segments.values() if s.sealed]
        deadline = time.time() + 30
        while time.time() < deadline and not all(
                segment_scalar_index(s, f) is not None for s in sealed for f in ("i32", "s", "b")):
            time.sleep(0.05)
        assert sealed and all(segment_scalar_index(s, f) is not None for s in sealed for f in ("i32", "s", "b"))
    for expr, keep in filters.items():
        got = client.query(name, filter=expr, output_fields=["id"], limit=N, consistency_level="Strong")
        assert sorted(r["id"] for r in got) == sorted(cols["id"][keep].tolist()), expr

"""JSON path indexes (Milvus 2.5+: INVERTED on a JSON field with ``json_cast_type`` and ``json_path``)
and ARRAY indexes (INVERTED / BITMAP / AUTOINDEX on an ARRAY field, its elements sorted) via pymilvus
on every deployment: filters return the rows they returned before the indexes existed, sealed and
growing rows together, after the indexes are made on the loaded collection and again after a release
and load (they are rebuilt); on a standalone server the sealed segments' indexes answer
(vecdb.index.json_path, vecdb.index.array_elements)."""

from __future__ import annotations

import random
import time

import pytest
from pymilvus import DataType, MilvusClient

N, SEALED = 3000, 2000
CASTS = {"varchar": ("s", "str"), "double": ("x", "num"), "bool": ("b", "bool")}  # cast: (its path's key, category)
# each path holds values of every type; each is compared with constants of every type
FILTERS = [f for key in ("s", "x", "b") for f in (
    f'j["{key}"] == "b3"', f'j["{key}"] != "b3"', f'j["{key}"] > "b5"', f'j["{key}"] <= "a"',
    f'j["{key}"] in ["a1", "b2", "zz"]', f'j["{key}"] not in ["a1", "b2"]', f'j["{key}"] == 7', f'j["{key}"] >= 40',
    f'j["{key}"] < 2.5', f'j["{key}"] in [1, 2.5, 99]', f'j["{key}"] == true', f'j["{key}"] != false',
    f'j["{key}"] == "b3" and id < 1500', f'j["{key}"] > 10 or j["{key}"] == "a1"', f'not (j["{key}"] >= "b")',
    f'j["{key}"] like "b%"')] + ['j["n"]["k"] == 3']


def _rows():
    rng = random.Random(5)

    def value(i):
        kind = rng.random()
        if kind < 0.35:
            return rng.choice("ab") + str(rng.randint(0, 9))
        if kind < 0.6:
            return rng.randint(0, 60)
        if kind < 0.7:
            return rng.randint(0, 40) / 4
        if kind < 0.8:
            return rng.random() < 0.5
        if kind < 0.9:
            return [1, "b3"]
        return None

    return [{"id": i, "vec": [float(i % 7), 1.0],
             "j": ({"s": value(i), "x": value(i), "b": value(i), "n": {"k": i % 5}} if i % 11 else {"other": 1})}
            for i in range(N)]


def _query(client, name, expr):
    return sorted(r["id"] for r in client.query(name, expr, output_fields=["id"], limit=N, consistency_level="Strong"))


def _all(client, name):
    return {f: _query(client, name, f) for f in FILTERS}


def _wait_for_indexes(server, name, built, keys) -> bool:
    """Standalone: wait until every sealed segment holds each index ``built(segment, key)`` finds (the
    query node builds them in the background); False elsewhere (a cluster's nodes are processes)."""
    if not hasattr(server, "querynode"):
        return False
    coll = next(c for c in server.querynode.collections.values() if c.info.name == name)
    sealed = [s for shard in coll.shards for s in shard.segments.values() if s.sealed]
    deadline = time.time() + 30
    while time.time() < deadline and not all(built(s, k) is not None for s in sealed for k in keys):
        time.sleep(0.05)
    assert sealed and all(built(s, k) is not None for s in sealed for k in keys)
    return True


def _wait_for_path_indexes(server, name) -> bool:
    from vecdb.index.json_path import segment_json_index

    return _wait_for_indexes(server, name, segment_json_index, [("j", (key,), cat) for key, cat in CASTS.values()])


def _count_index_reads(monkeypatch) -> list:
    from vecdb.index.json_path import JsonPathIndex

    calls: list = []
    compare, isin = JsonPathIndex.compare, JsonPathIndex.isin
    monkeypatch.setattr(JsonPathIndex, "compare",
                        lambda self, op, v: calls.append((self.cat, op)) or compare(self, op, v))
    monkeypatch.setattr(JsonPathIndex, "isin", lambda self, vals: calls.append((self.cat, "in")) or isin(self, vals))
    return calls


def test_json_path_indexes_give_the_scans_rows(server, client, name, monkeypatch):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("j", DataType.JSON)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    rows = _rows()
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    client.load_collection(name)
    before = _all(client, name)
    assert before['j["s"] == "b3"'] == [r["id"] for r in rows if r["j"].get("s") == "b3"]
    assert before['j["s"] != "b3"'] == [r["id"] for r in rows if r["j"].get("s") != "b3"]  # missing keys too
    assert before['j["b"] == true'] == [r["id"] for r in rows if r["j"].get("b") is True]

    for cast, (key, _) in CASTS.items():  # several indexes on one JSON field, one per path (Milvus 2.5+)
        idx = client.prepare_index_params()
        idx.add_index(field_name="j", index_type="INVERTED", index_name=f"j_{key}",
                      params={"json_cast_type": cast, "json_path": f'j["{key}"]'})
        client.create_index(name, idx)
    assert client.describe_index(name, "j_x")["json_cast_type"].lower() == "double"
    assert sorted(client.list_indexes(name)) == ["j_b", "j_s", "j_x", "vec"]
    standalone = _wait_for_path_indexes(server, name)
    calls = _count_index_reads(monkeypatch)
    assert _all(client, name) == before
    if standalone:  # the sealed segment's indexes answered each category's comparisons
        assert {cat for cat, _ in calls} == {cat for _, cat in CASTS.values()}, calls

    client.release_collection(name)
    client.load_collection(name)
    _wait_for_path_indexes(server, name)
    assert _all(client, name) == before


@pytest.mark.parametrize("cast", ["array_double", "json"])
def test_cast_types_that_build_nothing_scan(client, name, cast):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("j", DataType.JSON)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    idx.add_index(field_name="j", index_type="INVERTED", params={"json_cast_type": cast, "json_path": 'j["k"]'})
    client.create_collection(name, schema=schema, index_params=idx)
    client.insert(name, [{"id": i, "vec": [1.0, 0.0], "j": {"k": [i, 2]}} for i in range(10)])
    client.flush(name)
    assert _query(client, name, 'json_contains(j["k"], 3)') == [3]
    assert _query(client, name, 'j["k"] == [4, 2]') == [4]


def test_one_index_per_json_path(client, name):
    """A JSON field takes one index per path, each named (Milvus 2.5+); the same path again with other
    parameters, or an unnamed index on another path (it takes the field's index's name), is refused
    (702); the same index again is no error; dropping one leaves the others."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("j", DataType.JSON)
    client.create_collection(name, schema=schema)

    def create(path: str, cast: str = "varchar", index_name: str = ""):
        idx = client.prepare_index_params()
        idx.add_index(field_name="j", index_type="INVERTED", index_name=index_name,
                      params={"json_cast_type": cast, "json_path": path})
        client.create_index(name, idx)

    create('j["a"]')  # unnamed: the field's name
    create('j["a"]')  # the same again
    create('j["b"]', "double", "j_b")
    with pytest.raises(Exception, match="at most one distinct index is allowed per field") as e:
        create('j["a"]', "double", "j_a2")
    assert e.value.code == 702
    with pytest.raises(Exception, match="at most one distinct index is allowed per field"):
        create('j["c"]')
    assert sorted(client.list_indexes(name)) == ["j", "j_b"]
    assert client.describe_index(name, "j")["json_path"] == 'j["a"]'
    assert client.describe_index(name, "j_b")["json_cast_type"].lower() == "double"
    client.drop_index(name, "j")
    assert client.list_indexes(name) == ["j_b"]
    create('j["a"]', "bool", "j_a")
    assert sorted(client.list_indexes(name)) == ["j_a", "j_b"]


ARRAY_FILTERS = ["array_contains(ai, 3)", "array_contains(ai, 99)", "array_contains_any(ai, [1, 7, 40])",
                 "array_contains_all(ai, [2, 3])", "not array_contains(ai, 0)", 'array_contains(av, "b")',
                 'array_contains_any(av, ["a", "zz"])', 'array_contains_all(av, ["a", "c"])',
                 "array_contains(af, 0.5)", "array_contains_any(af, [1.25, 2])", "array_contains(ab, true)",
                 "array_contains(ai, 3) and id < 1000", "array_contains(ai, 3) or array_contains(av, \"c\")"]


def test_array_indexes_give_the_scans_rows(server, client, name, monkeypatch):
    """INVERTED / BITMAP / AUTOINDEX on ARRAY fields (INT64, VARCHAR, FLOAT, BOOL elements): the
    array_contains filters return the rows they returned before the indexes existed, sealed and
    growing rows together, and again after a release and load; a standalone server's sealed segments
    answer them from the index (vecdb.index.array_elements)."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("ai", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    schema.add_field("av", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=4)
    schema.add_field("af", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=8)
    schema.add_field("ab", DataType.ARRAY, element_type=DataType.BOOL, max_capacity=8)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    rng = random.Random(9)
    rows = [{"id": i, "vec": [1.0, 0.0], "ai": [rng.randint(0, 9) for _ in range(rng.randint(0, 5))],
             "av": [rng.choice("abcd") for _ in range(rng.randint(0, 3))],
             "af": [rng.randint(0, 8) / 4 for _ in range(rng.randint(0, 3))],
             "ab": [rng.random() < 0.3 for _ in range(rng.randint(0, 2))]} for i in range(N)]
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    client.load_collection(name)
    before = {f: _query(client, name, f) for f in ARRAY_FILTERS}
    assert before["array_contains(ai, 3)"] == [r["id"] for r in rows if 3 in r["ai"]]
    assert before['array_contains_all(av, ["a", "c"])'] == [r["id"] for r in rows if {"a", "c"} <= set(r["av"])]

    idx = client.prepare_index_params()
    for field, kind in (("ai", "INVERTED"), ("av", "BITMAP"), ("af", "INVERTED"), ("ab", "AUTOINDEX")):
        idx.add_index(field_name=field, index_type=kind)
    client.create_index(name, idx)
    from vecdb.index.array_elements import ArrayElementsIndex, segment_array_index

    if _wait_for_indexes(server, name, segment_array_index, ("ai", "av", "af", "ab")):
        calls: list = []
        isin, rows_with = ArrayElementsIndex.isin, ArrayElementsIndex.rows_with
        monkeypatch.setattr(ArrayElementsIndex, "isin", lambda self, v: calls.append("any") or isin(self, v))
        monkeypatch.setattr(ArrayElementsIndex, "rows_with", lambda self, v: calls.append("all") or rows_with(self, v))
        assert {f: _query(client, name, f) for f in ARRAY_FILTERS} == before
        assert {"any", "all"} <= set(calls)
    else:
        assert {f: _query(client, name, f) for f in ARRAY_FILTERS} == before
    client.release_collection(name)
    client.load_collection(name)
    assert {f: _query(client, name, f) for f in ARRAY_FILTERS} == before


def test_dynamic_keys_take_json_path_indexes(server, client, name):
    """A dynamic field's keys are indexed as Milvus 2.5+ documents it: ``field_name`` the key,
    AUTOINDEX or INVERTED with ``json_path`` and ``json_cast_type``; the index is the dynamic field's
    ($meta) and filters on the key give the scan's rows."""
    schema = MilvusClient.create_schema(enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    rows = [{"id": i, "vec": [1.0, 0.0], "overview": f"w{i % 7}", "words": i % 50,
             "dynamic_json": {"nested": {"value": i % 9}}} for i in range(N)]
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    client.load_collection(name)
    filters = ['overview == "w3"', "words >= 45", 'dynamic_json["nested"]["value"] < 2', 'overview in ["w1", "w2"]']
    before = {f: _query(client, name, f) for f in filters}
    assert before["words >= 45"] == [r["id"] for r in rows if r["words"] >= 45]
    idx = client.prepare_index_params()
    idx.add_index(field_name="overview", index_type="AUTOINDEX", index_name="overview_index",
                  params={"json_cast_type": "varchar", "json_path": "overview"})
    idx.add_index(field_name="words", index_type="INVERTED", index_name="words_index",
                  params={"json_cast_type": "double", "json_path": "words"})
    idx.add_index(field_name="dynamic_json", index_type="AUTOINDEX", index_name="nested_index",
                  params={"json_cast_type": "double", "json_path": "dynamic_json['nested']['value']"})
    client.create_index(name, idx)
    assert client.describe_index(name, "words_index")["json_path"] == "words"
    from vecdb.index.json_path import segment_json_index

    _wait_for_indexes(server, name, segment_json_index, [("$meta", ("overview",), "str"), ("$meta", ("words",), "num"),
                                                         ("$meta", ("dynamic_json", "nested", "value"), "num")])
    assert {f: _query(client, name, f) for f in filters} == before

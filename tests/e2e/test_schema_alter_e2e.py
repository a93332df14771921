"""Milvus 3.0's AlterCollectionSchema through pymilvus 3.0 on every deployment: ``drop_collection_field``
on a loaded collection with sealed and growing rows (reads no longer return the field, filters on it
are refused, inserts without it are taken and with it refused, its index goes, a field added later
gets a new id), ``add_function_field`` of a BM25 function on a collection with text (full-text search
finds the rows written before, backfilled, and after), ``drop_function_field``, and Milvus's refusals
(1100 with its messages)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

WORDS = "apple banana cherry delta echo foxtrot golf hotel".split()


def _create(client, name, text: bool = False):
    s = MilvusClient.create_schema(enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("tag", DataType.VARCHAR, max_length=16)
    s.add_field("score", DataType.INT64)
    if text:
        s.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True)
    client.create_collection(name, schema=s)
    idx = client.prepare_index_params()
    idx.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    idx.add_index(field_name="score", index_type="STL_SORT")
    client.create_index(name, idx)
    client.load_collection(name)


def _rows(lo, hi, score=True, text=False):
    out = []
    for i in range(lo, hi):
        r = {"id": i, "v": [float(i % 7), float(i % 5)], "tag": f"t{i % 3}"}
        if score:
            r["score"] = i
        if text:
            r["text"] = f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3) % len(WORDS)]}"
        out.append(r)
    return out


def _refused(fn, *messages, code=1100):
    with pytest.raises(MilvusException) as e:
        fn()
    assert any(m in e.value.message for m in messages), e.value.message
    if code is not None:
        assert e.value.code == code, (e.value.code, e.value.message)


def test_drop_field_from_loaded_collection(client, name):
    _create(client, name)
    client.insert(name, _rows(0, 50))
    client.flush(name)  # sealed
    client.insert(name, _rows(50, 80))  # growing
    before = {f["name"]: f["field_id"] for f in client.describe_collection(name)["fields"]}
    client.drop_collection_field(name, field_name="score")
    desc = client.describe_collection(name)
    assert [f["name"] for f in desc["fields"]] == ["id", "v", "tag"]
    assert "score" not in [client.describe_index(name, i)["field_name"] for i in client.list_indexes(name)]
    got = client.query(name, "id >= 0", output_fields=["*"], consistency_level="Strong", limit=1000)
    assert len(got) == 80 and all(set(r) == {"id", "v", "tag"} for r in got)
    hits = client.search(name, [[1.0, 1.0]], limit=5, output_fields=["*"], consistency_level="Strong")[0]
    assert len(hits) == 5 and all(set(h["entity"]) == {"id", "v", "tag"} for h in hits)
    _refused(lambda: client.query(name, "score > 3", consistency_level="Strong"), "score", code=None)
    _refused(lambda: client.query(name, "id >= 0", output_fields=["score"]), "score", code=None)
    client.insert(name, _rows(80, 100, score=False))  # without it: taken
    _refused(lambda: client.insert(name, _rows(100, 101)), "score", code=None)  # with it: an unknown field
    assert client.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 100
    client.flush(name)
    client.compact(name)
    got = client.query(name, 'tag == "t1"', output_fields=["id"], consistency_level="Strong", limit=1000)
    assert sorted(r["id"] for r in got) == [i for i in range(100) if i % 3 == 1]
    # a field added now never gets the dropped field's id (its column is still in old segment files)
    client.add_collection_field(name, "score", DataType.INT64, nullable=True)
    after = {f["name"]: f["field_id"] for f in client.describe_collection(name)["fields"]}
    assert after["score"] > before["score"]
    got = client.query(name, "score is null", output_fields=["id", "score"], consistency_level="Strong", limit=1000)
    assert len(got) == 100 and all(r["score"] is None for r in got)


def test_drop_field_by_id(client, name):
    _create(client, name)
    client.insert(name, _rows(0, 10))
    fid = {f["name"]: f["field_id"] for f in client.describe_collection(name)["fields"]}["tag"]
    client.drop_collection_field(name, field_id=fid)
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "v", "score"]


def test_drop_field_refused(client, name):
    _create(client, name, text=True)
    bm25 = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                    output_field_names=["sparse"])
    idx = client.prepare_index_params()
    idx.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.add_function_field(name, _sparse_field(), bm25, idx)
    for field, message in [("id", "cannot drop primary key field: id"),
                           ("v", "cannot drop the last vector field"),
                           ("nope", "field not found: nope"),
                           ("text", "field is referenced by function bm as input"),
                           ("sparse", "field is referenced by function bm as output, drop function first")]:
        if field == "v":  # the BM25 output is a vector field too: drop it first
            continue
        _refused(lambda f=field: client.drop_collection_field(name, field_name=f), message)
    _refused(lambda: client.drop_function_field(name, "nofn"), "function not found: nofn")
    client.drop_function_field(name, "bm")
    _refused(lambda: client.drop_collection_field(name, field_name="v"), "cannot drop the last vector field: v")
    names = [f["name"] for f in client.describe_collection(name)["fields"]]
    assert names == ["id", "v", "tag", "score", "text"]


def _sparse_field():
    return MilvusClient.create_field_schema("sparse", DataType.SPARSE_FLOAT_VECTOR)


def _bm25(client, name):
    fn = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                  output_field_names=["sparse"])
    idx = client.prepare_index_params()
    idx.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.add_function_field(name, _sparse_field(), fn, idx)


def _found(client, name, word):
    res = client.search(name, [word], anns_field="sparse", limit=1000, output_fields=["id"],
                        search_params={"metric_type": "BM25"}, consistency_level="Strong")
    return sorted(h["id"] for h in res[0])


def test_add_bm25_function_field_backfills(client, name):
    _create(client, name, text=True)
    rows = _rows(0, 60, text=True)
    client.insert(name, rows[:40])
    client.flush(name)  # sealed, without the output
    client.insert(name, rows[40:])  # growing, without it
    _bm25(client, name)
    desc = client.describe_collection(name)
    assert [f["name"] for f in desc["fields"]][-1] == "sparse"
    assert [f["name"] for f in desc["functions"]] == ["bm"]
    assert client.describe_index(name, "sparse")["metric_type"] == "BM25"
    new = _rows(60, 90, text=True)
    client.insert(name, new)  # the output computed at insert, as at create

    def want(word):
        return [r["id"] for r in rows + new if word in r["text"].split()]

    for word in ("apple", "golf", "cherry"):
        assert _found(client, name, word) == want(word), word
    client.flush(name)
    client.release_collection(name)
    client.load_collection(name)  # sealed segments read again: the output computed from their text
    for word in ("banana", "hotel"):
        assert _found(client, name, word) == want(word), word
    client.drop_function_field(name, "bm")
    desc = client.describe_collection(name)
    assert "sparse" not in [f["name"] for f in desc["fields"]] and not desc.get("functions")
    assert "sparse" not in client.list_indexes(name)
    got = client.query(name, "id >= 0", output_fields=["*"], consistency_level="Strong", limit=1000)
    assert len(got) == 90 and "sparse" not in got[0]


def test_add_function_field_refused(client, name):
    _create(client, name, text=True)
    idx = client.prepare_index_params()
    idx.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    fn = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["tag"],
                  output_field_names=["sparse"])  # tag has no analyzer
    _refused(lambda: client.add_function_field(name, _sparse_field(), fn, idx), "enable_analyzer", "analyzer")
    fn = Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                  output_field_names=["sparse"])
    bad = client.prepare_index_params()
    bad.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    _refused(lambda: client.add_function_field(name, _sparse_field(), fn, bad), "only BM25 metric type")
    lower = client.prepare_index_params()  # (a metric is named in capitals, as at create_index)
    lower.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="bm25")
    _refused(lambda: client.add_function_field(name, _sparse_field(), fn, lower), "metric type bm25 not found")
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "v", "tag", "score", "text"]

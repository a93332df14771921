"""``like`` through NGRAM indexes (Milvus 2.6) via pymilvus on every deployment: a VARCHAR field
(nullable) and a JSON path cast to VARCHAR, sealed and growing rows; every pattern shape returns the
rows it returned before the index existed (and that the scan's matcher selects here), after the index
is made on the loaded collection and again after a release and load (the index is rebuilt)."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from vecdb.expr.like import compile_like

N, SEALED = 3000, 2000
ALPHABET = "abcab%_é中 "
PATTERNS = ["ab%", "%ab", "%ab%", "%abc%", "a_c%", "%a%b%", "%b_a%", "%", "", "abc", "%\\%%", "%\\_a%",
            "%é中%", "%中 a%", "%cab%ba%"]


def _data():
    rng = random.Random(11)
    words = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 9))) for _ in range(N)]
    nulls = [rng.random() < 0.1 for _ in range(N)]
    rows = [{"id": i, "vec": [float(i % 7), 1.0], "s": None if nulls[i] else w,
             "j": {"w": w} if i % 6 else {"w": i}} for i, w in enumerate(words)]
    return words, nulls, rows


def _expected(words, nulls, pattern: str, json: bool) -> list[int]:
    m = compile_like(pattern)
    hit = m(np.array(words, dtype=object))
    keep = [i for i in range(N) if hit[i] and (i % 6 if json else not nulls[i])]
    return sorted(keep)


def _query(client, name, expr):
    return sorted(r["id"] for r in client.query(name, expr, output_fields=["id"], limit=N,
                                                 consistency_level="Strong"))


def _all(client, name):
    return {(f, p): _query(client, name, f"{f} like '{p}'") for f in ("s", 'j["w"]') for p in PATTERNS}


def _wait_for_ngram(server, name):
    """Standalone: wait until every sealed segment holds both NGRAM indexes (a cluster's query nodes
    are processes; the results are the same either way, only the wait differs)."""
    if not hasattr(server, "querynode"):
        return
    from vecdb.index.ngram import segment_ngram_index

    coll = next(c for c in server.querynode.collections.values() if c.info.name == name)
    sealed = [s for shard in coll.shards for s in shard.segments.values() if s.sealed]
    keys = [("s", ()), ("j", ("w",))]
    deadline = time.time() + 30
    while time.time() < deadline and not all(segment_ngram_index(s, k) is not None for s in sealed for k in keys):
        time.sleep(0.05)
    assert sealed and all(segment_ngram_index(s, k) is not None for s in sealed for k in keys)


def _count_index_reads(server, monkeypatch) -> list:
    """Standalone: a list that grows by one each time a segment's NGRAM index answers a ``like``."""
    calls: list = []
    if hasattr(server, "querynode"):
        from vecdb.index.ngram import NgramIndex

        like = NgramIndex.like

        def counted(self, literals, matcher):
            res = like(self, literals, matcher)
            if res is not None:
                calls.append(matcher.pattern)
            return res

        monkeypatch.setattr(NgramIndex, "like", counted)
    return calls


def test_like_with_ngram_index_equals_without(server, client, name, monkeypatch):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("s", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field("j", DataType.JSON)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    words, nulls, rows = _data()
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    client.load_collection(name)
    before = _all(client, name)
    for (field, pattern), got in before.items():
        assert got == _expected(words, nulls, pattern, field != "s"), (field, pattern)

    idx = client.prepare_index_params()
    idx.add_index(field_name="s", index_type="NGRAM", index_name="s_ngram", params={"min_gram": 2, "max_gram": 3})
    idx.add_index(field_name="j", index_type="NGRAM", index_name="j_ngram",
                  params={"json_cast_type": "varchar", "json_path": 'j["w"]', "min_gram": 1, "max_gram": 2})
    client.create_index(name, idx)
    assert client.describe_index(name, "j_ngram")["index_type"] == "NGRAM"
    _wait_for_ngram(server, name)
    calls = _count_index_reads(server, monkeypatch)
    assert _all(client, name) == before
    if hasattr(server, "querynode"):  # standalone: the sealed segment's indexes answered
        assert len(calls) >= 10, calls

    client.release_collection(name)
    client.load_collection(name)
    _wait_for_ngram(server, name)
    assert _all(client, name) == before
    got = client.query(name, "s like '%ab%' and id < 500", output_fields=["id"], limit=N, consistency_level="Strong")
    assert sorted(r["id"] for r in got) == [i for i in before[("s", "%ab%")] if i < 500]


@pytest.mark.parametrize("grams", [(1, 1), (3, 5)])
def test_gram_ranges_at_the_edges(client, name, grams):
    """min_gram 1 (every literal is long enough) and 3..5 (short literals scan, long ones are split)."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("s", DataType.VARCHAR, max_length=32)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    idx.add_index(field_name="s", index_type="NGRAM", params={"min_gram": grams[0], "max_gram": grams[1]})
    client.create_index(name, idx)
    words, _, rows = _data()
    client.insert(name, [{"id": r["id"], "vec": r["vec"], "s": words[r["id"]]} for r in rows])
    client.flush(name)
    client.load_collection(name)
    for pattern in PATTERNS + ["%abcab%", "%ab_ab%", "a%"]:
        want = sorted(np.flatnonzero(compile_like(pattern)(np.array(words, dtype=object))).tolist())
        assert _query(client, name, f"s like '{pattern}'") == want, pattern

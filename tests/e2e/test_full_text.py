"""Full-text search (Milvus 2.5's BM25 function) through pymilvus on every deployment: a VARCHAR field
with the standard analyzer, a BM25 function filling a sparse field at insert, search with raw text
and metric BM25, checked against a reference BM25 computed here with numpy over the same tokens
(N, avgdl and df over every stored row, Milvus's idf and knowhere's saturation); filters, limits,
output fields, k1/b from the index, sealed + growing segments, upserts and deletes, hybrid search
with a dense field, describe_collection, and the refusals (Milvus's messages and codes).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, MilvusException, RRFRanker
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from tests.e2e._helpers import raw_stub

VOCAB = ("apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu the and of").split()
STOP = {"the", "and", "of"}


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(VOCAB) + 1)  # Zipf-like: some words in most rows, some rare
    weights /= weights.sum()
    out = []
    for _ in range(n):
        words = rng.choice(VOCAB, int(rng.integers(0, 16)), p=weights)
        # capitals and punctuation the analyzer must see through
        out.append(", ".join(w.upper() if rng.random() < 0.2 else w for w in words) + ("!" if len(words) else ""))
    return out


def _tokens(text: str, stop: set[str]) -> list[str]:
    return [t for t in re.findall(r"[a-z]+", text.lower()) if t not in stop]


def _reference(docs: dict[int, str], live: set[int], query: str, limit: int, k1: float, b: float,
               stop: set[str], flt=None, tokens=_tokens) -> list[tuple[int, float]]:
    """BM25 as Milvus scores it: statistics over every stored row (``docs``: deleted ones included, as
    Milvus keeps them until compaction), hits among ``live`` rows sharing a term with the query."""
    pks = np.array(sorted(docs))
    toks = [tokens(docs[pk], stop) for pk in pks]
    dl = np.array([len(t) for t in toks], np.float64)
    n, avgdl = len(pks), dl.sum() / len(pks)
    q = tokens(query, stop)
    score = np.zeros(n)
    hit = np.zeros(n, bool)
    for term in set(q):
        tf = np.array([t.count(term) for t in toks], np.float64)
        df = np.count_nonzero(tf)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        score += q.count(term) * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        hit |= tf > 0
    keep = hit & np.isin(pks, list(live))
    if flt is not None:
        keep &= np.array([flt(pk) for pk in pks])
    order = np.lexsort((pks[keep], -score[keep]))[:limit]
    return list(zip(pks[keep][order].tolist(), score[keep][order].tolist(), strict=True))


def _schema(analyzer_params=None):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    kw = {"analyzer_params": analyzer_params} if analyzer_params is not None else {}
    schema.add_field("text", DataType.VARCHAR, max_length=2000, enable_analyzer=True, **kw)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("grp", DataType.INT64)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    return schema


def _create(client, name, analyzer_params=None, k1=None, b=None):
    client.create_collection(name, schema=_schema(analyzer_params))
    idx = client.prepare_index_params()
    params = {k: v for k, v in (("bm25_k1", k1), ("bm25_b", b)) if v is not None}
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=params)
    idx.add_index("dense", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)


def _rows(texts: list[str], start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"id": start + i, "text": t, "dense": rng.random(4).tolist(), "grp": (start + i) % 3}
            for i, t in enumerate(texts)]


QUERIES = ["apple banana", "Cherry, DELTA delta echo", "zulu yankee xray the", "kilo", "nothing matches here"]


def _check(client, name, docs, live, limit=10, k1=1.2, b=0.75, stop=frozenset(), flt_expr="", flt=None,
           output_fields=None, tol=1e-4):
    res = client.search(name, QUERIES, anns_field="sparse", limit=limit, filter=flt_expr,
                        output_fields=output_fields or [], search_params={"metric_type": "BM25"},
                        consistency_level="Strong")
    assert len(res) == len(QUERIES)
    for query, hits in zip(QUERIES, res, strict=True):
        want = _reference(docs, live, query, limit, k1, b, set(stop), flt)
        got = [(h["id"], h["distance"]) for h in hits]
        assert len(got) == len(want), (query, got, want)
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=tol, atol=tol)
        ref = dict(_reference(docs, live, query, len(docs), k1, b, set(stop), flt))
        for pk, s in got:  # every hit is a right one, with its own score (ties may swap places)
            assert pk in ref and abs(ref[pk] - s) <= tol * max(1.0, abs(s)), (query, pk, s, ref.get(pk))
        if output_fields:
            for h in hits:
                assert h["entity"]["text"] == docs[h["id"]]
    return res


def test_bm25_search_matches_a_reference_bm25(client, name):
    _create(client, name)
    texts = _texts(300, 1)
    client.insert(name, _rows(texts))
    docs = dict(enumerate(texts))
    live = set(docs)
    _check(client, name, docs, live, limit=10, output_fields=["text"])
    _check(client, name, docs, live, limit=50)
    _check(client, name, docs, live, limit=5, flt_expr="grp == 1", flt=lambda pk: pk % 3 == 1)
    # nothing matches: empty result, not an error
    res = client.search(name, ["nothing here"], anns_field="sparse", limit=5, search_params={"metric_type": "BM25"},
                        consistency_level="Strong")
    assert list(res[0]) == []
    # the stored term frequencies are the server's, readable as sparse vectors
    got = client.query(name, filter="id in [0, 1]", output_fields=["sparse", "text"], consistency_level="Strong")
    for row in got:
        assert sum(row["sparse"].values()) == len(_tokens(row["text"], set()))


def _check_per_node(client, name, docs, live, stop):
    """The hits are the live rows sharing a term with the query, best first."""
    for query in QUERIES:
        hits = client.search(name, [query], anns_field="sparse", limit=len(docs), consistency_level="Strong",
                             search_params={"metric_type": "BM25"})[0]
        q = set(_tokens(query, stop))
        assert {h["id"] for h in hits} == {pk for pk in live if q & set(_tokens(docs[pk], stop))}
        scores = [h["distance"] for h in hits]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def test_bm25_index_params_stop_words_sealed_growing_upsert_delete(server, client, name):
    exact = True  # every deployment: a search over several query nodes sums their statistics first (vecdb.bm25)
    _create(client, name, analyzer_params={"type": "standard", "stop_words": ["_english_"]}, k1=1.6, b=0.4)
    texts = _texts(200, 2)
    client.insert(name, _rows(texts))
    client.flush(name)
    more = _texts(150, 3)
    client.insert(name, _rows(more, 200))
    docs = {**dict(enumerate(texts)), **{200 + i: t for i, t in enumerate(more)}}
    live = set(docs)
    kw = {"k1": 1.6, "b": 0.4, "stop": STOP}
    if exact:
        _check(client, name, docs, live, **kw)
    else:
        _check_per_node(client, name, docs, live, STOP)
    # deletes leave the statistics as they are (Milvus drops them at compaction); hits go
    client.delete(name, ids=[0, 1, 2, 250])
    live -= {0, 1, 2, 250}
    # an upsert: a new text for rows 10 and 260 (the old rows stay counted, deleted)
    new = _texts(2, 4)
    client.upsert(name, _rows(new[:1], 10) + _rows(new[1:], 260))
    stats_docs = dict(docs)
    stats_docs[10_000], stats_docs[10_001] = docs[10], docs[260]  # the replaced rows, still counted
    stats_docs[10], stats_docs[260] = new[0], new[1]
    if exact:
        res = _check(client, name, stats_docs, live, **kw)
        assert all(h["id"] not in (0, 1, 2, 250, 10_000, 10_001) for hits in res for h in hits)
    docs.update({10: new[0], 260: new[1]})
    _check_per_node(client, name, docs, live, STOP)


def test_bm25_in_hybrid_search_with_rrf(client, name):
    _create(client, name)
    texts = _texts(200, 5)
    client.insert(name, _rows(texts))
    rng = np.random.default_rng(9)
    dense_q = rng.random(4).tolist()
    text_req = AnnSearchRequest(["apple cherry"], "sparse", {"metric_type": "BM25"}, limit=20)
    dense_req = AnnSearchRequest([dense_q], "dense", {"metric_type": "L2"}, limit=20)
    fused = client.hybrid_search(name, [text_req, dense_req], RRFRanker(60), limit=10, output_fields=["text"],
                                 consistency_level="Strong")[0]
    one = client.search(name, ["apple cherry"], anns_field="sparse", limit=20, search_params={"metric_type": "BM25"},
                        consistency_level="Strong")[0]
    two = client.search(name, [dense_q], anns_field="dense", limit=20, search_params={"metric_type": "L2"},
                        consistency_level="Strong")[0]
    rrf: dict[int, float] = {}
    for hits in (one, two):
        for rank, h in enumerate(hits):
            rrf[h["id"]] = rrf.get(h["id"], 0.0) + 1.0 / (60 + rank + 1)
    want = sorted(rrf.items(), key=lambda t: (-t[1], t[0]))[:10]
    assert [h["id"] for h in fused] == [pk for pk, _ in want]
    np.testing.assert_allclose([h["distance"] for h in fused], [s for _, s in want], rtol=1e-5)
    assert all(h["entity"]["text"] == texts[h["id"]] for h in fused)


def test_describe_collection_shows_the_function_and_analyzer(client, name):
    _create(client, name, analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
    d = client.describe_collection(name)
    (fn,) = d["functions"]
    assert fn["name"] == "bm25" and fn["type"] == FunctionType.BM25
    assert fn["input_field_names"] == ["text"] and fn["output_field_names"] == ["sparse"]
    fields = {f["name"]: f for f in d["fields"]}
    assert fields["text"]["params"]["enable_analyzer"] in (True, "true")
    assert fields["sparse"].get("is_function_output") is True
    idx = client.describe_index(name, "sparse")
    assert idx["metric_type"] == "BM25" and idx["index_type"] == "SPARSE_INVERTED_INDEX"


def _code(fn, *args, **kw) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kw)
    return e.value.code, e.value.message


def _raw_insert(uri, name, with_sparse: bool):
    """An insert request as a client that does not know the schema's functions would send it (pymilvus
    refuses the output field itself)."""
    fields = [schema_pb2.FieldData(field_name="id", type=schema_pb2.Int64),
              schema_pb2.FieldData(field_name="text", type=schema_pb2.VarChar),
              schema_pb2.FieldData(field_name="dense", type=schema_pb2.FloatVector),
              schema_pb2.FieldData(field_name="grp", type=schema_pb2.Int64)]
    fields[0].scalars.long_data.data.append(7)
    fields[1].scalars.string_data.data.append("apple apple")
    fields[2].vectors.dim = 4
    fields[2].vectors.float_vector.data.extend([0.0] * 4)
    fields[3].scalars.long_data.data.append(0)
    if with_sparse:
        fd = schema_pb2.FieldData(field_name="sparse", type=schema_pb2.SparseFloatVector)
        fd.vectors.sparse_float_vector.contents.append(np.array([(1, 1.0)], dtype=[("i", "<u4"), ("v", "<f4")])
                                                       .tobytes())
        fd.vectors.sparse_float_vector.dim = 2
        fields.append(fd)
    with raw_stub(uri) as stub:
        return stub.Insert(milvus_pb2.InsertRequest(collection_name=name, fields_data=fields, num_rows=1))


def test_refusals(client, uri, name):
    _create(client, name)
    # the output field is the server's to fill
    reply = _raw_insert(uri, name, with_sparse=True)
    assert reply.status.code == 1100
    assert "not support manually specifying the function output field sparse" in reply.status.reason
    assert _raw_insert(uri, name, with_sparse=False).status.code == 0
    (hit,) = client.search(name, ["apple"], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"},
                           consistency_level="Strong")[0]
    assert hit["id"] == 7 and hit["distance"] > 0
    # BM25 fields take BM25 only, other fields do not
    code, msg = _code(client.search, name, ["apple"], anns_field="sparse", limit=3,
                      search_params={"metric_type": "IP"})
    assert code == 1100 and "metric type not match" in msg
    code, msg = _code(client.search, name, [[0.0] * 4], anns_field="dense", limit=3,
                      search_params={"metric_type": "BM25"})
    assert code == 1100
    client.release_collection(name)
    client.drop_index(name, "sparse")
    for metric in ("IP",):
        idx = client.prepare_index_params()
        idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type=metric)
        code, msg = _code(client.create_index, name, idx)
        assert code == 1100 and "only BM25 metric type" in msg
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": 5})
    code, msg = _code(client.create_index, name, idx)
    assert code == 1100 and "bm25_k1" in msg


def test_bad_schemas_are_refused(client, uri, name):
    """Sent as raw requests: pymilvus checks some of these itself (not every client does)."""

    def schema(analyzer: bool = True, input_type=schema_pb2.VarChar, out_type=schema_pb2.SparseFloatVector,
               analyzer_params: str = ""):
        pb = schema_pb2.CollectionSchema(name=name)
        pb.fields.add(name="id", data_type=schema_pb2.Int64, is_primary_key=True)
        text = pb.fields.add(name="text", data_type=input_type)
        if input_type == schema_pb2.VarChar:
            text.type_params.add(key="max_length", value="100")
        if analyzer:
            text.type_params.add(key="enable_analyzer", value="true")
        if analyzer_params:
            text.type_params.add(key="analyzer_params", value=analyzer_params)
        out = pb.fields.add(name="out", data_type=out_type)
        if out_type == schema_pb2.FloatVector:
            out.type_params.add(key="dim", value="4")
        pb.functions.add(name="f", type=schema_pb2.FunctionType.BM25, input_field_names=["text"],
                         output_field_names=["out"])
        return pb

    cases = [
        (schema(analyzer=False), "BM25 function input field must set enable_analyzer to true"),
        (schema(analyzer=False, input_type=schema_pb2.Int64),
         "BM25 function input field must be a VARCHAR field, got 1 field with type Int64"),
        (schema(out_type=schema_pb2.FloatVector), "BM25 function output field must be a SparseFloatVector field"),
        (schema(analyzer_params='{"type": "japanese"}'), "analyzer type 'japanese'"),
        (schema(analyzer_params='{"tokenizer": "lindera"}'), "lindera tokenizer must be costum"),
    ]
    with raw_stub(uri) as stub:
        for pb, words in cases:
            st = stub.CreateCollection(milvus_pb2.CreateCollectionRequest(collection_name=name,
                                                                         schema=pb.SerializeToString()))
            assert st.code == 1100 and words in st.reason, st.reason
            assert not client.has_collection(name)


def test_bm25_range_grouping_weighted_hybrid_and_iterator(client, name):
    _create(client, name)
    texts = _texts(300, 6)
    client.insert(name, _rows(texts))
    docs, live = dict(enumerate(texts)), set(range(300))
    query = "apple banana cherry"
    ref = _reference(docs, live, query, 300, 1.2, 0.75, set())
    bm25 = {"metric_type": "BM25"}
    # range search on the score: radius < score <= range_filter
    lo, hi = ref[len(ref) // 2][1], ref[3][1]
    hits = client.search(name, [query], anns_field="sparse", limit=300, consistency_level="Strong",
                         search_params={**bm25, "params": {"radius": lo, "range_filter": hi}})[0]
    want = [(pk, s) for pk, s in ref if lo < s <= hi]
    assert {h["id"] for h in hits} ^ {pk for pk, _ in want} <= {pk for pk, s in ref if abs(s - lo) < 1e-4 or
                                                               abs(s - hi) < 1e-4}
    # grouping: the best row of each group
    hits = client.search(name, [query], anns_field="sparse", limit=3, group_by_field="grp",
                         search_params=bm25, consistency_level="Strong")[0]
    best: dict[int, tuple[int, float]] = {}
    for pk, s in ref:
        best.setdefault(pk % 3, (pk, s))
    assert sorted((h["id"], round(h["distance"], 3)) for h in hits) == sorted(
        (pk, round(s, 3)) for pk, s in best.values())
    # weighted hybrid: Milvus normalises BM25 with 2 atan(s) / pi
    from pymilvus import WeightedRanker

    dense_q = [0.5, 0.5, 0.5, 0.5]
    fused = client.hybrid_search(name, [AnnSearchRequest([query], "sparse", bm25, limit=20),
                                        AnnSearchRequest([dense_q], "dense", {"metric_type": "L2"}, limit=20)],
                                 WeightedRanker(0.7, 0.3), limit=5, consistency_level="Strong")[0]
    two = client.search(name, [dense_q], anns_field="dense", limit=20, search_params={"metric_type": "L2"},
                        consistency_level="Strong")[0]
    score: dict[int, float] = {}
    for pk, s in ref[:20]:
        score[pk] = score.get(pk, 0.0) + 0.7 * 2 * np.arctan(s) / np.pi
    for h in two:
        score[h["id"]] = score.get(h["id"], 0.0) + 0.3 * (1 - 2 * np.arctan(h["distance"]) / np.pi)
    want5 = sorted(score.items(), key=lambda t: (-t[1], t[0]))[:5]
    np.testing.assert_allclose([h["distance"] for h in fused], [s for _, s in want5], rtol=1e-4)
    # a search iterator walks every hit, best first
    it = client.search_iterator(name, [query], anns_field="sparse", batch_size=40, limit=len(ref),
                                search_params=bm25, consistency_level="Strong")
    walked = []
    while True:
        page = it.next()
        if not page:
            break
        walked += [(h["id"], h["distance"]) for h in page]
    it.close()
    assert sorted(pk for pk, _ in walked) == sorted(pk for pk, _ in ref)
    np.testing.assert_allclose([s for _, s in walked], [s for _, s in ref], rtol=1e-4)


def test_text_match_filter_in_query_and_search(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=2000, enable_analyzer=True, enable_match=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("grp", DataType.INT64)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="AUTOINDEX", metric_type="BM25")
    idx.add_index("dense", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    texts = _texts(300, 7)
    client.insert(name, _rows(texts[:150]))
    client.flush(name)
    client.insert(name, _rows(texts[150:], 150))  # sealed and growing rows

    def holding(words: str) -> set[int]:
        q = set(_tokens(words, set()))
        return {i for i, t in enumerate(texts) if q & set(_tokens(t, set()))}

    got = client.query(name, filter="text_match(text, 'Kilo lima')", output_fields=["id"], limit=1000,
                       consistency_level="Strong")
    assert {r["id"] for r in got} == holding("kilo lima")
    got = client.query(name, filter="text_match(text, 'kilo') and not text_match(text, 'lima') and grp == 2",
                       output_fields=["id"], limit=1000, consistency_level="Strong")
    assert {r["id"] for r in got} == {i for i in holding("kilo") - holding("lima") if i % 3 == 2}
    hits = client.search(name, [[0.5] * 4], anns_field="dense", limit=300, filter="text_match(text, 'mike')",
                         search_params={"metric_type": "L2"}, consistency_level="Strong")[0]
    assert {h["id"] for h in hits} == holding("mike")
    code, msg = _code(client.query, name, filter="text_match(grp, 'x')", limit=3)
    assert code == 1100 and "text_match is only supported on VARCHAR fields" in msg
    # minimum_should_match (Milvus 2.6): at least n of the query's distinct tokens
    words = "kilo lima mike"
    q = set(_tokens(words, set()))
    got = client.query(name, filter=f"text_match(text, '{words}', minimum_should_match=2)", output_fields=["id"],
                       limit=1000, consistency_level="Strong")
    at_least_two = {i for i, t in enumerate(texts) if len(q & set(_tokens(t, set()))) >= 2}
    assert {r["id"] for r in got} == at_least_two and at_least_two and at_least_two < holding(words)
    code, msg = _code(client.query, name, filter="text_match(text, 'x', minimum_should_match=0)", limit=3)
    assert code == 1100 and "minimum_should_match should be >= 1, got 0" in msg
    # phrase_match (Milvus 2.5.17+): two words in order, adjacent or (slop) within a few positions
    first, second = _tokens(texts[0], set())[:2]

    def phrase(slop: int) -> set[int]:
        out = set()
        for i, t in enumerate(texts):
            toks = _tokens(t, set())
            a = [p for p, w in enumerate(toks) if w == first]
            b = [p - 1 for p, w in enumerate(toks) if w == second]
            if any(abs(x - y) <= slop for x in a for y in b):
                out.add(i)
        return out

    for slop in (0, 3):
        got = client.query(name, filter=f"PHRASE_MATCH(text, '{first} {second}', {slop})", output_fields=["id"],
                           limit=1000, consistency_level="Strong")
        assert {r["id"] for r in got} == phrase(slop) and 0 in phrase(slop)


def test_bm25_collection_survives_a_restart(tmp_path):
    """Standalone on a data directory: the function, the analyzer and the stored term frequencies load
    back after a restart (sealed and growing-from-log rows), with the same scores; inserts after it
    are analyzed as before."""
    from tests.conftest import free_port, start_standalone

    port = free_port()
    node = start_standalone(tmp_path, port)
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _create(c, "ft_restart", analyzer_params={"type": "standard", "stop_words": ["_english_"]}, k1=1.5, b=0.6)
        texts = _texts(200, 11)
        c.insert("ft_restart", _rows(texts[:120]))
        c.flush("ft_restart")
        c.insert("ft_restart", _rows(texts[120:], 120))  # in the log only
        docs = dict(enumerate(texts))
        kw = {"k1": 1.5, "b": 0.6, "stop": STOP}
        before = _check(c, "ft_restart", docs, set(docs), **kw)
        c.close()
        node.stop()
        node = start_standalone(tmp_path, port)
        c = MilvusClient(f"http://127.0.0.1:{port}")
        c.load_collection("ft_restart")
        assert c.describe_collection("ft_restart")["functions"][0]["output_field_names"] == ["sparse"]
        after = _check(c, "ft_restart", docs, set(docs), **kw)
        assert [[h["id"] for h in q] for q in after] == [[h["id"] for h in q] for q in before]
        more = _texts(30, 12)
        c.insert("ft_restart", _rows(more, 200))
        docs.update({200 + i: t for i, t in enumerate(more)})
        _check(c, "ft_restart", docs, set(docs), **kw)
        c.close()
    finally:
        node.stop()


def test_run_analyzer(client, name):
    """pymilvus's run_analyzer: the tokens of texts, by params or by a field's analyzer, with byte offsets,
    positions and term ids (the ids a BM25 function stores)."""
    import zlib

    res = client.run_analyzer(["The Quick, brown fox", "Über café"], with_detail=True, with_hash=True)
    toks = [[(t["token"], t["start_offset"], t["end_offset"], t["position"], t["hash"]) for t in r.tokens]
            for r in res]
    h = lambda t: zlib.crc32(t.encode()) % (2**32 - 1)  # noqa: E731
    assert toks[0] == [("the", 0, 3, 0, h("the")), ("quick", 4, 9, 1, h("quick")), ("brown", 11, 16, 2, h("brown")),
                       ("fox", 17, 20, 3, h("fox"))]
    assert toks[1] == [("über", 0, 5, 0, h("über")), ("café", 6, 11, 1, h("café"))]  # UTF-8 byte offsets
    plain = client.run_analyzer("The cat and the hat", analyzer_params={"type": "standard",
                                                                      "stop_words": ["_english_"]})
    assert plain.tokens == ["cat", "hat"]
    _create(client, name, analyzer_params={"tokenizer": "whitespace", "filter": ["lowercase"]})
    by_field = client.run_analyzer("Don't STOP-me", collection_name=name, field_name="text")
    assert by_field.tokens == ["don't", "stop-me"]
    code, msg = _code(client.run_analyzer, "x", collection_name=name, field_name="grp")
    assert code == 1100 and "does not enable analyzer" in msg
    assert client.run_analyzer("Cats running", analyzer_params={"type": "english"}).tokens == ["cat", "run"]
    code, msg = _code(client.run_analyzer, "x", analyzer_params={"type": "japanese"})
    assert code == 1100 and "analyzer type 'japanese'" in msg


def test_rest_full_text_equals_grpc(server, client, name):
    """RESTful API v2: a BM25 collection created with schema.functions, rows inserted without the output
    field, searched with text: the same answers as pymilvus's; describe lists the function."""
    from tests.e2e.test_rest import ok, post

    port = server.http_ports[0]
    ok(post(port, "collections/create", {"collectionName": name, "schema": {
        "fields": [
            {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
            {"fieldName": "text", "dataType": "VarChar", "elementTypeParams": {
                "max_length": 2000, "enable_analyzer": True, "analyzer_params": {"type": "standard"}}},
            {"fieldName": "sparse", "dataType": "SparseFloatVector"},
            {"fieldName": "dense", "dataType": "FloatVector", "elementTypeParams": {"dim": 4}},
            {"fieldName": "grp", "dataType": "Int64"}],
        "functions": [{"name": "bm25", "type": "BM25", "inputFieldNames": ["text"],
                       "outputFieldNames": ["sparse"], "params": {}}]},
        "indexParams": [{"fieldName": "sparse", "indexName": "sparse", "metricType": "BM25",
                         "indexType": "SPARSE_INVERTED_INDEX", "params": {"bm25_k1": 1.4, "bm25_b": 0.7}},
                        {"fieldName": "dense", "indexName": "dense", "metricType": "L2", "indexType": "FLAT"}]}))
    d = ok(post(port, "collections/describe", {"collectionName": name}))
    assert d["functions"][0]["type"] == "BM25" and d["functions"][0]["outputFieldNames"] == ["sparse"]
    texts = _texts(120, 13)
    assert ok(post(port, "entities/insert", {"collectionName": name, "data": _rows(texts)}))["insertCount"] == 120
    docs = dict(enumerate(texts))
    got = ok(post(port, "entities/search", {"collectionName": name, "data": QUERIES[:2], "annsField": "sparse",
                                             "limit": 10, "outputFields": ["id"],
                                             "searchParams": {"metricType": "BM25"},
                                             "consistencyLevel": "Strong"}))
    res = client.search(name, QUERIES[:2], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"},
                        consistency_level="Strong")
    flat = [(h["id"], h["distance"]) for hits in res for h in hits]
    assert [g["id"] for g in got] == [pk for pk, _ in flat]
    np.testing.assert_allclose([g["distance"] for g in got], [d for _, d in flat], rtol=1e-6)
    want = _reference(docs, set(docs), QUERIES[0], 10, 1.4, 0.7, set())
    assert [pk for pk, _ in want] == [h["id"] for h in res[0]]


def test_cdc_replicates_a_bm25_collection(tmp_path, remote_storage):
    """CDC: the target collection gets the function and analyzer, computes the term frequencies from the
    replicated texts itself, and answers BM25 searches as the source does."""
    from tests.conftest import start_standalone
    from tests.e2e.test_cdc import replicating
    from vecdb.cdc.task import new_task_id

    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcft" + new_task_id()), target, tu) as stream:
        c = MilvusClient(uri=stream.source_uri)
        _create(c, "ft", analyzer_params={"type": "standard", "stop_words": ["_english_"]}, k1=1.3, b=0.7)
        texts = _texts(150, 21)
        c.insert("ft", _rows(texts))
        c.delete("ft", ids=[3, 4])
        stream.wait_equal(90, "target never equal")
        t = MilvusClient(uri=tu)
        assert t.describe_collection("ft")["functions"][0]["output_field_names"] == ["sparse"]
        kw = {"anns_field": "sparse", "limit": 10, "search_params": {"metric_type": "BM25"},
              "consistency_level": "Strong"}
        src = c.search("ft", QUERIES[:3], **kw)
        dst = t.search("ft", QUERIES[:3], **kw)
        assert [[h["id"] for h in q] for q in dst] == [[h["id"] for h in q] for q in src]
        for a, b in zip(src, dst, strict=True):
            np.testing.assert_allclose([h["distance"] for h in b], [h["distance"] for h in a], rtol=1e-5)
        c.close()
        t.close()


def test_english_analyzer_stems_documents_and_queries(client, name):
    """{"type": "english"}: Snowball English stems and English stop words on both sides, so "running
    cats" finds "run" and "cat"; scores as the reference over the same stems."""
    import snowballstemmer

    stem = snowballstemmer.stemmer("english").stemWord
    stop = {"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
            "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this",
            "to", "was", "will", "with"}

    def stems(text: str, _stop) -> list[str]:
        return [t for t in (stem(w) for w in re.findall(r"[a-z]+", text.lower())) if t not in stop]

    _create(client, name, analyzer_params={"type": "english"})
    rng = np.random.default_rng(17)
    forms = ["run", "runs", "running", "cat", "cats", "dog", "dogs", "jumped", "jumping", "jump", "happily",
             "happy", "quickly", "the", "and", "connection", "connected", "connecting"]
    texts = [" ".join(rng.choice(forms, int(rng.integers(1, 12)))) for _ in range(200)]
    client.insert(name, _rows(texts))
    docs = dict(enumerate(texts))
    for query in ("running cats", "the Connections", "jumps happily"):
        hits = client.search(name, [query], anns_field="sparse", limit=15, search_params={"metric_type": "BM25"},
                             consistency_level="Strong")[0]
        want = _reference(docs, set(docs), query, 15, 1.2, 0.75, set(), tokens=stems)
        np.testing.assert_allclose([h["distance"] for h in hits], [s for _, s in want], rtol=1e-4)
        ref = dict(_reference(docs, set(docs), query, 200, 1.2, 0.75, set(), tokens=stems))
        assert all(abs(ref[h["id"]] - h["distance"]) <= 1e-4 * h["distance"] for h in hits)


def test_a_nullable_text_input_gives_null_rows_no_terms(client, name):
    """A nullable BM25 input (Milvus 2.5.x / 2.6): a null text is stored null and has no terms, so no
    BM25 search finds its row; the other rows are searched as ever, sealed and growing."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=2000, enable_analyzer=True, nullable=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=idx)
    texts = _texts(60, 7)
    rows = [{"id": i, "text": None if i % 4 == 0 else t} for i, t in enumerate(texts)]
    client.insert(name, rows[:30])
    client.flush(name)
    client.insert(name, rows[30:])  # (growing)
    res = client.search(name, QUERIES, anns_field="sparse", limit=60, search_params={"metric_type": "BM25"},
                        output_fields=["text"], consistency_level="Strong")
    found = {h["id"] for hits in res for h in hits}
    assert found and not {i for i in found if i % 4 == 0}
    for hits in res:
        for h in hits:
            assert h["entity"]["text"] == texts[h["id"]]
    got = client.query(name, filter="id in [0, 1]", output_fields=["text", "sparse"], consistency_level="Strong")
    by_id = {r["id"]: r for r in got}
    assert by_id[0]["text"] is None and not by_id[0]["sparse"]
    assert sum(by_id[1]["sparse"].values()) == len(_tokens(texts[1], set()))
    assert client.query(name, filter="text is null", output_fields=["count(*)"])[0]["count(*)"] == 15

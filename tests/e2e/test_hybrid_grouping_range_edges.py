"""Edges of hybrid search, rerankers, grouping search and range search, checked against references
computed here with numpy (Milvus's rules, ``internal/util/function/rerank`` and knowhere's range
semantics):

- hybrid RRF (sum of ``1 / (k + rank)``, rank from 1) and weighted fusion (BM25 ``2 atan(s) / pi``,
  L2 ``1 - 2 atan(d) / pi``), ties to the smaller primary key, the hybrid ``offset`` paging the
  fused list; a key several requests return is one hit; a request whose filter matches nothing adds
  nothing;
- grouped hybrid search: each value's first ``group_size`` fused hits form its group, scored by its
  best hit; groups ordered by score, then size, then first key; with ``strict_group_size`` a kept
  group of fewer than ``group_size`` hits is left out;
- grouping on nullable fields (Milvus 2.6+): the null rows form one group of their own;
- a decay reranker over a nullable field: a null value decays the score to 0 (Milvus 3.0);
- range search: L2 / HAMMING / JACCARD keep ``range_filter <= d < radius``, IP / COSINE keep
  ``radius < d <= range_filter``, on integer-valued data whose distances sit exactly on the bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)

from tests.e2e._helpers import distances

N = 160
WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime"]


def _load(client, name):
    """Two dense fields (``a`` L2, ``b`` IP, integer-valued), a BM25 field over ``text`` and nullable
    ``tag`` (VARCHAR), ``cat`` (INT64) and ``flag`` (BOOL); sealed and growing rows. Returns columns."""
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("a", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("b", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True)
    s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
    s.add_field("tag", DataType.VARCHAR, max_length=16, nullable=True)
    s.add_field("cat", DataType.INT64, nullable=True)
    s.add_field("flag", DataType.BOOL, nullable=True)
    s.add_function(Function("bm", function_type=FunctionType.BM25, input_field_names=["text"],
                            output_field_names=["sp"]))
    client.create_collection(name, schema=s)
    idx = client.prepare_index_params()
    idx.add_index("a", index_type="FLAT", metric_type="L2")
    idx.add_index("b", index_type="FLAT", metric_type="IP")
    idx.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    rng = np.random.default_rng(3)
    cols = {
        "id": np.arange(N, dtype=np.int64) * 3 + 1,
        "a": rng.standard_normal((N, 4)).astype(np.float32),
        "b": rng.integers(-3, 4, (N, 4)).astype(np.float32),
        "text": [" ".join(rng.choice(WORDS, 3)) for _ in range(N)],
        "tag": [None if i % 5 == 0 else f"t{i % 3}" for i in range(N)],
        "cat": [None if i % 7 == 0 else int(i % 4) for i in range(N)],
        "flag": [None if i % 6 == 0 else bool(i % 2) for i in range(N)],
    }
    rows = [{"id": int(cols["id"][i]), "a": cols["a"][i].tolist(), "b": cols["b"][i].tolist(),
             "text": cols["text"][i], "tag": cols["tag"][i], "cat": cols["cat"][i], "flag": cols["flag"][i]}
            for i in range(N)]
    client.insert(name, rows[:90])
    client.flush(name)
    client.insert(name, rows[90:])  # growing
    return cols


def _sub(cols, field, query, limit, keep=None):
    """One ANN request's exact hits [(pk, score)], best first, ties to the smaller key."""
    metric = {"a": "L2", "b": "IP"}[field]
    d = distances(cols[field], query[None, :], metric)[0]
    idx = np.arange(N) if keep is None else np.nonzero(keep)[0]
    order = idx[np.lexsort((cols["id"][idx], -d[idx] if metric == "IP" else d[idx]))][:limit]
    return [(int(cols["id"][i]), float(d[i])) for i in order]


def _fuse(subs, contribution):
    """{pk: fused score} and the keys best first (ties to the smaller key)."""
    total: dict[int, float] = {}
    for i, hits in enumerate(subs):
        for rank, (pk, score) in enumerate(hits, start=1):
            total[pk] = total.get(pk, 0.0) + contribution(i, rank, score)
    return total, sorted(total, key=lambda pk: (-total[pk], pk))


def _rrf(k=60.0):
    return lambda i, rank, score: 1.0 / (k + rank)


def _check(hits, want, total, tol=1e-5):
    """Hits equal the reference keys (up to reference ties) with their own fused scores."""
    got = [(h["id"], h["distance"]) for h in hits]
    assert len(got) == len(want), (got, want)
    for (gid, gscore), wid in zip(got, want):
        assert abs(total[gid] - gscore) <= tol, (gid, gscore, total[gid])
        assert gid == wid or abs(total[gid] - total[wid]) <= tol, (got, want)


def _req(field, query, limit, expr="", params=None):
    metric = {"a": "L2", "b": "IP", "sp": "BM25"}[field]
    q = query if isinstance(query, str) else query.tolist()
    return AnnSearchRequest([q], field, {"metric_type": metric, "params": params or {}}, limit, expr=expr)


def test_rrf_paging_duplicates_and_empty_requests(client, name):
    cols = _load(client, name)
    qa, qb = cols["a"][5], cols["b"][9]
    subs = [_sub(cols, "a", qa, 12), _sub(cols, "b", qb, 12)]
    total, order = _fuse(subs, _rrf())
    pages = [client.hybrid_search(name, [_req("a", qa, 12), _req("b", qb, 12)], RRFRanker(), limit=5, offset=off,
                                  consistency_level="Strong")[0] for off in (0, 5, 10)]
    for off, page in zip((0, 5, 10), pages):
        _check(page, order[off:off + 5], total)
    paged = [h["id"] for page in pages for h in page]
    assert len(set(paged)) == len(paged)  # the pages neither repeat nor skip a key
    # the same request twice: each key once, with both contributions
    total2, order2 = _fuse([subs[0], subs[0]], _rrf(10))
    res = client.hybrid_search(name, [_req("a", qa, 12), _req("a", qa, 12)], RRFRanker(10), limit=6,
                               consistency_level="Strong")[0]
    _check(res, order2[:6], total2)
    # a request whose filter matches nothing adds nothing; both empty: no hits, output fields or not
    total3, order3 = _fuse([[], subs[1]], _rrf())
    res = client.hybrid_search(name, [_req("a", qa, 12, "id < 0"), _req("b", qb, 12)], RRFRanker(), limit=6,
                               consistency_level="Strong")[0]
    _check(res, order3[:6], total3)
    res = client.hybrid_search(name, [_req("a", qa, 12, "id < 0"), _req("b", qb, 12, "tag == 'none'")],
                               RRFRanker(), limit=6, output_fields=["tag", "cat"], consistency_level="Strong")
    assert len(res) == 1 and len(res[0]) == 0


def test_bm25_request_in_weighted_and_rrf_fusion(client, name):
    cols = _load(client, name)
    qa = cols["a"][7]
    bm25 = [(h["id"], h["distance"]) for h in client.search(
        name, ["apple fig"], anns_field="sp", limit=10, search_params={"metric_type": "BM25"},
        consistency_level="Strong")[0]]
    assert len(bm25) == 10
    dense = _sub(cols, "a", qa, 10)
    norm = [lambda s: 1 - 2 * math.atan(s) / math.pi, lambda s: 2 * math.atan(s) / math.pi]  # L2, BM25
    total, order = _fuse([dense, bm25], lambda i, rank, s: (0.3, 0.7)[i] * norm[i](s))
    reqs = [_req("a", qa, 10), _req("sp", "apple fig", 10)]
    res = client.hybrid_search(name, reqs, WeightedRanker(0.3, 0.7), limit=8, output_fields=["text"],
                               consistency_level="Strong")[0]
    _check(res, order[:8], total)
    texts = dict(zip(cols["id"].tolist(), cols["text"]))
    assert all(h["entity"]["text"] == texts[h["id"]] for h in res)
    total, order = _fuse([dense, bm25], _rrf(20))
    res = client.hybrid_search(name, reqs, RRFRanker(20), limit=8, round_decimal=3, consistency_level="Strong")[0]
    want = [round(total[pk], 3) for pk in order[:8]]
    assert [h["distance"] for h in res] == pytest.approx(want, abs=1e-6)


def _group_reference(cols, field, query, limit, size):
    """A plain grouping search over ``a`` (L2): [(value, [(pk, distance)])], nulls one group (None)."""
    d = distances(cols["a"], query[None, :], "L2")[0]
    groups: dict = {}
    for i in np.lexsort((cols["id"], d)):
        v = cols[field][i]
        if v not in groups:
            if len(groups) >= limit:
                continue
            groups[v] = []
        if len(groups[v]) < size:
            groups[v].append((int(cols["id"][i]), float(d[i])))
    return list(groups.items())


@pytest.mark.parametrize("field", ["tag", "cat", "flag"])
def test_grouping_on_nullable_fields(client, name, field):
    """Milvus 2.6+: a nullable group field's nulls are one group, apart from real values (0, "", false)."""
    cols = _load(client, name)
    for qi in (3, 11):
        q = cols["a"][qi]
        for limit, size in ((4, 1), (3, 3)):
            ref = _group_reference(cols, field, q, limit, size)
            res = client.search(name, [q.tolist()], anns_field="a", limit=limit, group_by_field=field,
                                group_size=size, strict_group_size=True, output_fields=[field],
                                consistency_level="Strong")[0]
            want = [hit for _, hits in ref for hit in hits]
            assert [h["id"] for h in res] == [pk for pk, _ in want]
            np.testing.assert_allclose([h["distance"] for h in res], [dd for _, dd in want], rtol=1e-4, atol=1e-4)
            assert [h["entity"][field] for h in res] == [v for v, hits in ref for _ in hits]
    # the null group is there when the nearest rows are null
    null_rows = np.array([v is None for v in cols[field]])
    q = cols["a"][int(np.nonzero(null_rows)[0][0])]
    res = client.search(name, [q.tolist()], anns_field="a", limit=3, group_by_field=field, output_fields=[field],
                        consistency_level="Strong")[0]
    assert res[0]["entity"][field] is None and len({h["entity"][field] for h in res}) == len(res)


def _hybrid_group_reference(cols, field, qa, qb, sub_limit, limit, size, strict, offset=0):
    """Each request a grouping search of ``sub_limit`` groups; RRF over their hits; Milvus's
    ``newGroupingIDScores`` over the fused keys: [(pk, score, value)] in output order."""
    value = dict(zip(cols["id"].tolist(), cols[field]))
    subs = []
    for f, q in (("a", qa), ("b", qb)):
        metric = {"a": "L2", "b": "IP"}[f]
        d = distances(cols[f], q[None, :], metric)[0]
        groups: dict = {}
        for i in np.lexsort((cols["id"], -d if metric == "IP" else d)):
            v = cols[field][i]
            if v not in groups:
                if len(groups) >= sub_limit:
                    continue
                groups[v] = []
            if len(groups[v]) < size:
                groups[v].append((int(cols["id"][i]), float(d[i])))
        subs.append([hit for hits in groups.values() for hit in hits])
    total, order = _fuse(subs, _rrf())
    buckets: dict = {}
    for pk in order:
        members = buckets.setdefault(value[pk], [])
        if len(members) < size:
            members.append(pk)
    ranked = sorted(buckets.values(), key=lambda m: (-max(total[pk] for pk in m), -len(m), m[0]))
    kept = ranked[offset:offset + limit]
    if strict:
        kept = [m for m in kept if len(m) >= size]
    return [(pk, total[pk], value[pk]) for m in kept for pk in m]


@pytest.mark.parametrize("strict", [False, True])
def test_grouped_hybrid_search_strict_group_size(client, name, strict):
    """With strict_group_size a kept group short of group_size is left out (Milvus's rerank
    ``newGroupingIDScores``); nulls are a group of their own."""
    cols = _load(client, name)
    qa, qb = cols["a"][4], cols["b"][8]
    for field, size, offset in (("cat", 3, 0), ("tag", 4, 1), ("flag", 2, 0)):
        want = _hybrid_group_reference(cols, field, qa, qb, 5, 3, size, strict, offset)
        res = client.hybrid_search(name, [_req("a", qa, 5), _req("b", qb, 5)], RRFRanker(), limit=3, offset=offset,
                                   group_by_field=field, group_size=size, strict_group_size=strict,
                                   output_fields=[field], consistency_level="Strong")[0]
        got = [(h["id"], h["distance"], h["entity"][field]) for h in res]
        assert [(pk, v) for pk, _, v in got] == [(pk, v) for pk, _, v in want], (field, got, want)
        np.testing.assert_allclose([s for _, s, _ in got], [s for _, s, _ in want], rtol=1e-5)
        if strict:
            assert all(n == size for n in _group_sizes([v for _, _, v in got]))


def _group_sizes(values):
    sizes: dict = {}
    for v in values:
        sizes[v] = sizes.get(v, 0) + 1
    return sizes.values()


def test_decay_over_a_nullable_field_sinks_null_values(client, name):
    """Milvus 3.0's decay: a null value's factor combines as zero, so its hit scores 0 (not the decay
    of the placeholder 0, which at ``origin`` 0 would be the best of all)."""
    cols = _load(client, name)
    q = cols["a"][0]
    ranker = Function("d", input_field_names=["cat"], function_type=FunctionType.RERANK,
                      params={"reranker": "decay", "function": "linear", "origin": 0, "scale": 4})
    d = distances(cols["a"], q[None, :], "L2")[0]
    top = np.lexsort((cols["id"], d))[:12]
    score = {}
    for i in top:
        cat = cols["cat"][i]
        factor = 0.0 if cat is None else max(0.5, 1 - 0.5 / 4 * abs(cat))
        score[int(cols["id"][i])] = (1 - 2 * math.atan(d[i]) / math.pi) * factor
    want = sorted(score, key=lambda pk: (-score[pk], pk))
    for res in (client.search(name, [q.tolist()], anns_field="a", limit=12, ranker=ranker, output_fields=["cat"],
                              consistency_level="Strong")[0],
                client.hybrid_search(name, [_req("a", q, 12)], ranker, limit=12, output_fields=["cat"],
                                     consistency_level="Strong")[0]):
        _check(res, want, score, tol=1e-5)
        nulls = [h["distance"] for h in res if h["entity"]["cat"] is None]
        assert nulls and all(s == 0 for s in nulls)
        assert [h["entity"]["cat"] is None for h in res] == sorted(h["entity"]["cat"] is None for h in res)


def _range_collection(client, name, metric):
    rng = np.random.default_rng(1)
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    binary = metric in ("HAMMING", "JACCARD")
    s.add_field("v", DataType.BINARY_VECTOR if binary else DataType.FLOAT_VECTOR, dim=16 if binary else 4)
    client.create_collection(name, schema=s)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="BIN_FLAT" if binary else "FLAT", metric_type=metric)
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    data = rng.integers(0, 256, (200, 2), dtype=np.uint8) if binary else rng.integers(-3, 4, (200, 4)).astype(
        np.float32)
    data[1] = data[0]  # an exact duplicate of the query: L2 0, COSINE 1, HAMMING 0
    client.insert(name, [{"id": i, "v": bytes(data[i]) if binary else data[i].tolist()} for i in range(200)])
    client.flush(name)
    return data


def _range_reference(data, metric, radius, range_filter):
    q = data[:1]
    if metric == "JACCARD":
        bits = np.unpackbits(data, axis=1).astype(bool)
        inter = (bits & bits[0]).sum(1)
        union = (bits | bits[0]).sum(1)
        d = (1 - inter / np.maximum(union, 1)).astype(np.float32)
    else:
        d = distances(data, q, metric)[0].astype(np.float32)
    if metric in ("IP", "COSINE"):
        keep = (d > radius) & (d <= range_filter)
    else:
        keep = (d < radius) & (d >= range_filter)
    return set(np.nonzero(keep)[0].tolist()), d


@pytest.mark.parametrize("metric, bounds", [
    ("L2", [(10, 2), (9, 4), (3, 0)]),
    ("IP", [(2, 10), (-1, 5), (3, 4)]),
    ("COSINE", [(-0.5, 0.5), (-1.0, -0.2), (0.2, 0.9)]),
    ("HAMMING", [(8, 4), (9, 3), (6, 0)]),
    ("JACCARD", [(0.8, 0.5), (0.6, 0.0)]),
])
def test_range_search_bounds(client, name, metric, bounds):
    """Distances that sit exactly on a bound: the radius side excluded, the range_filter side included."""
    data = _range_collection(client, name, metric)
    q = [bytes(data[0])] if metric in ("HAMMING", "JACCARD") else [data[0].tolist()]
    for radius, range_filter in bounds:
        want, d = _range_reference(data, metric, radius, range_filter)
        res = client.search(name, q, limit=200, consistency_level="Strong", search_params={
            "metric_type": metric, "params": {"radius": radius, "range_filter": range_filter}})[0]
        got = {h["id"] for h in res}
        # integer distances (L2, IP, HAMMING) are exact, with some on each bound; a cosine or Jaccard one
        # within float rounding of a bound may fall either side
        exact = metric in ("L2", "IP", "HAMMING")
        assert not exact or ({radius, range_filter} <= set(d.tolist())), "no distance on a bound"
        edge = set() if exact else {i for i in range(200) if min(abs(d[i] - radius), abs(d[i] - range_filter)) < 1e-5}
        assert got - edge == want - edge, (radius, range_filter, sorted(got ^ want))
        dist = [h["distance"] for h in res]
        assert dist == sorted(dist, reverse=metric in ("IP", "COSINE"))
    with pytest.raises(MilvusException) as e:  # an empty range
        same = bounds[0][1]
        client.search(name, q, limit=5, search_params={"metric_type": metric,
                                                       "params": {"radius": same, "range_filter": same}})
    assert e.value.code == 1100 and "range_filter must be" in e.value.message


def test_grouping_refuses_range_search_and_iterators(client, name):
    cols = _load(client, name)
    q = cols["a"][0].tolist()
    with pytest.raises(MilvusException) as e:
        client.search(name, [q], anns_field="a", limit=3, group_by_field="cat",
                      search_params={"metric_type": "L2", "params": {"radius": 5.0, "range_filter": 0.5}})
    assert e.value.code == 1100 and "Not allowed to do range-search when doing search-group-by" in e.value.message
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, [_req("a", cols["a"][0], 5, params={"radius": 5.0})], RRFRanker(), limit=3,
                             group_by_field="cat")
    assert e.value.code == 1100 and "range-search" in e.value.message
    with pytest.raises(MilvusException) as e:
        client.search_iterator(name, [q], anns_field="a", batch_size=5, limit=20, group_by_field="cat",
                               search_params={"metric_type": "L2"})
    assert e.value.code == 1100 and "Not allowed to do groupBy when doing iteration" in e.value.message
    for ranker, words in ((RRFRanker(0), "k should be in range"), (WeightedRanker(0.5), "length of weights"),
                          (WeightedRanker(0.5, 1.5), "weight should be in range [0, 1]")):
        with pytest.raises(MilvusException) as e:
            client.hybrid_search(name, [_req("a", cols["a"][0], 5), _req("b", cols["b"][0], 5)], ranker, limit=3)
        assert e.value.code == 1100 and words in e.value.message

"""Hybrid search (MilvusClient.hybrid_search, ORM Collection.hybrid_search) checked against a fusion
computed here with numpy: each ANN request's exact top-k (FLAT indexes, its own filter) fused by
RRF (sum of 1 / (k + rank)) or by weighted, normalised scores (Milvus: COSINE (1 + s) / 2,
IP 1/2 + atan(s) / pi, L2 1 - 2 atan(d) / pi), ties to the smaller primary key.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus import (
    AnnSearchRequest,
    Collection,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)

from tests.e2e._helpers import float_vectors, orm, reference_topk  # noqa: F401 - fixture

N = 300
DIMS = {"va": 8, "vb": 6, "vc": 4}
METRICS = {"va": "L2", "vb": "IP", "vc": "COSINE"}


def _schema():
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    for f, dim in DIMS.items():
        schema.add_field(f, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("grp", DataType.INT64)
    schema.add_field("tag", DataType.VARCHAR, max_length=16)
    return schema


@pytest.fixture
def data(client, name):
    """A loaded collection with three vector fields (L2, IP, COSINE), sealed and growing rows, two
    partitions; the columns as numpy arrays."""
    client.create_collection(name, schema=_schema())
    idx = client.prepare_index_params()
    for f, metric in METRICS.items():
        idx.add_index(field_name=f, index_type="FLAT", metric_type=metric)
    client.create_index(name, idx, sync=False)
    client.create_partition(name, "p1")
    client.load_collection(name)
    cols = {f: float_vectors(N, dim, seed=i + 10) for i, (f, dim) in enumerate(DIMS.items())}
    cols["id"] = np.arange(N, dtype=np.int64) * 7 + 3
    cols["grp"] = np.arange(N, dtype=np.int64) % 5
    cols["tag"] = np.array([f"t{i % 3}" for i in range(N)], dtype=object)
    rows = [{k: (v[i].tolist() if v.ndim == 2 else v[i].item() if k != "tag" else v[i]) for k, v in cols.items()}
            for i in range(N)]
    client.insert(name, rows[:150])
    client.insert(name, rows[150:200], partition_name="p1")
    client.flush(name)
    client.insert(name, rows[200:])  # growing
    return cols


def _sub_reference(cols, field, query, limit, keep=None):
    """One ANN request's exact hits: [(primary key, score)], best first."""
    keep = np.ones(N, bool) if keep is None else keep
    pos, dist = reference_topk(cols[field][keep], query[None, :], METRICS[field], limit)
    return list(zip(cols["id"][keep][pos[0]].tolist(), dist[0].tolist()))


def _norm(metric, s):
    if metric == "COSINE":
        return (1 + s) * 0.5
    if metric == "IP":
        return 0.5 + math.atan(s) / math.pi
    return 1 - 2 * math.atan(s) / math.pi


def _fuse(subs, scorer, limit, offset=0, descending=True):
    """subs: per request [(pk, score)] best first; scorer(i, rank, score) -> contribution."""
    total: dict[int, float] = {}
    for i, hits in enumerate(subs):
        for rank, (pk, score) in enumerate(hits, start=1):
            total[pk] = total.get(pk, 0.0) + scorer(i, rank, score)
    order = sorted(total.items(), key=lambda kv: ((-kv[1] if descending else kv[1]), kv[0]))
    return order[offset:offset + limit], total


def _assert_fused(hits, want, total, tol=1e-5):
    """pymilvus hits equal the reference fusion: scores to ``tol``, ids except where reference scores tie
    within ``tol`` at that rank; every returned id carries its own fused score."""
    got = [(h.id, h.distance) if hasattr(h, "id") else (h["id"], h["distance"]) for h in hits]
    assert len(got) == len(want), (got, want)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=tol, atol=tol)
    for (gid, gscore), (wid, wscore) in zip(got, want):
        assert abs(total[gid] - gscore) <= tol * max(1, abs(gscore)), (gid, gscore, total[gid])
        assert gid == wid or abs(total[gid] - wscore) <= tol, (got, want)
    assert len({g for g, _ in got}) == len(got)


def _rrf(k):
    return lambda i, rank, score: 1.0 / (k + rank)


def _weighted(weights, metrics):
    return lambda i, rank, score: weights[i] * _norm(metrics[i], score)


def test_rrf_over_three_fields_with_filters(client, name, data):
    qa, qb, qc = float_vectors(1, 8, 1)[0], float_vectors(1, 6, 2)[0], float_vectors(1, 4, 3)[0]
    reqs = [AnnSearchRequest([qa], "va", {"metric_type": "L2"}, limit=20),
            AnnSearchRequest([qb], "vb", {"metric_type": "IP"}, limit=15, expr="grp in [1, 2, 3]"),
            AnnSearchRequest([qc], "vc", {}, limit=25, expr='tag != "t0"')]
    subs = [_sub_reference(data, "va", qa, 20),
            _sub_reference(data, "vb", qb, 15, np.isin(data["grp"], [1, 2, 3])),
            _sub_reference(data, "vc", qc, 25, data["tag"] != "t0")]
    for k in (60, 5):
        hits = client.hybrid_search(name, reqs, RRFRanker(k), limit=12)
        assert len(hits) == 1
        want, total = _fuse(subs, _rrf(k), 12)
        _assert_fused(hits[0], want, total)


def _grouped_sub(cols, field, query, limit, size, keep=None):
    """One ANN request as a grouping search by ``grp``: its first ``limit`` groups of at most ``size``
    hits, in the order they opened, each group's hits together (best first)."""
    group_of = dict(zip(cols["id"].tolist(), cols["grp"].tolist()))
    groups: dict[int, list] = {}
    for pk, score in _sub_reference(cols, field, query, N, keep):
        g = group_of[pk]
        if g not in groups and len(groups) >= limit:
            continue
        members = groups.setdefault(g, [])
        if len(members) < size:
            members.append((pk, score))
    return [hit for members in groups.values() for hit in members]


def _grouped_fusion(cols, subs, scorer, limit, offset, size, group_scorer):
    """Milvus's grouped hybrid answer: every fused hit bucketed by ``grp`` (``size`` each, best first),
    groups ordered by max / sum / avg of their scores, then the larger, then the smaller first key."""
    _, total = _fuse(subs, scorer, 10**6)
    group_of = dict(zip(cols["id"].tolist(), cols["grp"].tolist()))
    groups: dict[int, list] = {}
    for pk, score in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        members = groups.setdefault(group_of[pk], [])
        if len(members) < size:
            members.append((pk, score))
    final = {"max": lambda s: max(s), "sum": sum, "avg": lambda s: sum(s) / len(s)}[group_scorer]
    kept = sorted(groups.values(), key=lambda m: (-final([s for _, s in m]), -len(m), m[0][0]))[offset:offset + limit]
    return [hit for members in kept for hit in members], total


@pytest.mark.parametrize("group_scorer, offset", [("max", 0), ("sum", 1), ("avg", 0)])
def test_grouping_hybrid_search(client, name, data, group_scorer, offset):
    """group_by_field in a hybrid search (Milvus 2.5+): each request a grouping search of its own limit,
    the fused hits grouped again by rank_group_scorer; the hybrid limit / offset count groups."""
    qa, qb = float_vectors(1, 8, 41)[0], float_vectors(1, 6, 42)[0]
    reqs = [AnnSearchRequest([qa], "va", {"metric_type": "L2"}, limit=4),
            AnnSearchRequest([qb], "vb", {"metric_type": "IP"}, limit=3, expr="id > 30")]
    subs = [_grouped_sub(data, "va", qa, 4, 3), _grouped_sub(data, "vb", qb, 3, 3, data["id"] > 30)]
    kwargs = {"group_by_field": "grp", "group_size": 3, "rank_group_scorer": group_scorer, "offset": offset}
    hits = client.hybrid_search(name, reqs, RRFRanker(), limit=2, output_fields=["grp"], **kwargs)
    want, total = _grouped_fusion(data, subs, _rrf(60), 2, offset, 3, group_scorer)
    _assert_fused(hits[0], want, total)
    got_groups = [h["entity"]["grp"] for h in hits[0]]
    assert len(set(got_groups)) == 2 and got_groups == sorted(got_groups, key=got_groups.index)
    with pytest.raises(MilvusException, match="input group scorer type: median is not supported"):
        client.hybrid_search(name, reqs, RRFRanker(), limit=2, group_by_field="grp", rank_group_scorer="median")


def test_weighted_ranker_normalises_each_metric(client, name, data):
    q = {f: float_vectors(1, d, 20 + i)[0] for i, (f, d) in enumerate(DIMS.items())}
    fields = ["va", "vb", "vc"]
    reqs = [AnnSearchRequest([q[f]], f, {"metric_type": METRICS[f]}, limit=30) for f in fields]
    subs = [_sub_reference(data, f, q[f], 30) for f in fields]
    weights = [0.2, 0.5, 0.3]
    hits = client.hybrid_search(name, reqs, WeightedRanker(*weights), limit=10, output_fields=["grp", "tag", "vb"])
    want, total = _fuse(subs, _weighted(weights, [METRICS[f] for f in fields]), 10)
    _assert_fused(hits[0], want, total)
    pos = {pk: i for i, pk in enumerate(data["id"].tolist())}
    for h in hits[0]:
        i = pos[h["id"]]
        assert (h["entity"]["grp"], h["entity"]["tag"]) == (data["grp"][i], data["tag"][i])
        np.testing.assert_allclose(h["entity"]["vb"], data["vb"][i], rtol=1e-6)


def test_weighted_without_normalisation(client, name, data):
    q = {f: float_vectors(1, d, 30 + i)[0] for i, (f, d) in enumerate(DIMS.items())}
    # mixed directions (L2 and IP): L2 distances are still mapped by 1 - 2 atan(d) / pi, IP summed as is
    reqs = [AnnSearchRequest([q["va"]], "va", {}, limit=20), AnnSearchRequest([q["vb"]], "vb", {}, limit=20)]
    subs = [_sub_reference(data, "va", q["va"], 20), _sub_reference(data, "vb", q["vb"], 20)]
    hits = client.hybrid_search(name, reqs, WeightedRanker(0.7, 0.4, norm_score=False), limit=8)

    def mixed(i, rank, score):
        return [0.7, 0.4][i] * (score if i == 1 else 1 - 2 * math.atan(score) / math.pi)

    want, total = _fuse(subs, mixed, 8)
    _assert_fused(hits[0], want, total)
    # all distances (two L2 requests on one field): raw weighted sums, smallest first
    reqs = [AnnSearchRequest([q["va"]], "va", {}, limit=20),
            AnnSearchRequest([float_vectors(1, 8, 99)[0]], "va", {}, limit=20)]
    subs = [_sub_reference(data, "va", q["va"], 20), _sub_reference(data, "va", float_vectors(1, 8, 99)[0], 20)]
    hits = client.hybrid_search(name, reqs, WeightedRanker(0.5, 1.0, norm_score=False), limit=8)
    want, total = _fuse(subs, lambda i, rank, s: [0.5, 1.0][i] * s, 8, descending=False)
    _assert_fused(hits[0], want, total, tol=1e-4)


def test_offset_nq_and_partitions(client, name, data):
    qa, qb = float_vectors(2, 8, 40), float_vectors(2, 6, 41)
    reqs = [AnnSearchRequest(qa.tolist(), "va", {}, limit=15), AnnSearchRequest(qb.tolist(), "vb", {}, limit=15)]
    hits = client.hybrid_search(name, reqs, RRFRanker(), limit=6, offset=4)
    assert len(hits) == 2
    for qi in range(2):
        subs = [_sub_reference(data, "va", qa[qi], 15), _sub_reference(data, "vb", qb[qi], 15)]
        want, total = _fuse(subs, _rrf(60), 6, offset=4)
        _assert_fused(hits[qi], want, total)
    # only partition p1 (rows 150..199)
    in_p1 = (np.arange(N) >= 150) & (np.arange(N) < 200)
    hits = client.hybrid_search(name, reqs, RRFRanker(), limit=10, partition_names=["p1"])
    subs = [_sub_reference(data, "va", qa[0], 15, in_p1), _sub_reference(data, "vb", qb[0], 15, in_p1)]
    want, total = _fuse(subs, _rrf(60), 10)
    _assert_fused(hits[0], want, total)
    assert all(150 * 7 + 3 <= h["id"] < 200 * 7 + 3 for h in hits[0])


def test_sees_its_own_writes_and_deletes(client, name, data):
    q = float_vectors(1, 8, 50)[0]
    reqs = [AnnSearchRequest([q], "va", {}, limit=5), AnnSearchRequest([q[:6]], "vb", {}, limit=5)]
    best = client.hybrid_search(name, reqs, RRFRanker(), limit=3, consistency_level="Strong")[0][0]["id"]
    client.delete(name, ids=[best])
    again = client.hybrid_search(name, reqs, RRFRanker(), limit=3, consistency_level="Strong")[0]
    assert best not in [h["id"] for h in again]


def test_no_hits_with_output_fields(client, name, data):
    reqs = [AnnSearchRequest([[0.0] * 8], "va", {}, limit=5, expr="grp > 100"),
            AnnSearchRequest([[1.0] * 6], "vb", {}, limit=5, expr='tag == "none"')]
    assert client.hybrid_search(name, reqs, RRFRanker(), limit=5, output_fields=["grp", "va"]) == [[]]


def test_varchar_primary_keys_and_a_range_request(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=16)
    schema.add_field("va", DataType.FLOAT_VECTOR, dim=8)
    schema.add_field("vb", DataType.FLOAT_VECTOR, dim=6)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index(field_name="va", index_type="FLAT", metric_type="L2")
    idx.add_index(field_name="vb", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    va, vb = float_vectors(200, 8, 80), float_vectors(200, 6, 81)
    pks = np.array([f"k{i:03d}" for i in range(200)], dtype=object)
    client.insert(name, [{"pk": pks[i], "va": va[i].tolist(), "vb": vb[i].tolist()} for i in range(200)])
    qa, qb = float_vectors(1, 8, 82)[0], float_vectors(1, 6, 83)[0]
    dist_a = ((va.astype(np.float64) - qa) ** 2).sum(1)
    radius = float(np.sort(dist_a)[30])  # the range request keeps the 30 nearest
    reqs = [AnnSearchRequest([qa], "va", {"params": {"radius": radius}}, limit=50),
            AnnSearchRequest([qb], "vb", {"params": {"ef": 200}}, limit=20)]
    hits = client.hybrid_search(name, reqs, RRFRanker(10), limit=15)[0]
    order_a = np.argsort(dist_a, kind="stable")[:30]
    order_b = np.argsort(-(vb.astype(np.float64) @ qb), kind="stable")[:20]  # HNSW over 200 rows: exact here
    subs = [[(pks[i], 0.0) for i in order_a], [(pks[i], 0.0) for i in order_b]]
    want, total = _fuse(subs, _rrf(10), 15)
    _assert_fused(hits, want, total)


def test_rerank_function_as_ranker(client, name, data):
    qa, qb = float_vectors(1, 8, 60)[0], float_vectors(1, 6, 61)[0]
    reqs = [AnnSearchRequest([qa], "va", {}, limit=10), AnnSearchRequest([qb], "vb", {}, limit=10)]
    subs = [_sub_reference(data, "va", qa, 10), _sub_reference(data, "vb", qb, 10)]
    rrf = Function("rrf", input_field_names=[], function_type=FunctionType.RERANK,
                   params={"reranker": "rrf", "k": 30})
    want, total = _fuse(subs, _rrf(30), 7)
    _assert_fused(client.hybrid_search(name, reqs, rrf, limit=7)[0], want, total)
    weighted = Function("w", input_field_names=[], function_type=FunctionType.RERANK,
                        params={"reranker": "weighted", "weights": [0.1, 0.9], "norm_score": True})
    want, total = _fuse(subs, _weighted([0.1, 0.9], ["L2", "IP"]), 7)
    _assert_fused(client.hybrid_search(name, reqs, weighted, limit=7)[0], want, total)


def test_orm_collection_hybrid_search(orm, client, name, data):  # noqa: F811
    coll = Collection(name, using=orm)
    qa, qc = float_vectors(1, 8, 70)[0], float_vectors(1, 4, 71)[0]
    reqs = [AnnSearchRequest([qa], "va", {"metric_type": "L2"}, limit=10, expr="grp >= 2"),
            AnnSearchRequest([qc], "vc", {"metric_type": "COSINE"}, limit=10)]
    res = coll.hybrid_search(reqs, WeightedRanker(0.6, 0.4), limit=5, output_fields=["grp"])
    subs = [_sub_reference(data, "va", qa, 10, data["grp"] >= 2), _sub_reference(data, "vc", qc, 10)]
    want, total = _fuse(subs, _weighted([0.6, 0.4], ["L2", "COSINE"]), 5)
    got = [{"id": h.id, "distance": h.distance} for h in res[0]]
    _assert_fused(got, want, total)


@pytest.mark.parametrize("ranker, words", [
    (WeightedRanker(0.5), "the length of weights param mismatch with ann search requests"),
    (WeightedRanker(0.5, 1.5), "rank param weight should be in range [0, 1]"),
    (RRFRanker(0), "The rank params k should be in range (0, 16384)"),
])
def test_bad_ranker_is_refused(client, name, data, ranker, words):
    reqs = [AnnSearchRequest([[0.0] * 8], "va", {}, limit=5), AnnSearchRequest([[0.0] * 6], "vb", {}, limit=5)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, ranker, limit=5)
    assert e.value.code == 1100 and words in e.value.message


def test_mismatched_nq_and_bad_field_are_refused(client, name, data):
    reqs = [AnnSearchRequest([[0.0] * 8], "va", {}, limit=5),
            AnnSearchRequest([[0.0] * 6, [1.0] * 6], "vb", {}, limit=5)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, RRFRanker(), limit=5)
    assert e.value.code == 1100 and "nq should be the same" in e.value.message
    reqs = [AnnSearchRequest([[0.0] * 8], "nope", {}, limit=5)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, RRFRanker(), limit=5)
    assert "nope" in e.value.message


def test_limit_window(client, name, data):
    reqs = [AnnSearchRequest([[0.0] * 8], "va", {}, limit=5)]
    with pytest.raises(MilvusException) as e:
        client.hybrid_search(name, reqs, RRFRanker(), limit=16000, offset=1000)
    assert e.value.code == 1100 and "(offset+limit) should be in range [1, 16384]" in e.value.message


def _raw_request(name, rank: dict, subs=None, function=None):
    """A HybridSearchRequest as pymilvus would never send it."""
    from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

    def vec(dim):
        group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
            tag="$0", type=common_pb2.FloatVector, values=[np.zeros(dim, np.float32).tobytes()])])
        return group.SerializeToString()

    if subs is None:
        subs = [("va", 8, {}), ("vb", 6, {})]
    reqs = []
    for field, dim, extra in subs:
        pairs = {"anns_field": field, "topk": "5", "params": "{}", **extra}
        reqs.append(milvus_pb2.SearchRequest(
            collection_name=name, placeholder_group=vec(dim) if dim else b"", nq=1,
            search_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in pairs.items()]))
    request = milvus_pb2.HybridSearchRequest(
        collection_name=name, requests=reqs,
        rank_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rank.items()])
    for fn_params in function or []:
        request.function_score.functions.append(schema_pb2.FunctionSchema(
            name="f", type=schema_pb2.FunctionType.Rerank,
            params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in fn_params.items()]))
    return request


RRF = {"strategy": "rrf", "params": '{"k": 60}', "limit": "5"}


@pytest.mark.parametrize("rank, subs, function, code, words", [
    ({**RRF, "limit": "abc"}, None, None, 1100, "limit [abc] is invalid"),
    ({"strategy": "rrf", "params": '{"k": 60}'}, None, None, 1100, "limit not found in rank_params"),
    ({**RRF, "params": "not json"}, None, None, 1100, "not valid JSON"),
    ({**RRF, "params": "[1, 2]"}, None, None, 1100, "must be a JSON object"),
    ({**RRF, "params": '{"k": "60"}'}, None, None, 1100, "should be float"),
    ({**RRF, "params": '{"k": 1e400}'}, None, None, 1100, "should be in range"),
    ({**RRF, "strategy": "weighted", "params": '{"weights": ["a", 1]}'}, None, None, 1100, "should be float"),
    ({**RRF, "strategy": "weighted", "params": '{"weights": [0.5, 0.5], "norm_score": "maybe"}'}, None, None,
     1100, "norm_score"),
    ({**RRF, "strategy": "magic"}, None, None, 1100, "unsupported rank type magic"),
    ({**RRF, "round_decimal": "9"}, None, None, 1100, "round_decimal [9] is invalid"),
    ({**RRF, "offset": "-1"}, None, None, 1100, "offset [-1] is invalid"),
    (RRF, [], None, 1100, "at least one ANN search request"),
    (RRF, [("va", 0, {})], None, 1100, "a search needs query vectors or primary keys"),
    (RRF, [("va", 7, {})], None, 1100, ""),
    (RRF, [("va", 8, {"offset": "3", "round_decimal": "2"})], None, 0, ""),  # the hybrid request owns them
    (RRF, [("va", 8, {"group_by_field": "grp"})], None, 1100, "not support search_group_by"),
    (RRF, None, [{"reranker": "decay"}], 1100, "Decay function only supports single input"),
    (RRF, None, [{"reranker": "model", "provider": "tei"}], 3000, "use rrf, weighted or decay"),
    (RRF, None, [{"reranker": "rrf"}, {"reranker": "rrf"}], 3000, "only one rerank function"),
    (RRF, None, [{"reranker": "rrf", "k": "abc"}], 1100, "is not a number"),
    (RRF, None, [{"reranker": "weighted", "weights": "[0.5"}], 1100, "Parse weights param failed"),
])
def test_hostile_hybrid_requests(uri, client, name, data, rank, subs, function, code, words):
    from tests.e2e._helpers import raw_stub

    with raw_stub(uri) as stub:
        reply = stub.HybridSearch(_raw_request(name, rank, subs, function))
    assert reply.status.code == code, reply.status.reason
    assert words in reply.status.reason


def test_search_aggregation_and_function_chains_are_refused_not_dropped(uri, client, name):
    """Milvus 3.0's search_aggregation runs in a plain search (tests/e2e/test_search_aggregation_e2e.py)
    but not in a hybrid search's sub-request (refused, 1100, as Milvus: pymilvus refuses it first);
    function_chains: run (the chain applied, not dropped)."""
    from pymilvus import SearchAggregation  # noqa: PLC0415
    from pymilvus.function_chain import FunctionChain, FunctionChainStage, col  # noqa: PLC0415
    from pymilvus.grpc_gen import common_pb2, milvus_pb2  # noqa: PLC0415

    from tests.e2e._helpers import raw_stub  # noqa: PLC0415

    client.create_collection(name, dimension=4)
    client.insert(name, [{"id": i, "vector": [float(i)] * 4} for i in range(5)])
    agg = SearchAggregation(fields=["id"], size=2)
    res = client.search(name, data=[[0.0] * 4], limit=3, search_aggregation=agg)
    assert [(b.key[0]["value"], b.count) for b in res.agg_buckets[0]] == [(0, 1), (1, 1)]
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.FloatVector, values=[np.zeros(4, np.float32).tobytes()])])
    sub = milvus_pb2.SearchRequest(
        collection_name=name, placeholder_group=group.SerializeToString(), nq=1,
        search_params=[common_pb2.KeyValuePair(key="anns_field", value="vector"),
                       common_pb2.KeyValuePair(key="topk", value="3")],
        search_aggregation=agg.to_proto())
    with raw_stub(uri) as stub:
        reply = stub.HybridSearch(milvus_pb2.HybridSearchRequest(
            collection_name=name, requests=[sub],
            rank_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in RRF.items()]))
    assert reply.status.code == 1100 and "search_aggregation is not supported in hybrid_search" in reply.status.reason
    chain = FunctionChain(FunctionChainStage.L2_RERANK, name="c").sort(col("$id"), desc=True).limit(2)
    res = client.search(name, data=[[1.0] * 4], limit=5, function_chains=chain)  # (test_function_chain_e2e.py)
    assert [h["id"] for h in res[0]] == [4, 3]

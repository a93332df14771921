"""The boost ranker (Milvus 2.6.2+: ``ranker=Function(..., FunctionType.RERANK, params={"reranker":
"boost", ...})`` or a ``FunctionScore`` of several) on ``search`` through pymilvus, on every deployment: the
best ``limit + offset`` hits' raw scores changed by the weights of the filters they match (and seeded
random scores), re-sorted in the metric's direction, against a reference computed from a plain search;
in an ANN request of a hybrid search; refused as a hybrid search's ranker and with bad parameters.
Formulas and the random hash: tests/unit/test_boost_rank.py."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionScore, FunctionType, MilvusException, RRFRanker
from pymilvus.client.prepare import Prepare

from tests.e2e._helpers import float_vectors
from vecdb.proxy.boost import random_scores

DIM, ROWS = 8, 300
TYPES = ("abstract", "body", "title")


def _boost(name: str = "boost", **params) -> Function:
    return Function(name=name, input_field_names=[], function_type=FunctionType.RERANK,
                    params={"reranker": "boost", **params})


@pytest.fixture
def coll(client, name):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("doctype", DataType.VARCHAR, max_length=16)
    schema.add_field("views", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = float_vectors(ROWS, DIM)
    client.insert(name, [{"id": i, "vec": vecs[i].tolist(), "doctype": TYPES[i % 3], "views": (i * 37) % 101,
                          "tag": "hot" if i % 5 == 0 else "cold"} for i in range(ROWS)])
    return client, name, vecs


def _plain(client, name, queries, window: int, **kwargs):
    return client.search(name, data=queries, limit=window, output_fields=["doctype", "views", "tag"],
                         consistency_level="Strong", **kwargs)


def _check(got, plain, boost_of, offset: int, limit: int, larger_is_better: bool = False):
    """``got`` against each query's plain hits rescored by ``boost_of(hit)`` (None: unchanged; else the
    new score), re-sorted stably, ``offset`` dropped, ``limit`` kept."""
    for hits, ref in zip(got, plain):
        scored = []
        for h in ref:
            new = boost_of(h)
            scored.append((float(np.float32(h["distance"])) if new is None else float(new), h["id"]))
        order = sorted(range(len(scored)), key=lambda j: -scored[j][0] if larger_is_better else scored[j][0])
        want = [scored[j] for j in order][offset:offset + limit]
        assert [h["id"] for h in hits] == [i for _, i in want]
        np.testing.assert_allclose([h["distance"] for h in hits], [s for s, _ in want], rtol=1e-5)


def test_a_boost_ranker_multiplies_the_matching_hits_distances_and_resorts(coll):
    client, name, vecs = coll
    queries = (vecs[[4, 150]] + 0.01).tolist()
    got = client.search(name, data=queries, limit=6, offset=2, output_fields=["doctype"], consistency_level="Strong",
                        ranker=_boost(filter="doctype == 'abstract'", weight=0.5))
    plain = _plain(client, name, queries, 8)
    _check(got, plain, lambda h: np.float32(h["distance"]) * np.float32(0.5)
           if h["entity"]["doctype"] == "abstract" else None, offset=2, limit=6)
    assert all(set(h["entity"]) == {"doctype"} for hits in got for h in hits)  # only the asked fields


def test_a_function_score_merges_several_boosts_with_its_modes(coll):
    client, name, vecs = coll
    queries = (vecs[[20]] - 0.01).tolist()
    ranker = FunctionScore([_boost("a", filter="views > 50", weight=0.3),
                            _boost("b", filter='tag == "hot"', weight=0.2,
                                   random_score={"seed": 126, "field": "views"})],
                           params={"boost_mode": "Sum", "function_mode": "Sum"})
    got = client.search(name, data=queries, limit=10, consistency_level="Strong", ranker=ranker)
    plain = _plain(client, name, queries, 10)

    def boost_of(h):
        e, parts = h["entity"], []
        if e["views"] > 50:
            parts.append(np.float32(0.3))
        if e["tag"] == "hot":
            parts.append(np.float32(random_scores(np.array([e["views"]]), 126)[0]) * np.float32(0.2))
        return None if not parts else np.float32(h["distance"]) + np.float32(sum(parts))
    _check(got, plain, boost_of, offset=0, limit=10)
    again = client.search(name, data=queries, limit=10, consistency_level="Strong", ranker=ranker)
    assert [h["distance"] for h in again[0]] == [h["distance"] for h in got[0]]  # seeded: deterministic


def test_boost_on_a_similarity_metric_sorts_descending(client, name):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = float_vectors(100, DIM, seed=3)
    client.insert(name, [{"id": i, "vec": vecs[i].tolist()} for i in range(100)])
    q = vecs[[7]].tolist()
    got = client.search(name, data=q, limit=5, consistency_level="Strong",
                        ranker=_boost(filter="id % 2 == 1", weight=3))
    plain = client.search(name, data=q, limit=5, consistency_level="Strong")
    _check(got, plain, lambda h: np.float32(h["distance"]) * np.float32(3) if h["id"] % 2 else None, 0, 5,
           larger_is_better=True)


def test_a_boost_ranker_in_an_ann_request_rescores_its_hits_before_fusion(coll, monkeypatch):
    client, name, vecs = coll
    q1, q2 = (vecs[[10]] + 0.02).tolist(), (vecs[[200]] - 0.02).tolist()
    boost = Prepare.ranker_to_function_score(_boost(filter="doctype == 'body'", weight=0.1))
    build = Prepare.hybrid_search_request_with_ranker

    def with_sub_boost(*args, **kwargs):  # pymilvus 2.6's AnnSearchRequest has no ranker: set it on the wire
        request = build(*args, **kwargs)
        request.requests[0].function_score.CopyFrom(boost)
        return request
    monkeypatch.setattr(Prepare, "hybrid_search_request_with_ranker", staticmethod(with_sub_boost))
    reqs = [AnnSearchRequest(q1, "vec", {"metric_type": "L2"}, limit=10),
            AnnSearchRequest(q2, "vec", {"metric_type": "L2"}, limit=10)]
    got = client.hybrid_search(name, reqs, RRFRanker(60), limit=20, consistency_level="Strong")
    monkeypatch.undo()
    first = _plain(client, name, q1, 10)[0]
    ranked1 = sorted(first, key=lambda h: np.float32(h["distance"]) * (np.float32(0.1) if h["entity"]["doctype"]
                                                                        == "body" else 1))
    ranked2 = _plain(client, name, q2, 10)[0]
    scores: dict[int, float] = {}
    for ranked in (ranked1, ranked2):
        for r, h in enumerate(ranked, 1):
            scores[h["id"]] = scores.get(h["id"], 0.0) + 1 / (60 + r)
    want = sorted(scores.items(), key=lambda t: (-t[1], t[0]))[:20]
    assert [h["id"] for h in got[0]] == [i for i, _ in want]


def test_bad_boost_rankers_are_refused(coll):
    client, name, vecs = coll
    q = vecs[:1].tolist()
    cases = [(_boost(filter="doctype == 'body'"), "lost param: weight"),
             (_boost(weight="x"), "not a number"),
             (_boost(weight=1, filter="doctype =="), "cannot parse expression"),
             (_boost(weight=1, random_score={"field": "doctype"}), "only support int64 field"),
             (FunctionScore([_boost(weight=1)], params={"boost_mode": "Max"}), "unknown boost boost_mode")]
    for ranker, words in cases:
        with pytest.raises(MilvusException, match=words) as e:
            client.search(name, data=q, limit=3, ranker=ranker)
        assert e.value.code == 1100
    reqs = [AnnSearchRequest(q, "vec", {"metric_type": "L2"}, limit=5)]
    with pytest.raises(MilvusException, match="Unsupported rerank function: \\[boost\\]") as e:
        client.hybrid_search(name, reqs, _boost(weight=2), limit=3)
    assert e.value.code == 1100
    decay = Function(name="d", input_field_names=["views"], function_type=FunctionType.RERANK,
                     params={"reranker": "decay", "function": "gauss", "origin": 0, "scale": 10})
    with pytest.raises(MilvusException, match="cannot be combined with other rerank") as e:
        client.search(name, data=q, limit=3, ranker=FunctionScore([_boost(weight=2), decay]))
    assert e.value.code == 1100

"""The decay reranker (Milvus 2.6: ``ranker=Function(..., FunctionType.RERANK, params={"reranker":
"decay", ...})``) on ``search`` and ``hybrid_search`` through pymilvus, on every deployment: each hit's
larger-is-better score times the decay of a numeric field's distance from ``origin`` (gauss, exp,
linear), re-sorted, against a reference computed from plain searches; bad parameters and
combinations are refused with Milvus's codes. Formulas: tests/unit/test_rerank.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusException

from tests.e2e._helpers import float_vectors

DIM, ROWS = 8, 400


def _decay(function: str, field: str = "ts", **params) -> Function:
    return Function(name=f"{function}_decay", input_field_names=[field], function_type=FunctionType.RERANK,
                    params={"reranker": "decay", "function": function, **params})


def _factor(function: str, value: float, origin: float, scale: float, offset: float = 0, decay: float = 0.5):
    d = max(0.0, abs(value - origin) - offset)
    if function == "gauss":
        return math.exp(math.log(decay) * d * d / (scale * scale))
    if function == "exp":
        return math.exp(math.log(decay) * d / scale)
    return max(decay, 1 - (1 - decay) / scale * d)


def _greater(distance: float) -> float:  # L2 distances made larger-is-better, as Milvus's toGreaterScore
    return 1 - 2 * math.atan(distance) / math.pi


@pytest.fixture
def coll(client, name):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("ts", DataType.INT64)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("title", DataType.VARCHAR, max_length=16)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = float_vectors(ROWS, DIM)
    client.insert(name, [{"id": i, "vec": vecs[i].tolist(), "ts": 1000 + 7 * i, "price": (i % 50) / 2,
                          "title": f"t{i}"} for i in range(ROWS)])
    return client, name, vecs


def _reference(client, name, queries, window: int, function: str, field: str, **params) -> list[list[tuple]]:
    """Per query, (score, id) of the best ``window`` plain hits, re-scored, best first (ties: smaller id)."""
    plain = client.search(name, data=queries, limit=window, output_fields=[field], consistency_level="Strong")
    out = []
    for hits in plain:
        scored = [(_greater(h["distance"]) * _factor(function, h["entity"][field], **params), h["id"]) for h in hits]
        out.append(sorted(scored, key=lambda t: (-t[0], t[1])))
    return out


@pytest.mark.parametrize("function", ["gauss", "exp", "linear"])
def test_a_search_with_a_decay_ranker_reorders_its_hits_by_the_decayed_score(coll, function):
    client, name, vecs = coll
    queries = (vecs[[3, 200]] + 0.01).tolist()
    params = {"origin": 1000 + 7 * 150, "scale": 300, "offset": 20, "decay": 0.4}
    got = client.search(name, data=queries, limit=5, offset=2, output_fields=["title"], consistency_level="Strong",
                        ranker=_decay(function, **params))
    want = _reference(client, name, queries, 7, function, "ts", **params)
    for hits, ref in zip(got, want):
        assert [h["id"] for h in hits] == [i for _, i in ref[2:7]]
        np.testing.assert_allclose([h["distance"] for h in hits], [s for s, _ in ref[2:7]], rtol=1e-5)
        assert all(h["entity"] == {"title": f"t{h['id']}"} for h in hits)  # the decay's field is not output
    # a DOUBLE field decays too
    got = client.search(name, data=queries[:1], limit=4, consistency_level="Strong",
                        ranker=_decay(function, "price", origin=0, scale=5))
    want = _reference(client, name, queries[:1], 4, function, "price", origin=0, scale=5)
    assert [h["id"] for h in got[0]] == [i for _, i in want[0]]


def test_a_hybrid_search_keeps_each_keys_best_score_times_its_decay(coll):
    client, name, vecs = coll
    q1, q2 = (vecs[[10]] + 0.02).tolist(), (vecs[[300]] - 0.02).tolist()
    reqs = [AnnSearchRequest(q1, "vec", {"metric_type": "L2"}, limit=20),
            AnnSearchRequest(q2, "vec", {"metric_type": "L2"}, limit=20)]
    params = {"origin": 1000 + 7 * 300, "scale": 500}
    got = client.hybrid_search(name, reqs, ranker=_decay("gauss", **params), limit=8, output_fields=["ts"],
                               consistency_level="Strong")
    best: dict[int, tuple[float, int]] = {}
    for q in (q1, q2):
        for h in client.search(name, data=q, limit=20, output_fields=["ts"], consistency_level="Strong")[0]:
            score = _greater(h["distance"])
            if h["id"] not in best or score > best[h["id"]][0]:
                best[h["id"]] = (score, h["entity"]["ts"])
    want = sorted(((s * _factor("gauss", ts, **params), i) for i, (s, ts) in best.items()), key=lambda t: (-t[0], t[1]))
    assert [h["id"] for h in got[0]] == [i for _, i in want[:8]]
    np.testing.assert_allclose([h["distance"] for h in got[0]], [s for s, _ in want[:8]], rtol=1e-5)
    assert all(h["entity"]["ts"] == 1000 + 7 * h["id"] for h in got[0])


def test_bad_decay_rankers_and_combinations_are_refused(coll):
    client, name, vecs = coll
    q = vecs[:1].tolist()
    cases = [(_decay("gauss", scale=10), 1100, "lost param: origin"),
             (_decay("gauss", origin=0, scale=-1), 1100, "scale must > 0"),
             (_decay("cubic", origin=0, scale=1), 1100, "Invalid decay function: cubic"),
             (_decay("gauss", "title", origin=0, scale=1), 1100, "unsupported input field type:VARCHAR"),
             (Function(name="m", input_field_names=["title"], function_type=FunctionType.RERANK,
                       params={"reranker": "model", "provider": "tei"}), 3000, "not supported")]
    for ranker, code, words in cases:
        with pytest.raises(MilvusException, match=words) as e:
            client.search(name, data=q, limit=3, ranker=ranker)
        assert e.value.code == code
    with pytest.raises(MilvusException, match="cannot be combined") as e:
        client.search(name, data=q, limit=3, group_by_field="ts", ranker=_decay("exp", origin=0, scale=1))
    assert e.value.code == 1100


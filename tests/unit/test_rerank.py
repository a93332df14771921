"""vecdb.proxy.rerank: the fusion rules on hand-made request results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecdb import errors
from vecdb.proxy.decay import FUNCTIONS, Decay, parse_decay
from vecdb.proxy.rerank import Ranker, SubResult, fuse, ranker_from_function, ranker_from_rank_params
from vecdb.schema import CollectionSchema, DataType, FieldSchema

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("ts", DataType.INT64),
                                FieldSchema("title", DataType.VARCHAR, max_length=10)])


def _sub(pks, scores, metric="L2", topks=None):
    pks = np.asarray(pks, dtype=object if pks and isinstance(pks[0], str) else np.int64)
    return SubResult(topks or [len(pks)], pks, np.asarray(scores, np.float32), metric)


def test_rrf_sums_reciprocal_ranks_and_breaks_ties_by_smaller_key():
    a = _sub([5, 3, 9], [0.1, 0.2, 0.3])
    b = _sub([9, 7], [0.5, 0.6], "IP")
    out = fuse(Ranker("rrf", k=10), [a, b], nq=1, limit=10, offset=0)
    # 9: 1/13 + 1/11; 5: 1/11; 7: 1/12; 3: 1/12 -> 3 before 7 (tie, smaller key first)
    assert out.pks.tolist() == [9, 5, 3, 7]
    np.testing.assert_allclose(out.scores, [1 / 13 + 1 / 11, 1 / 11, 1 / 12, 1 / 12], rtol=1e-6)
    assert (out.sources.tolist(), out.positions.tolist()) == ([0, 0, 0, 1], [2, 0, 1, 1])


def test_offset_limit_and_several_queries():
    a = _sub([1, 2, 3, 4], [1, 2, 3, 4], topks=[2, 2])
    out = fuse(Ranker("rrf"), [a], nq=2, limit=1, offset=1)
    assert (out.topks, out.pks.tolist(), out.positions.tolist()) == ([1, 1], [2, 4], [1, 3])


def test_weighted_normalisation_per_metric():
    subs = [_sub([1], [2.0], "L2"), _sub([1], [3.0], "IP"), _sub([1], [0.5], "COSINE")]
    out = fuse(Ranker("weighted", weights=(0.2, 0.3, 0.5)), subs, nq=1, limit=5, offset=0)
    want = 0.2 * (1 - 2 * math.atan(2) / math.pi) + 0.3 * (0.5 + math.atan(3) / math.pi) + 0.5 * 0.75
    assert out.scores[0] == pytest.approx(want, rel=1e-6)


def test_weighted_raw_distances_sort_ascending():
    subs = [_sub([1, 2], [1.0, 4.0]), _sub([2, 3], [0.5, 0.7])]
    out = fuse(Ranker("weighted", weights=(1.0, 1.0), norm_score=False), subs, nq=1, limit=5, offset=0)
    assert out.pks.tolist() == [3, 1, 2]


def test_varchar_keys_and_empty_results():
    out = fuse(Ranker("rrf"), [_sub(["b", "a"], [1, 2]), _sub([], [])], nq=1, limit=5, offset=0)
    assert out.pks.tolist() == ["b", "a"]
    empty = fuse(Ranker("rrf"), [_sub([], [])], nq=1, limit=5, offset=0)
    assert (empty.topks, len(empty.pks)) == ([0], 0)


def test_rank_params_parsing():
    assert ranker_from_rank_params({}, 2) == Ranker("rrf", k=60)
    assert ranker_from_rank_params({"strategy": "rrf", "params": '{"k": 5}'}, 2).k == 5
    w = ranker_from_rank_params({"strategy": "weighted", "params": '{"weights": [0.1, 0.9]}'}, 2)
    assert (w.weights, w.norm_score) == ((0.1, 0.9), True)
    for bad, words in [({"strategy": "nope", "params": "{}"}, "unsupported rank type nope"),
                       ({"strategy": "rrf"}, "params not found"),
                       ({"strategy": "rrf", "params": '{"k": "x"}'}, "should be float"),
                       ({"strategy": "weighted", "params": '{"weights": 0.5}'}, "should be an array")]:
        with pytest.raises(errors.InvalidParameter, match=words):
            ranker_from_rank_params(bad, 2)
    assert ranker_from_function("f", {"reranker": "weighted", "weights": "[1, 0]"}, 2, SCHEMA, []).norm_score is False
    with pytest.raises(errors.OperationNotSupported, match="use rrf, weighted or decay"):
        ranker_from_function("f", {"reranker": "model"}, 2, SCHEMA, [])


def _decay(**params) -> Decay:
    return parse_decay(SCHEMA, ["ts"], {k: str(v) for k, v in params.items()})


def test_decay_functions_keep_the_decay_share_one_scale_past_the_offset():
    for function in FUNCTIONS:
        d = _decay(function=function, origin=100, scale=10, offset=5, decay=0.3)
        values = np.array([100, 97, 105, 115, 85, 125])  # at the origin, inside the offset, one scale past it...
        f = d.factors(values)
        np.testing.assert_allclose(f[:3], 1.0)
        np.testing.assert_allclose(f[3:5], 0.3)
        assert 0 < f[5] < 0.3 if function != "linear" else f[5] == 0.3  # linear stops at the decay
    assert _decay(function="gauss", origin=0, scale=1) == Decay("ts", "gauss", 0.0, 1.0, 0.0, 0.5)
    np.testing.assert_allclose(_decay(function="exp", origin=0, scale=2).factors(np.array([4.0])), 0.25)
    np.testing.assert_allclose(_decay(function="linear", origin=0, scale=4).factors(np.array([2.0])), 0.75)


def test_decay_params_are_checked_as_milvus_does():
    ok = {"function": "gauss", "origin": 1, "scale": 2}
    for bad, words in [({"scale": 2, "function": "gauss"}, "lost param: origin"),
                       ({"origin": 1, "function": "gauss"}, "lost param: scale"),
                       ({**ok, "scale": 0}, "scale must > 0"),
                       ({**ok, "offset": -1}, "offset must >= 0"),
                       ({**ok, "decay": 1}, "decay must 0 < decay < 1"),
                       ({**ok, "origin": "soon"}, "Param origin:soon is not a number"),
                       ({**ok, "function": "cubic"},
                        r"Invalid decay function: cubic, only support \[gauss,linear,exp\]")]:
        with pytest.raises(errors.InvalidParameter, match=words):
            parse_decay(SCHEMA, ["ts"], {k: str(v) for k, v in bad.items()})
    with pytest.raises(errors.InvalidParameter, match="only supports single input"):
        parse_decay(SCHEMA, ["ts", "ts"], {k: str(v) for k, v in ok.items()})
    with pytest.raises(errors.InvalidParameter, match="unsupported input field type:VARCHAR"):
        parse_decay(SCHEMA, ["title"], {k: str(v) for k, v in ok.items()})
    with pytest.raises(errors.InvalidParameter, match="input field not found: nope"):
        parse_decay(SCHEMA, ["nope"], {k: str(v) for k, v in ok.items()})


def test_decay_fusion_keeps_each_keys_best_larger_is_better_score_times_its_decay():
    ranker = ranker_from_function("f", {"reranker": "decay", "function": "linear", "origin": "0", "scale": "10",
                                        "decay": "0.1"}, 2, SCHEMA, ["ts"])
    # request 1 (L2 distances) and request 2 (IP): key 7 in both, its values agree (one row)
    l2 = SubResult([2], np.array([7, 8]), np.array([0.0, 1.0], np.float32), "L2", np.array([5, 0]))
    ip = SubResult([2], np.array([9, 7]), np.array([0.9, 0.8], np.float32), "IP", np.array([10, 5]))
    fused = fuse(ranker, [l2, ip], 1, 3, 0)
    greater_l2 = np.float32(1 - 2 * math.atan(1.0) / math.pi)  # 0.5 for key 8
    want = {7: max(1.0, 0.8) * 0.55, 8: greater_l2 * 1.0, 9: 0.9 * 0.1}
    assert fused.pks.tolist() == [7, 8, 9]
    np.testing.assert_allclose(fused.scores, [want[7], want[8], want[9]], rtol=1e-6)
    assert fused.sources.tolist() == [0, 0, 1] and fused.positions.tolist() == [0, 1, 0]

"""vecdb.proxy.rerank: the fusion rules on hand-made request results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecdb import errors
from vecdb.proxy.rerank import Ranker, SubResult, fuse, ranker_from_function, ranker_from_rank_params


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
    assert ranker_from_function("f", {"reranker": "weighted", "weights": "[1, 0]"}, 2).norm_score is False
    with pytest.raises(errors.OperationNotSupported):
        ranker_from_function("f", {"reranker": "decay"}, 2)

"""vecdb.proxy.boost: the boost ranker's formulas, modes, seeded random scores and parameter checks on
hand-made hits."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vecdb import errors
from vecdb.proxy.boost import Boost, BoostFunction, parse_boost, random_scores, rescored_rows
from vecdb.proxy.rerank import function_ranker
from vecdb.schema import CollectionSchema, DataType, FieldSchema

SCHEMA = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                FieldSchema("doctype", DataType.VARCHAR, max_length=16),
                                FieldSchema("rank", DataType.INT64), FieldSchema("price", DataType.DOUBLE)])
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M
    return k ^ (k >> 33)


def _reference_random(key: int, seed: int) -> float:
    """Milvus's MurmurHash3_x64_64_Special + hash_to_double, one key at a time in Python integers."""
    key, seed = key & _M, seed & _M
    h1, h2 = key ^ seed, seed
    h1 ^= (_rotl((key * 0x87C37B91114253D5) & _M, 31) * 0x4CF5AD432745937F) & _M
    h1 = (_rotl(h1, 27) + h2) & _M
    h1 = (h1 * 5 + 0x52DCE729) & _M
    h2 ^= (_rotl((seed * 0x4CF5AD432745937F) & _M, 33) * 0x87C37B91114253D5) & _M
    h2 = (_rotl(h2, 31) + h1) & _M
    h2 = (h2 * 5 + 0x38495AB5) & _M
    h1, h2 = h1 ^ 16, h2 ^ 16
    h1 = (h1 + h2) & _M
    h2 = (h2 + h1) & _M
    h = (_fmix(h1) + _fmix(h2)) & _M
    return struct.unpack("<d", struct.pack("<Q", (0x3FF << 52) | (h & ((1 << 52) - 1))))[0] - 1.0


def _boost(*functions: dict, boost_mode: str | None = None, function_mode: str | None = None) -> Boost:
    score = {k: v for k, v in (("boost_mode", boost_mode), ("function_mode", function_mode)) if v is not None}
    return parse_boost(SCHEMA, [([], {"reranker": "boost", **f}) for f in functions], score)


# the Milvus docs' example: ids, doc types and L2 distances of one query's candidates
IDS = np.array([117, 89, 257, 358, 168, 46, 48, 561, 344, 276], np.int64)
TYPES = np.array(["abstract", "abstract", "body", "title", "body", "body", "body", "abstract", "abstract",
                  "abstract"], object)
DIST = np.array([0.344, 0.456, 0.578, 0.788, 0.899, 0.189, 0.265, 0.366, 0.444, 0.845], np.float32)
COLS = {"doctype": TYPES, "rank": np.arange(10, dtype=np.int64), "price": np.linspace(0, 9, 10)}


def test_the_docs_example_multiplies_matching_scores_and_resorts_by_distance():
    boost = _boost({"filter": "doctype == 'abstract'", "weight": "0.5"})
    scores = boost.rescore(DIST, IDS, COLS)
    abstract = TYPES == "abstract"
    np.testing.assert_array_equal(scores[abstract], DIST[abstract] * np.float32(0.5))
    np.testing.assert_array_equal(scores[~abstract], DIST[~abstract])
    topks, rows = rescored_rows([10], scores, "L2", limit=5, offset=0)
    assert topks == [5] and IDS[rows].tolist() == [117, 561, 46, 344, 89]  # the docs' final table


def test_similarity_metrics_sort_descending_and_offset_limit_apply_per_query():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    topks, rows = rescored_rows([3, 2], scores, "IP", limit=2, offset=1)
    assert (topks, rows.tolist()) == ([2, 1], [1, 2, 4])
    boosted = _boost({"filter": "rank == 2", "weight": 2}).rescore(scores, np.arange(5), {"rank": np.arange(5)})
    topks, rows = rescored_rows([3, 2], boosted, "COSINE", limit=3, offset=0)
    assert (topks, rows.tolist()) == ([3, 2], [2, 0, 1, 3, 4])
    assert rescored_rows([0, 0], np.empty(0, np.float32), "L2", 3, 0)[0] == [0, 0]


def test_no_filter_boosts_every_hit_and_sum_mode_adds_the_weight():
    boost = _boost({"weight": 0.25}, boost_mode="Sum")
    np.testing.assert_array_equal(boost.rescore(DIST, IDS, COLS), DIST + np.float32(0.25))


@pytest.mark.parametrize("function_mode", ["Multiply", "Sum"])
def test_function_mode_merges_the_weights_of_every_function_a_hit_matches(function_mode):
    boost = _boost({"filter": "doctype == 'abstract'", "weight": 0.5}, {"filter": "rank >= 5", "weight": 3},
                   function_mode=function_mode)
    abstract, late = TYPES == "abstract", COLS["rank"] >= 5
    both = np.float32(0.5) * np.float32(3) if function_mode == "Multiply" else np.float32(3.5)
    want = np.where(abstract & late, both, np.where(abstract, np.float32(0.5), np.where(late, np.float32(3), 1)))
    np.testing.assert_array_equal(boost.rescore(DIST, IDS, COLS), (DIST * want.astype(np.float32)))
    value, has = boost.boosts(IDS, COLS)
    assert has.tolist() == (abstract | late).tolist()


def test_random_score_is_milvus_hash_of_the_field_and_seed_times_the_weight():
    keys = np.array([0, 1, 2, -5, 2**62, 126, -(2**63)], np.int64)
    for seed in (0, 126, -3):
        np.testing.assert_array_equal(random_scores(keys, seed), [_reference_random(int(k), seed) for k in keys])
    values = random_scores(np.arange(1000, dtype=np.int64), 7)
    assert values.min() >= 0 and values.max() < 1 and 0.4 < values.mean() < 0.6
    boost = _boost({"weight": 0.4, "random_score": '{"seed": 126, "field": "rank"}'})
    value, has = boost.boosts(IDS, COLS)
    want = random_scores(COLS["rank"], 126).astype(np.float32) * np.float32(0.4)
    assert has.all() and np.array_equal(value, want)
    assert np.array_equal(boost.boosts(IDS, COLS)[0], value)  # deterministic
    other = _boost({"weight": 0.4, "random_score": '{"seed": 127, "field": "rank"}'}).boosts(IDS, COLS)[0]
    assert not np.array_equal(other, value)


def test_random_score_without_a_field_hashes_the_primary_key_strings_included():
    boost = _boost({"weight": 1, "random_score": '{"seed": 5}'})
    np.testing.assert_array_equal(boost.boosts(IDS, COLS)[0], random_scores(IDS, 5).astype(np.float32))
    names = np.array(["a", "bb", "a", ""], object)
    value = boost.boosts(names, {})[0]
    assert value[0] == value[2] and len(set(value.tolist())) == 3 and ((value >= 0) & (value < 1)).all()
    assert BoostFunction(1.0, random=True).seed == 0  # no seed: 0


def test_a_filtered_random_score_only_touches_matching_hits():
    boost = _boost({"filter": "price > 4", "weight": 2, "random_score": '{"seed": 1, "field": "id"}'})
    value, has = boost.boosts(IDS, {**COLS, "id": IDS})
    assert has.tolist() == (COLS["price"] > 4).tolist()
    np.testing.assert_array_equal(value[has], random_scores(IDS[has], 1).astype(np.float32) * np.float32(2))


@pytest.mark.parametrize("params, words", [
    ({}, "lost param: weight"),
    ({"weight": "heavy"}, "is not a number"),
    ({"weight": "inf"}, "not a finite"),
    ({"weight": 1, "filter": "nope == 1 and"}, "cannot parse expression"),
    ({"weight": 1, "random_score": "{bad"}, "not a JSON object"),
    ({"weight": 1, "random_score": "[1]"}, "not a JSON object"),
    ({"weight": 1, "random_score": '{"seed": 1.5}'}, "seed must be an integer"),
    ({"weight": 1, "random_score": '{"seed": 1, "feild": "id"}'}, "unknown boost random_score params"),
    ({"weight": 1, "random_score": '{"field": "missing"}'}, "field not found: missing"),
    ({"weight": 1, "random_score": '{"field": "price"}'}, "only support int64 field"),
])
def test_bad_boost_functions_are_invalid_parameters(params, words):
    with pytest.raises(errors.InvalidParameter, match=words) as e:
        _boost(params)
    assert e.value.code == 1100


def test_bad_modes_and_input_fields_are_refused():
    with pytest.raises(errors.InvalidParameter, match="unknown boost boost_mode: Max"):
        _boost({"weight": 1}, boost_mode="Max")
    with pytest.raises(errors.InvalidParameter, match="unknown boost function_mode"):
        _boost({"weight": 1}, function_mode="avg")
    with pytest.raises(errors.InvalidParameter, match="does not take input fields"):
        parse_boost(SCHEMA, [(["rank"], {"reranker": "boost", "weight": "1"})], {})
    assert _boost({"weight": 1}, boost_mode="sum", function_mode="MULTIPLY").boost_mode == "sum"


def _request(*functions: dict, **score_params) -> milvus_pb2.SearchRequest:
    def fn(params: dict):
        return schema_pb2.FunctionSchema(name="f", type=schema_pb2.FunctionType.Rerank, params=[
            common_pb2.KeyValuePair(key=k, value=str(v)) for k, v in params.items()])
    return milvus_pb2.SearchRequest(function_score=schema_pb2.FunctionScore(
        functions=[fn(f) for f in functions],
        params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in score_params.items()]))


def test_a_function_score_of_boost_functions_is_one_boost_ranker():
    ranker = function_ranker(_request({"reranker": "boost", "weight": 2}, {"reranker": "Boost", "weight": 3},
                                      boost_mode="Sum", function_mode="Sum"), 1, SCHEMA)
    assert ranker is not None and ranker.strategy == "boost" and ranker.boost is not None
    assert ([f.weight for f in ranker.boost.functions], ranker.boost.boost_mode) == ([2.0, 3.0], "sum")
    with pytest.raises(errors.InvalidParameter, match="cannot be combined with other rerank"):
        function_ranker(_request({"reranker": "boost", "weight": 2}, {"reranker": "rrf"}), 1, SCHEMA)


def test_a_filter_time_without_an_offset_reads_in_the_search_zone():
    """A TIMESTAMPTZ literal without an offset in a boost filter means the search's zone, as in the
    search's own filter (midnight in Shanghai is 16:00 UTC the day before)."""
    schema = CollectionSchema("c", [FieldSchema("id", DataType.INT64, is_primary=True),
                                    FieldSchema("at", DataType.TIMESTAMPTZ)])
    utc_1600 = np.array([1735660800_000_000], np.int64)  # 2024-12-31T16:00:00Z, microseconds
    fn = {"reranker": "boost", "weight": "2", "filter": "at >= ISO '2025-01-01T00:00:00'"}
    ids = np.array([1], np.int64)
    shanghai = parse_boost(schema, [([], fn)], {}, "Asia/Shanghai")
    assert shanghai.boosts(ids, {"at": utc_1600})[1].all()
    utc = parse_boost(schema, [([], fn)], {})
    assert not utc.boosts(ids, {"at": utc_1600})[1].any()

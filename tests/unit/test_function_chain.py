"""vecdb.proxy.function_chain: Milvus 3.0 function chains (pymilvus 3.0's DSL) parsed, checked and run
over each query's hits, against a per-query reference computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus.function_chain import FunctionChain, FunctionChainExpr, FunctionChainOp, FunctionChainStage, col, fn
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import errors
from vecdb.proxy import function_chain as fc
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key

SCHEMA = CollectionSchema("c", [
    FieldSchema("id", DataType.INT64, is_primary=True),
    FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
    FieldSchema("x", DataType.DOUBLE), FieldSchema("n", DataType.INT32), FieldSchema("tag", DataType.VARCHAR,
                                                                                          max_length=8),
    FieldSchema("flag", DataType.BOOL), FieldSchema("meta", DataType.JSON),
    FieldSchema("opt", DataType.FLOAT, nullable=True),
])
L2 = FunctionChainStage.L2_RERANK


def _request(*chains, function_score: bool = False) -> milvus_pb2.SearchRequest:
    req = milvus_pb2.SearchRequest(collection_name="c")
    req.function_chains.extend([c.to_proto() for c in chains])
    if function_score:
        req.function_score.functions.append(schema_pb2.FunctionSchema(name="f"))
    return req


def _parse(*chains, hybrid=False, **kw) -> fc.Chain:
    chain = fc.parse_chains(_request(*chains, **kw), SCHEMA, hybrid=hybrid)
    assert chain is not None
    return chain


def _hits(seed=0, topks=(7, 5)):
    rng = np.random.default_rng(seed)
    n = sum(topks)
    cols = {"x": rng.uniform(-10, 10, n), "n": rng.integers(0, 4, n).astype(np.int32),
            "tag": np.array([f"t{i % 3}" for i in range(n)], dtype=object),
            "opt": rng.uniform(0, 1, n).astype(np.float32), valid_key("opt"): rng.random(n) > 0.3}
    pks = rng.permutation(1000)[:n].astype(np.int64)
    scores = np.round(rng.uniform(0, 1, n), 1).astype(np.float32)  # ties
    return list(topks), pks, scores, cols


def _decay_ref(values, function, origin, scale, offset=0.0, decay=0.5):
    d = max(0.0, abs(values - origin) - offset)
    if function == "gauss":
        return math.exp(math.log(decay) * d * d / scale ** 2)
    if function == "exp":
        return math.exp(math.log(decay) * d / scale)
    return max(decay, 1 - (1 - decay) * d / scale)


def _per_query(topks, *arrays):
    out, at = [], 0
    for k in topks:
        out.append([a[at:at + k] for a in arrays])
        at += k
    return out


def test_no_chain_is_none():
    assert fc.parse_chains(milvus_pb2.SearchRequest(), SCHEMA) is None


@pytest.mark.parametrize("function", ["gauss", "exp", "linear"])
def test_decay_then_weighted_combine_sort_limit(function):
    chain = _parse(FunctionChain(L2, name="c")
                   .map("fresh", fn.decay(col("x"), function=function, origin=1, scale=3, offset=0.5, decay=0.4))
                   .map("$score", fn.num_combine(col("$score"), col("fresh"), mode="weighted", weights=[0.7, 0.3]))
                   .sort(col("$score"), desc=True, tie_break_col=col("$id")).limit(3, offset=1))
    assert chain.fields == ("x",)
    topks, pks, scores, cols = _hits()
    new_topks, rows, new_scores = fc.run(chain, topks, pks, scores, cols)
    assert new_topks == [3, 3]
    got = _per_query(new_topks, pks[rows], new_scores)
    for q, (p, s, x) in enumerate(_per_query(topks, pks, scores, cols["x"])):
        combined = np.array([np.float32(0.7 * float(si) + 0.3 * float(np.float32(
            _decay_ref(xi, function, 1, 3, 0.5, 0.4)))) for si, xi in zip(s, x)], np.float32)
        order = sorted(range(len(p)), key=lambda i: (-combined[i], p[i]))[1:4]
        assert got[q][0].tolist() == p[order].tolist()
        np.testing.assert_allclose(got[q][1], combined[order], rtol=1e-6)


@pytest.mark.parametrize("mode", ["multiply", "sum", "max", "min", "avg"])
def test_num_combine_modes(mode):
    chain = _parse(FunctionChain(L2).map("$score", fn.num_combine(col("$score"), col("x"), col("n"), mode=mode)))
    topks, pks, scores, cols = _hits(1)
    _, rows, out = fc.run(chain, topks, pks, scores, cols)
    stack = np.stack([scores.astype(np.float64), cols["x"], cols["n"].astype(np.float64)], axis=1)
    want = {"multiply": stack.prod(1), "sum": stack.sum(1), "max": stack.max(1), "min": stack.min(1),
            "avg": stack.mean(1)}[mode].astype(np.float32)
    assert rows.tolist() == list(range(len(pks)))  # no sort: the hits' order kept
    np.testing.assert_allclose(out, want, rtol=1e-6)


@pytest.mark.parametrize("policy", ["propagate", "as_zero", "skip"])
def test_num_combine_null_policy(policy):
    expr = FunctionChainExpr("num_combine", args=(col("$score"), col("opt")),
                             params={"mode": "sum", "null_policy": policy})
    chain = _parse(FunctionChain(L2).map("$score", expr))
    topks, pks, scores, cols = _hits(2)
    _, _, out = fc.run(chain, topks, pks, scores, cols)
    valid = cols[valid_key("opt")]
    both = (scores.astype(np.float64) + cols["opt"]).astype(np.float32)
    want = {"propagate": np.where(valid, both, 0), "as_zero": np.where(valid, both, scores),
            "skip": np.where(valid, both, scores)}[policy]
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_round_decimal_and_ascending_sort_with_string_tie_break():
    chain = _parse(FunctionChain(L2).map("r", fn.round_decimal(col("x"), decimal=1))
                   .sort(col("tag"), desc=False, tie_break_col=col("r")))
    topks, pks, scores, cols = _hits(3)
    new_topks, rows, out = fc.run(chain, topks, pks, scores, cols)
    assert new_topks == topks
    np.testing.assert_array_equal(out, scores[rows])  # $score untouched
    rounded = (np.floor(cols["x"] * 10 + 0.5) / 10).astype(np.float32)
    at = 0
    for k in topks:
        idx = list(range(at, at + k))
        want = sorted(idx, key=lambda i: (cols["tag"][i], rounded[i]))  # stable: the hits' order last
        assert rows[at:at + k].tolist() == want
        at += k


def test_sort_nulls_are_smallest():
    chain = _parse(FunctionChain(L2).sort(col("opt"), desc=True))
    topks, pks, scores, cols = _hits(4)
    _, rows, _ = fc.run(chain, topks, pks, scores, cols)
    valid, opt = cols[valid_key("opt")], cols["opt"]
    at = 0
    for k in topks:
        idx = list(range(at, at + k))
        want = sorted(idx, key=lambda i: (0, -opt[i]) if valid[i] else (1, 0))
        assert rows[at:at + k].tolist() == want
        at += k


def test_limit_offset_past_the_end_and_empty_queries():
    chain = _parse(FunctionChain(L2).limit(4, offset=5))
    topks, pks, scores, cols = _hits(5, topks=(7, 0, 5))
    new_topks, rows, _ = fc.run(chain, topks, pks, scores, cols)
    assert new_topks == [2, 0, 0]
    assert rows.tolist() == [5, 6]
    t, keep = fc.page([3, 2], 1, 1)
    assert t == [1, 1] and keep.tolist() == [1, 4]


def test_decay_of_a_null_is_null_and_a_null_score_reads_zero():
    chain = _parse(FunctionChain(L2).map("$score", fn.decay(col("opt"), function="linear", origin=0, scale=1)))
    topks, pks, scores, cols = _hits(6)
    _, _, out = fc.run(chain, topks, pks, scores, cols)
    valid = cols[valid_key("opt")]
    want = np.maximum(0.5, 1 - 0.5 * cols["opt"].astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(out, np.where(valid, want, 0), rtol=1e-6)


def test_fetch_adds_fields_and_validity_masks():
    chain = _parse(FunctionChain(L2).map("$score", fn.num_combine(col("$score"), col("opt"), col("x"))))
    assert chain.fetch(["tag"]) == ["tag", "opt", valid_key("opt"), "x"]


def _raises(words: str, *chains, hybrid=False, **kw):
    with pytest.raises(errors.InvalidParameter, match=words) as e:
        fc.parse_chains(_request(*chains, **kw), SCHEMA, hybrid=hybrid)
    assert e.value.code == 1100


def _op(op: str, **kw) -> FunctionChain:
    chain = FunctionChain(L2)
    chain._ops.append(FunctionChainOp(op=op, **kw))
    return chain


@pytest.mark.parametrize("chain, words", [
    (FunctionChain(FunctionChainStage.L0_RERANK).limit(1), "stage FunctionChainStageL0Rerank is not supported by"),
    (FunctionChain(FunctionChainStage.PRE_PROCESS).limit(1),
     r"function chain\[0\] stage FunctionChainStagePreProcess is not supported in search request"),
    (FunctionChain(L2), r"function chain\[0\] must contain at least one op"),
    (FunctionChain(L2).map("$id", fn.round_decimal(col("$score"), decimal=2)),
     "system output '\\$id' is not writable by L2 rerank function chain"),
    (FunctionChain(L2).sort(col("$group_score")), "system input '\\$group_score' is not supported"),
    (FunctionChain(L2).sort(col("nope")), "function chain input 'nope' is neither a previous output nor a collection"),
    (FunctionChain(L2).map("$score", fn.round_decimal(col("meta"), decimal=2)), "unsupported field type JSON"),
    (FunctionChain(L2).map("$score", fn.round_decimal(col("v"), decimal=2)), "unsupported field type FloatVector"),
    (FunctionChain(L2).map("$score", fn.round_decimal(col("tag"), decimal=2)), "expected numeric type"),
    (FunctionChain(L2).sort(col("flag")), "non-comparable type bool"),
    (FunctionChain(L2).map("$score", fn.xgboost(col("x"), model_resource="m")), "xgboost is not supported by vecdb"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("nope", args=(col("x"),))), "function 'nope' not found"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("decay", args=(col("x"),), params={
        "function": "gauss", "origin": 0, "scale": 0})), "decay: scale must be > 0"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("decay", args=(col("x"),), params={
        "function": "gauss", "origin": 0, "scale": 1, "decay": 1.0})), "decay: decay must be 0 < decay < 1"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("decay", args=(col("x"),), params={
        "function": "gauss", "origin": 0, "scale": 1, "decay": 0.9999})), "numerical stability"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("decay", args=(col("x"),), params={
        "function": "cubic", "origin": 0, "scale": 1})), "decay: invalid function 'cubic'"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("decay", args=(col("x"),), params={
        "function": "exp", "scale": 1})), "decay: origin is required"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("num_combine", args=(col("x"), col("n")), params={
        "mode": "weighted"})), "num_combine: weighted mode requires weights"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("num_combine", args=(col("x"), col("n")), params={
        "mode": "weighted", "weights": [1.0]})), "num_combine: weighted mode requires 2 weights, got 1"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("num_combine", args=(col("x"),), params={
        "mode": "sum"})), "num_combine: expected at least 2 input columns, got 1"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("num_combine", args=(col("x"), col("n")), params={
        "mode": "median"})), "num_combine: invalid mode 'median'"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("round_decimal", args=(col("x"),), params={
        "decimal": 7})), r"round_decimal: decimal must be in range \[0, 6\], got 7"),
    (FunctionChain(L2).map("$score", FunctionChainExpr("round_decimal", args=(col("x"), 3))),
     "literal arguments are not supported"),
    (_op("limit", params={"limit": 0}), "limit_op: limit must be positive"),
    (_op("limit"), "limit_op: limit is required"),
    (_op("sort", params={"desc": True}), "sort_op: column is required"),
    (_op("map"), "map operator requires function"),
    (_op("filter", expr=FunctionChainExpr("round_decimal", args=(col("x"),), params={"decimal": 1})),
     "filter_op: function must return boolean type"),
    (_op("merge"), r"operator\[0\]: merge is not supported in ordinary search"),
    (_op("select"), "operator select is not supported by vecdb yet"),
    (_op("explode"), r"op\[0\]: unknown operator type: explode"),
])
def test_refusals(chain, words):
    _raises(words, chain)


def test_refusals_of_the_request():
    _raises("appears more than once", FunctionChain(L2).limit(1), FunctionChain(L2).limit(2))
    _raises("function_score and function_chains cannot be used together", FunctionChain(L2).limit(1),
            function_score=True)
    _raises("merge is not supported by vecdb yet", _op("merge"), hybrid=True)
    with pytest.raises(errors.InvalidParameter, match="ANN request"):
        fc.refuse_on_ann_request(_request(FunctionChain(L2).limit(1)))

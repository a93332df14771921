"""Function chains (Milvus 3.0: pymilvus 3.0 ``search(..., function_chains=FunctionChain(...))``) through
pymilvus on every deployment: map / sort / limit with decay, num_combine and round_decimal over each
query's hits, against a reference computed here from a plain search of the same window (each query's
best ``limit + offset`` hits with the fields the chain reads); the hybrid search's chain (a raw
request: pymilvus 3.0.2 refuses to send one) over the fused hits; refusals with Milvus's code 1100.
Semantics: vecdb/proxy/function_chain.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus import DataType, MilvusException
from pymilvus.function_chain import FunctionChain, FunctionChainStage, col, fn

from tests.e2e._helpers import float_vectors

DIM, ROWS = 8, 300
L2 = FunctionChainStage.L2_RERANK


@pytest.fixture
def coll(client, name):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("x", DataType.DOUBLE)
    schema.add_field("n", DataType.INT32)
    schema.add_field("tag", DataType.VARCHAR, max_length=16)
    schema.add_field("opt", DataType.FLOAT, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx)
    vecs = float_vectors(ROWS, DIM)
    client.insert(name, [{"id": i, "vec": vecs[i].tolist(), "x": (i * 37 % 101) / 10, "n": i % 7,
                          "tag": f"t{i % 5}", "opt": None if i % 4 == 0 else (i % 9) / 9} for i in range(ROWS)])
    return client, name, vecs


def _plain(client, name, queries, window: int, fields: list[str]) -> list[list[dict]]:
    """Per query, the best ``window`` plain hits as {"id", "score", field: value ...}."""
    res = client.search(name, data=queries, limit=window, output_fields=fields, consistency_level="Strong")
    return [[{"id": h["id"], "score": h["distance"], **{f: h["entity"].get(f) for f in fields}} for h in hits]
            for hits in res]


def _factor(function: str, value: float, origin: float, scale: float, offset: float = 0.0, decay: float = 0.5):
    d = max(0.0, abs(value - origin) - offset)
    if function == "gauss":
        return math.exp(math.log(decay) * d * d / (scale * scale))
    if function == "exp":
        return math.exp(math.log(decay) * d / scale)
    return max(decay, 1 - (1 - decay) / scale * d)


def _f32(v: float) -> float:
    return float(np.float32(v))


def _ids_scores(res) -> list[list[tuple]]:
    return [[(h["id"], h["distance"]) for h in hits] for hits in res]


def _assert_same(got: list[list[tuple]], want: list[list[tuple]]) -> None:
    assert [[i for i, _ in q] for q in got] == [[i for i, _ in q] for q in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("function", ["gauss", "exp", "linear"])
def test_decay_and_weighted_combine_resorted_per_query(coll, function):
    client, name, vecs = coll
    queries = [vecs[3].tolist(), vecs[200].tolist()]  # nq = 2
    chain = (FunctionChain(L2, name="fresh")
             .map("fresh", fn.decay(col("x"), function=function, origin=5, scale=2, offset=0.5, decay=0.3))
             .map("$score", fn.num_combine(col("$score"), col("fresh"), mode="weighted", weights=[-0.2, 1.0]))
             .sort(col("$score"), desc=True, tie_break_col=col("$id"))
             .limit(6))
    res = client.search(name, data=queries, limit=10, output_fields=["tag"], function_chains=chain,
                        consistency_level="Strong")
    want = []
    for hits in _plain(client, name, queries, 10, ["x"]):
        scored = [(_f32(-0.2 * h["score"] + _f32(_factor(function, h["x"], 5, 2, 0.5, 0.3))), h["id"]) for h in hits]
        want.append([(i, s) for s, i in sorted(scored, key=lambda t: (-t[0], t[1]))[:6]])
    _assert_same(_ids_scores(res), want)
    entity = res[0][0]["entity"]
    assert entity["tag"] == f"t{res[0][0]['id'] % 5}" and "x" not in entity  # x read by the chain, not output


def test_chain_limit_and_the_searchs_offset(coll):
    """The chain runs over each query's best limit + offset hits; the search's offset and limit then page
    its result."""
    client, name, vecs = coll
    queries = [vecs[10].tolist(), vecs[11].tolist()]
    chain = FunctionChain(L2).sort(col("x"), desc=False, tie_break_col=col("$id")).limit(5, offset=2)
    res = client.search(name, data=queries, limit=4, offset=1, function_chains=chain, consistency_level="Strong")
    want = []
    for hits in _plain(client, name, queries, 5, ["x"]):
        rows = sorted(hits, key=lambda h: (h["x"], h["id"]))[2:7][1:5]
        want.append([(h["id"], h["score"]) for h in rows])
    _assert_same(_ids_scores(res), want)
    assert [len(q) for q in res] == [2, 2]


@pytest.mark.parametrize("mode", ["multiply", "sum", "max", "min", "avg"])
def test_num_combine_modes_keep_the_hits_order_without_a_sort(coll, mode):
    client, name, vecs = coll
    chain = FunctionChain(L2).map("$score", fn.num_combine(col("$score"), col("x"), col("n"), mode=mode))
    res = client.search(name, data=[vecs[7].tolist()], limit=8, function_chains=chain, consistency_level="Strong")
    ops = {"multiply": np.prod, "sum": np.sum, "max": np.max, "min": np.min, "avg": np.mean}
    want = [[(h["id"], _f32(ops[mode]([_f32(h["score"]), h["x"], h["n"]])))
             for h in _plain(client, name, [vecs[7].tolist()], 8, ["x", "n"])[0]]]
    _assert_same(_ids_scores(res), want)


def test_round_decimal_nullable_field_and_string_sort(coll):
    client, name, vecs = coll
    chain = (FunctionChain(L2)
             .map("$score", fn.num_combine(col("$score"), col("opt"), mode="sum"))  # null opt: null score
             .map("$score", fn.round_decimal(col("$score"), decimal=2))
             .sort(col("tag"), desc=True, tie_break_col=col("$score")))
    res = client.search(name, data=[vecs[0].tolist(), vecs[1].tolist()], limit=12, function_chains=chain,
                        output_fields=["tag", "opt"], consistency_level="Strong")
    want = []
    for hits in _plain(client, name, [vecs[0].tolist(), vecs[1].tolist()], 12, ["tag", "opt"]):
        rows = []
        for h in hits:
            s = 0.0 if h["opt"] is None else math.floor(_f32(h["score"] + h["opt"]) * 100 + 0.5) / 100
            rows.append((h["tag"], _f32(s), h["id"]))
        rows.sort(key=lambda r: r[1])  # stable: tag descending, then the score ascending
        rows.sort(key=lambda r: r[0], reverse=True)
        want.append([(i, s) for _, s, i in rows])
    _assert_same(_ids_scores(res), want)


def test_the_searchs_round_decimal_applies_to_the_chains_scores(coll):
    client, name, vecs = coll
    chain = FunctionChain(L2).map("$score", fn.num_combine(col("$score"), col("x"), mode="sum"))
    res = client.search(name, data=[vecs[5].tolist()], limit=5, function_chains=chain, round_decimal=1,
                        consistency_level="Strong")
    want = [[(h["id"], round(_f32(h["score"] + h["x"]), 1)) for h in _plain(client, name, [vecs[5].tolist()], 5,
                                                                              ["x"])[0]]]
    _assert_same(_ids_scores(res), want)


def _hybrid_request(name, queries, rank: dict, chain: FunctionChain | None, output_fields=()):
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.FloatVector, values=[np.asarray(q, np.float32).tobytes() for q in queries])])
    reqs = []
    for expr in ("id % 2 == 0", "x < 6"):
        pairs = {"anns_field": "vec", "topk": "20", "params": "{}", "metric_type": "L2"}
        reqs.append(milvus_pb2.SearchRequest(
            collection_name=name, placeholder_group=group.SerializeToString(), nq=len(queries), dsl=expr,
            dsl_type=common_pb2.BoolExprV1,
            search_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in pairs.items()]))
    request = milvus_pb2.HybridSearchRequest(
        collection_name=name, requests=reqs, output_fields=list(output_fields),
        consistency_level=common_pb2.Strong,
        rank_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rank.items()])
    if chain is not None:
        request.function_chains.append(chain.to_proto())
    return request


def _raw_hits(reply) -> list[list[tuple]]:
    out, at = [], 0
    ids, scores = list(reply.results.ids.int_id.data), list(reply.results.scores)
    for k in reply.results.topks:
        out.append(list(zip(ids[at:at + k], scores[at:at + k])))
        at += k
    return out


def test_hybrid_search_chain_reranks_the_fused_hits(uri, coll):
    from tests.e2e._helpers import raw_stub

    client, name, vecs = coll
    queries = [vecs[20].tolist(), vecs[21].tolist()]
    rrf = {"strategy": "rrf", "params": '{"k": 60}', "limit": "8", "offset": "2"}
    chain = (FunctionChain(L2).map("d", fn.decay(col("x"), function="gauss", origin=3, scale=2))
             .map("$score", fn.num_combine(col("$score"), col("d"), mode="multiply"))
             .sort(col("$score"), desc=True, tie_break_col=col("$id")).limit(5))
    with raw_stub(uri) as stub:
        reply = stub.HybridSearch(_hybrid_request(name, queries, rrf, chain, ["tag"]))
        assert reply.status.code == 0, reply.status.reason
        window = stub.HybridSearch(_hybrid_request(name, queries, {**rrf, "limit": "10", "offset": "0"}, None,
                                                   ["x"]))
    assert window.status.code == 0, window.status.reason
    xs = {fd.field_name: fd for fd in window.results.fields_data}["x"].scalars.double_data.data
    want, at = [], 0
    for hits in _raw_hits(window):
        scored = [(_f32(s * _f32(_factor("gauss", xs[at + j], 3, 2))), i) for j, (i, s) in enumerate(hits)]
        at += len(hits)
        want.append([(i, s) for s, i in sorted(scored, key=lambda t: (-t[0], t[1]))[:5][2:10]])
    _assert_same(_raw_hits(reply), want)
    assert [fd.field_name for fd in reply.results.fields_data] == ["tag"]


def test_hybrid_search_chain_refusals(uri, coll):
    from tests.e2e._helpers import raw_stub

    client, name, vecs = coll
    rrf = {"strategy": "rrf", "params": "{\"k\": 60}", "limit": "5"}
    request = _hybrid_request(name, [vecs[0].tolist()], rrf, None)
    request.requests[0].function_chains.append(FunctionChain(L2).limit(2).to_proto())
    bad_stage = _hybrid_request(name, [vecs[0].tolist()], rrf, FunctionChain(FunctionChainStage.L1_RERANK).limit(1))
    with raw_stub(uri) as stub:
        for req, words in ((request, "ANN request of a hybrid search"), (bad_stage, "L1Rerank is not supported")):
            reply = stub.HybridSearch(req)
            assert reply.status.code == 1100 and words in reply.status.reason, reply.status.reason


@pytest.mark.parametrize("chain, extra, words", [
    (FunctionChain(FunctionChainStage.L0_RERANK).limit(2), {}, "FunctionChainStageL0Rerank is not supported"),
    (FunctionChain(FunctionChainStage.POST_PROCESS).limit(2), {}, "is not supported in search request"),
    (FunctionChain(L2).sort(col("nope")), {}, "neither a previous output nor a collection field"),
    (FunctionChain(L2).map("$score", fn.round_decimal(col("vec"), decimal=2)), {}, "unsupported field type"),
    (FunctionChain(L2).map("$id", fn.round_decimal(col("x"), decimal=2)), {}, "is not writable"),
    (FunctionChain(L2).limit(2), {"group_by_field": "tag"}, "cannot be combined"),
    ([FunctionChain(L2).limit(2), FunctionChain(L2).limit(3)], {}, "appears more than once"),
])
def test_bad_chains_are_refused(coll, chain, extra, words):
    client, name, vecs = coll
    with pytest.raises(MilvusException, match=words) as e:
        client.search(name, data=[vecs[0].tolist()], limit=3, function_chains=chain, **extra)
    assert e.value.code == 1100

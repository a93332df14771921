"""Leftover differences against Milvus 2.3.5, each request run against the real server (the `milvus`
PyPI package, pymilvus 3.0.2 and raw gRPC) next to vecdb; Milvus's answers are written down here, no
Milvus runs at test time:

- a metric named in lower case ("l2", "ip", "cosine", "Cosine", "hamming") at create_index: Milvus 2.3.5
  refuses it, 65535 "metric type not found or not supported, supported: [L2 IP COSINE]" (HNSW and
  AUTOINDEX: "[L2 IP COSINE HAMMING JACCARD]"), and so does every later Milvus (its index checkers
  compare the name as sent). vecdb accepted it (recording the metric upper case); now it refuses it
  with 1100 and the name ("metric type l2 not found or not supported, supported: [L2 IP COSINE]"),
  except the same index again where one exists (an index made from "l2" before: a setup script's
  create_index still passes, changing nothing).
- a search's lower-case ``metric_type``: Milvus 2.3.5 fails it in its query node, 65535 "... metric type
  not match: invalid parameter[expected=L2][actual=l2]". vecdb keeps reading it in any case: clients
  whose indexes vecdb made from "l2" search with that same name. A mismatch names the metric as sent
  ("[actual=ip]", as Milvus).
- a SearchRequest whose ``nq`` is not the number of its query vectors: Milvus trusts nq and fails in
  its query node's reduce (65535 "... illegal req sizes, slice_nqs_prefix_sum_[last] = 5, total_nq = 1:
  service internal error"); nq -1 takes Milvus 2.3.5's proxy down (the connection resets). vecdb
  searched the vectors it got; now it refuses the request (1100). nq 0 reads as the number of vectors
  in both (older clients).
- search_params without "params" (or an empty one): Milvus 2.3.5's query node fails to parse it as
  JSON (65535 "[json.exception.parse_error.101] ... unexpected end of input"; newer proxies take a
  missing one as empty on purpose); vecdb reads it as {} (kept). Without "metric_type": the index's
  metric, in both.
- a guarantee_timestamp in the future (Session or Customized level, or Strong without the collection's
  default; the collection's default level ignores it): Milvus waits for its query node's tsafe to reach
  it (5 s ahead: answered after 5.4 s; 1 h ahead: until the client's deadline, DEADLINE_EXCEEDED;
  over a day ahead: at once, 65535 "... Timestamp lag too large"). vecdb does not read a search's
  guarantee timestamp (docs/limits.md: a standalone server applies every write before acknowledging
  it; a cluster waits for positions, vecdb.proxy.consistency) and answers with the newest state at
  once (kept: no write can yet carry a future timestamp, and a request parked until a wall-clock time
  would hold a server thread for up to a day).
- a count(*) query's raw QueryResults: Milvus 2.3.5 answers output_fields [] and collection_name "",
  with one Int64 FieldData named "count(*)"; Milvus 2.4+ lists ["count(*)"] and the collection's name
  (its proxy's createPlan/PostExecute), as vecdb does (kept). pymilvus shows [{"count(*)": n}] for both.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from tests.e2e._helpers import float_schema, make_collection, raw_stub

DIM = 4
VEC = np.random.default_rng(7).random((50, DIM), dtype=np.float32)


def _code(call) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        call()
    return e.value.code, e.value.message


def _loaded(client, name, metric: str = "L2") -> None:
    make_collection(client, name, float_schema(DIM), metric=metric, consistency_level="Strong")
    client.insert(name, [{"id": i, "vec": VEC[i].tolist()} for i in range(len(VEC))])


def _search(stub, name, nvec: int = 1, nq: int | None = None, sp: dict | None = None, **kw) -> milvus_pb2.SearchResults:
    """A raw Search: exactly these search_params (None: the key left out) and this nq."""
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.FloatVector, values=[VEC[i].tobytes() for i in range(nvec)])])
    pairs = {"anns_field": "vec", "topk": "3", "metric_type": "L2", "params": "{}", "round_decimal": "-1",
             **(sp or {})}
    req = milvus_pb2.SearchRequest(collection_name=name, dsl_type=common_pb2.DslType.BoolExprV1,
                                   placeholder_group=group.SerializeToString(), nq=nvec if nq is None else nq, **kw)
    req.search_params.extend(common_pb2.KeyValuePair(key=k, value=v) for k, v in pairs.items() if v is not None)
    return stub.Search(req, timeout=30)


@pytest.mark.parametrize("index_type, metric, params, supported", [
    ("FLAT", "l2", {}, "L2 IP COSINE"),
    ("FLAT", "ip", {}, "L2 IP COSINE"),
    ("FLAT", "Cosine", {}, "L2 IP COSINE"),
    ("IVF_FLAT", "cosine", {"nlist": 16}, "L2 IP COSINE"),
    ("HNSW", "l2", {"M": 8, "efConstruction": 64}, "L2 IP COSINE"),
    ("AUTOINDEX", "ip", {}, "L2 IP COSINE"),
])
def test_a_metric_not_in_capitals_is_refused_at_create_index(client, name, index_type, metric, params, supported):
    client.create_collection(name, schema=float_schema(DIM))
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type=index_type, metric_type=metric, params=params)
    assert _code(lambda: client.create_index(name, idx)) == (
        1100, f"metric type {metric} not found or not supported, supported: [{supported}]")
    assert client.list_indexes(name) == []
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type=index_type, metric_type=metric.upper(), params=params)
    client.create_index(name, idx)
    assert client.describe_index(name, "vec")["metric_type"] == metric.upper()


def test_a_binary_metric_not_in_capitals_is_refused(client, name):
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("bvec", DataType.BINARY_VECTOR, dim=16)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("bvec", index_type="BIN_FLAT", metric_type="hamming")
    code, message = _code(lambda: client.create_index(name, idx))
    assert code == 1100 and message.startswith("metric type hamming not found or not supported, supported: [HAMMING")
    assert client.list_indexes(name) == []


def test_the_same_index_again_with_its_lower_case_name_changes_nothing(client, name, uri):
    """An index vecdb made from "l2" before was recorded as L2: a setup script creating it again with the
    name it was made from still succeeds; another index under that name is refused."""
    _loaded(client, name, metric="L2")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="l2")
    client.create_index(name, idx)
    assert client.describe_index(name, "vec")["metric_type"] == "L2"
    with raw_stub(uri) as stub:
        req = milvus_pb2.CreateIndexRequest(collection_name=name, field_name="vec", extra_params=[
            common_pb2.KeyValuePair(key="index_type", value="HNSW"),
            common_pb2.KeyValuePair(key="metric_type", value="l2"),
            common_pb2.KeyValuePair(key="params", value='{"M": 8, "efConstruction": 64}')])
        st = stub.CreateIndex(req)
    assert (st.code, st.reason) == (1100, "metric type l2 not found or not supported, supported: [L2 IP COSINE]")


def test_a_search_reads_its_metric_in_any_case(client, name, uri):
    _loaded(client, name, metric="L2")
    upper = client.search(name, [VEC[0].tolist()], limit=3, search_params={"metric_type": "L2"})
    lower = client.search(name, [VEC[0].tolist()], limit=3, search_params={"metric_type": "l2"})
    assert [h["id"] for h in lower[0]] == [h["id"] for h in upper[0]] and lower[0][0]["id"] == 0
    with raw_stub(uri) as stub:
        st = _search(stub, name, sp={"metric_type": "ip"}).status
    assert (st.code, st.reason) == (1100, "metric type not match: invalid parameter[expected=L2][actual=ip]")
    assert _code(lambda: client.search(name, [VEC[0].tolist()], limit=3, search_params={"metric_type": "IP"})) == (
        1100, "metric type not match: invalid parameter[expected=L2][actual=IP]")


@pytest.mark.parametrize("nvec, nq", [(1, 5), (3, 1), (1, -1), (2, 2**40)])
def test_an_nq_other_than_the_number_of_vectors_is_refused(client, name, uri, nvec, nq):
    _loaded(client, name)
    with raw_stub(uri) as stub:
        reply = _search(stub, name, nvec=nvec, nq=nq)
    assert (reply.status.code, reply.status.reason) == (
        1100, f"nq [{nq}] does not match the number of queries in the request [{nvec}]")
    assert reply.results.num_queries == 0


def test_nq_zero_or_right_is_searched(client, name, uri):
    _loaded(client, name)
    with raw_stub(uri) as stub:
        for nq in (0, 2):
            reply = _search(stub, name, nvec=2, nq=nq)
            assert reply.status.code == 0, reply.status.reason
            assert list(reply.results.topks) == [3, 3] and reply.results.ids.int_id.data[0] == 0
            assert reply.results.ids.int_id.data[3] == 1


def test_a_hybrid_sub_search_with_a_wrong_nq_is_refused(client, name, uri):
    _loaded(client, name)
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.FloatVector, values=[VEC[0].tobytes()])])
    sub = milvus_pb2.SearchRequest(collection_name=name, placeholder_group=group.SerializeToString(), nq=4,
                                   search_params=[common_pb2.KeyValuePair(key="anns_field", value="vec"),
                                                  common_pb2.KeyValuePair(key="topk", value="3")])
    rank = {"strategy": "rrf", "params": '{"k": 60}', "limit": "3"}
    with raw_stub(uri) as stub:
        reply = stub.HybridSearch(milvus_pb2.HybridSearchRequest(
            collection_name=name, requests=[sub],
            rank_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rank.items()]))
    assert (reply.status.code, reply.status.reason) == (
        1100, "nq [4] does not match the number of queries in the request [1]")


def test_search_params_without_params_or_metric_type(client, name, uri):
    _loaded(client, name)
    with raw_stub(uri) as stub:
        base = _search(stub, name)
        assert base.status.code == 0 and list(base.results.ids.int_id.data)[0] == 0
        for sp in ({"params": None}, {"params": ""}, {"metric_type": None}, {"params": None, "metric_type": None}):
            reply = _search(stub, name, sp=sp)
            assert reply.status.code == 0, (sp, reply.status.reason)
            assert list(reply.results.ids.int_id.data) == list(base.results.ids.int_id.data)
            assert list(reply.results.scores) == list(base.results.scores)


@pytest.mark.parametrize("ahead_s", [3600, 3 * 86400])
def test_a_future_guarantee_timestamp_is_answered_at_once(client, name, uri, ahead_s):
    writer = MilvusClient(uri=uri)  # the proxy searched below: Session reads see its writes (a cluster's)
    try:
        _loaded(writer, name)
    finally:
        writer.close()
    guarantee = (int(time.time() * 1000) + ahead_s * 1000) << 18
    with raw_stub(uri) as stub:
        for level in (common_pb2.Session, common_pb2.Customized):
            started = time.monotonic()
            reply = _search(stub, name, guarantee_timestamp=guarantee, consistency_level=level,
                            use_default_consistency=False)
            assert time.monotonic() - started < 10
            assert reply.status.code == 0, reply.status.reason
            assert list(reply.results.ids.int_id.data)[0] == 0 and reply.results.num_queries == 1


def test_a_count_query_lists_count_star(client, name, uri):
    _loaded(client, name)
    with raw_stub(uri) as stub:
        for outputs, expr, n in ((["count(*)"], "", 50), (["COUNT(*)"], "id >= 20", 30)):
            reply = stub.Query(milvus_pb2.QueryRequest(collection_name=name, expr=expr, output_fields=outputs))
            assert reply.status.code == 0, reply.status.reason
            assert list(reply.output_fields) == ["count(*)"] and reply.collection_name == name
            assert [(f.field_name, f.type, list(f.scalars.long_data.data)) for f in reply.fields_data] == [
                ("count(*)", DataType.INT64.value, [n])]
    assert list(client.query(name, filter="", output_fields=["count(*)"])) == [{"count(*)": 50}]

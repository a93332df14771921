"""``partitionkey.isolation`` (Milvus 2.4+) through pymilvus: the property's rules at create and alter,
and a search's filter checked as Milvus's ValidatePartitionKeyIsolation does (vecdb.key_isolation);
what passes answers as without isolation."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker

from tests.e2e._helpers import serving

DIM = 4
NOT_FOUND = "partition key not found in expr or the expr is invalid when validating partition key isolation"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("isolation")) as uri_and_client:
        yield uri_and_client


def _schema(client: MilvusClient, key: bool = True):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("k", DataType.INT64, is_partition_key=key)
    schema.add_field("x", DataType.INT64)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    return schema


def _index(client: MilvusClient):
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    return idx


def _refused(call, code: int, words: str) -> None:
    with pytest.raises(MilvusException) as err:
        call()
    assert err.value.code == code and words in err.value.message, (err.value.code, err.value.message)


@pytest.fixture(scope="module")
def isolated(served):
    _, c = served
    c.create_collection("iso", schema=_schema(c), index_params=_index(c), properties={"partitionkey.isolation": "true"})
    rows = [{"id": i, "k": i % 4, "x": i, "v": np.full(DIM, i, np.float32)} for i in range(40)]
    c.insert("iso", rows)
    return c


def test_isolation_needs_a_partition_key_and_a_bool(served):
    _, c = served
    _refused(lambda: c.create_collection("nokey", schema=_schema(c, key=False),
                                         properties={"partitionkey.isolation": "true"}),
             105, "partition key isolation mode is enabled but no partition key field is set")
    _refused(lambda: c.create_collection("badval", schema=_schema(c), properties={"partitionkey.isolation": "yes"}),
             1100, "failed to parse partition key isolation")
    assert not c.has_collection("nokey") and not c.has_collection("badval")
    c.create_collection("offkey", schema=_schema(c, key=False), properties={"partitionkey.isolation": "false"})
    assert c.describe_collection("offkey")["properties"]["partitionkey.isolation"] == "false"


@pytest.mark.parametrize(("expr", "words"), [
    ("", NOT_FOUND),
    ("x > 3", NOT_FOUND),
    ("k in [1, 2]", "does not support IN"),
    ("k not in [1]", "does not support IN"),
    ("k == 1 or x > 3", "does not support OR"),
    ("not (k == 1)", "does not support NOT"),
    ("k != 1", "does not support NotEqual"),
    ("k > 1", "does not support GreaterThan"),
    ("1 < k", "does not support GreaterThan"),
    ("1 < k < 3", "does not support BinaryRange"),
    ("k == 1 and k >= 0", "does not support GreaterEqual"),
])
def test_a_search_filter_that_does_not_pin_one_key_is_refused(isolated, expr, words):
    _refused(lambda: isolated.search("iso", data=[[0.0] * DIM], filter=expr, limit=3), 1100, words)


@pytest.mark.parametrize("expr", ["k == 1", "1 == k", "k == 1 and x > 3", "(x > 3 and k == 1) and x < 100",
                                  "k == 2 - 1"])
def test_a_search_pinned_to_one_key_answers_its_rows(isolated, expr):
    hits = isolated.search("iso", data=[[0.0] * DIM], filter=expr, limit=50, output_fields=["k", "x"])[0]
    assert hits and {h["entity"]["k"] for h in hits} == {1}
    if "x > 3" in expr:
        assert min(h["entity"]["x"] for h in hits) == 5


def test_hybrid_requests_are_checked_and_queries_are_not(isolated):
    good = AnnSearchRequest([[0.0] * DIM], "v", {"metric_type": "L2"}, limit=3, expr="k == 3")
    bad = AnnSearchRequest([[0.0] * DIM], "v", {"metric_type": "L2"}, limit=3, expr="k in [3]")
    hits = isolated.hybrid_search("iso", [good], RRFRanker(), limit=3, output_fields=["k"])[0]
    assert [h["entity"]["k"] for h in hits] == [3, 3, 3]
    _refused(lambda: isolated.hybrid_search("iso", [good, bad], RRFRanker(), limit=3), 1100, "does not support IN")
    assert isolated.query("iso", filter="k in [1, 2]", output_fields=["count(*)"])[0]["count(*)"] == 20


def test_turning_isolation_on_or_off_needs_the_vector_index_dropped(served):
    _, c = served
    c.create_collection("alter", schema=_schema(c), index_params=_index(c))
    _refused(lambda: c.alter_collection_properties("alter", {"partitionkey.isolation": "true"}), 702,
             "can not alter partition key isolation mode if the collection already has a vector index")
    _refused(lambda: c.alter_collection_properties("alter", {"partitionkey.isolation": "maybe"}), 1100,
             "failed to parse partition key isolation")
    c.alter_collection_properties("alter", {"partitionkey.isolation": "false"})  # unchanged: no index check
    c.release_collection("alter")
    c.drop_index("alter", "v")
    c.alter_collection_properties("alter", {"partitionkey.isolation": "true"})
    assert c.describe_collection("alter")["properties"]["partitionkey.isolation"] == "true"
    c.create_index("alter", _index(c))
    _refused(lambda: c.drop_collection_properties("alter", ["partitionkey.isolation"]), 702, "Please drop the index")
    c.create_collection("alter_nokey", schema=_schema(c, key=False))
    _refused(lambda: c.alter_collection_properties("alter_nokey", {"partitionkey.isolation": "true"}), 105,
             "no partition key field is set")

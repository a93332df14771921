"""Dense-side answers found different from Milvus Lite 2.5.1 (the Milvus 2.5 engine as a library) by
the differential hunt (.dev/litediff), fixed in vecdb; the expected answers are Lite's, as literals.

- A hybrid search's ``round_decimal`` (pymilvus copies it into every ANN request) rounds each
  request's distances before the fusion, as Milvus's segcore rounds a search plan's distances, and
  then the fused scores: a weighted L2 fusion at 2 decimals of distances 0.1049 and 0.0951 scores
  both 0.94 (each distance 0.10 first), not 0.93 and 0.94.
"""

from __future__ import annotations

import math

import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, WeightedRanker

DISTANCES = [0.1049, 0.0951, 1.0, 0.1249]  # squared L2 distances of rows 0..3 from the query (0, 0)


def _collection(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.insert(name, [{"id": i, "v": [math.sqrt(d), 0.0]} for i, d in enumerate(DISTANCES)])


@pytest.mark.parametrize("decimals, want", [
    (-1, [(1, 0.9396389722824097), (0, 0.9334619045257568), (3, 0.9208958148956299), (2, 0.5)]),
    (2, [(0, 0.94), (1, 0.94), (3, 0.92), (2, 0.5)]),  # (0 was 0.93: its distance not rounded first)
    (1, [(0, 0.9), (1, 0.9), (3, 0.9), (2, 0.5)]),
])
def test_hybrid_round_decimal_rounds_each_request_then_the_fusion(client, name, decimals, want):
    _collection(client, name)
    req = AnnSearchRequest([[0.0, 0.0]], "v", {"metric_type": "L2"}, 4)
    res = client.hybrid_search(name, [req], WeightedRanker(1.0), limit=4, round_decimal=decimals)[0]
    got = [(h["id"], h["distance"]) for h in res]
    assert [pk for pk, _ in got] == [pk for pk, _ in want]
    assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-6)


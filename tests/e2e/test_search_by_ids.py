"""Search by primary keys (pymilvus 2.6 ``search(ids=...)``): the rows' own vectors are the queries,
read at the search's snapshot, so the answers equal a search with those vectors; a key that is not
there (never written, deleted) or of the wrong type is refused (1100), on every deployment. (Search
highlighters: tests/e2e/test_highlight.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusException

from tests.e2e._helpers import float_schema, float_vectors, make_collection

DIM, N = 8, 300


def _hits(result) -> list[list[tuple[int, float]]]:
    return [[(h["id"], round(h["distance"], 4)) for h in hits] for hits in result]


def test_search_by_ids_answers_as_the_rows_own_vectors(client, name):
    make_collection(client, name, float_schema(DIM, extra=(("grp", DataType.INT64, {}),)))
    data = float_vectors(N, DIM, seed=9)
    rows = [{"id": i, "vec": data[i].tolist(), "grp": i % 3} for i in range(N)]
    client.insert(name, rows[:200])
    client.flush(name)  # sealed rows and growing ones
    client.insert(name, rows[200:])
    by_ids = client.search(name, ids=[5, 250], limit=6, consistency_level="Strong", output_fields=["grp"])
    by_vectors = client.search(name, data=data[[5, 250]].tolist(), limit=6, consistency_level="Strong")
    assert _hits(by_ids) == _hits(by_vectors)
    assert [hits[0]["id"] for hits in by_ids] == [5, 250] and by_ids[0][0]["entity"]["grp"] == 2
    filtered = client.search(name, ids=[7], limit=4, filter="grp == 0", consistency_level="Strong")
    assert all(h["id"] % 3 == 0 for h in filtered[0]) and 7 not in {h["id"] for h in filtered[0]}
    client.delete(name, ids=[5])
    for ids, words in (([5], r"primary keys \[5\] not found"), ([1, 99999], r"primary keys \[99999\] not found"),
                       (["5"], "does not match the primary key")):
        with pytest.raises(MilvusException, match=words) as e:
            client.search(name, ids=ids, limit=3, consistency_level="Strong")
        assert e.value.code == 1100


def test_search_by_string_ids(client, name):
    make_collection(client, name, float_schema(DIM, pk=DataType.VARCHAR))
    data = float_vectors(50, DIM, seed=3)
    client.insert(name, [{"id": f"k{i}", "vec": data[i].tolist()} for i in range(50)])
    got = client.search(name, ids=["k7", "k7"], limit=3, consistency_level="Strong")
    assert [hits[0]["id"] for hits in got] == ["k7", "k7"]
    assert _hits(got)[0] == _hits(client.search(name, data=data[[7]].tolist(), limit=3,
                                                 consistency_level="Strong"))[0]
    assert np.isclose(got[0][0]["distance"], 0.0)

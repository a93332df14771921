"""Grouping search (``group_by_field``, ``group_size``, ``strict_group_size``) checked against a
brute-force grouping here: every row's exact distance, best first (ties to the smaller primary key),
walked by Milvus's rules: skip the first ``offset`` distinct values, open at most ``limit`` groups,
at most ``group_size`` hits each; groups in the order they were opened, each group's hits together.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.e2e._helpers import distances, float_vectors

N = 400
DIM = 8
SIMILARITY = {"IP", "COSINE"}


def _schema():
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("cat", DataType.INT64)
    schema.add_field("tag", DataType.VARCHAR, max_length=16)
    schema.add_field("flag", DataType.BOOL)
    schema.add_field("score", DataType.FLOAT)
    return schema


def _load(client, name, metric="L2", index_type="FLAT", params=None):
    client.create_collection(name, schema=_schema())
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type=index_type, metric_type=metric, params=params or {})
    client.create_index(name, idx, sync=False)
    client.load_collection(name)
    rng = np.random.default_rng(7)
    cols = {
        "id": np.arange(N, dtype=np.int64) * 3 + 1,
        "vec": float_vectors(N, DIM, seed=8),
        # skewed: a few large groups and many small ones (some smaller than group_size)
        "cat": np.minimum(rng.geometric(0.15, N), 25).astype(np.int64),
        "tag": np.array([f"t{i % 7}" for i in range(N)], dtype=object),
        "flag": (np.arange(N) % 3 == 0),
        "score": rng.random(N).astype(np.float32),
    }
    rows = [{"id": int(cols["id"][i]), "vec": cols["vec"][i].tolist(), "cat": int(cols["cat"][i]),
             "tag": str(cols["tag"][i]), "flag": bool(cols["flag"][i]), "score": float(cols["score"][i])}
            for i in range(N)]
    client.insert(name, rows[:250])
    client.flush(name)  # sealed and growing rows
    client.insert(name, rows[250:])
    return cols


def _reference(cols, query, metric, field, limit, group_size, offset=0, keep=None):
    """[(group value, [(pk, distance), ...]), ...] by Milvus's grouping rules over exact distances."""
    keep = np.ones(N, bool) if keep is None else keep
    dist = distances(cols["vec"][keep], query[None, :], metric)[0]
    pks, values = cols["id"][keep], cols[field][keep]
    order = np.lexsort((pks, -dist if metric in SIMILARITY else dist))
    groups: dict = {}
    skipped: set = set()
    for i in order:
        v = values[i].item() if hasattr(values[i], "item") else values[i]
        if v in skipped:
            continue
        if v not in groups:
            if len(skipped) < offset:
                skipped.add(v)
                continue
            if len(groups) >= limit:
                continue
            groups[v] = []
        if len(groups[v]) < group_size:
            groups[v].append((int(pks[i]), float(dist[i])))
    return list(groups.items())


def _flatten(ref):
    return [hit for _, hits in ref for hit in hits]


def _assert_hits(hits, want):
    assert [h["id"] for h in hits] == [pk for pk, _ in want]
    np.testing.assert_allclose([h["distance"] for h in hits], [d for _, d in want], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("field", ["cat", "tag", "flag"])
def test_strict_grouping_matches_brute_force(client, name, field):
    cols = _load(client, name)
    q = float_vectors(2, DIM, seed=9)
    for limit, size in ((5, 1), (6, 3), (3, 10)):  # (3, 10): rare groups fill only past the first window
        res = client.search(name, q.tolist(), limit=limit, group_by_field=field, group_size=size,
                            strict_group_size=True, output_fields=[field])
        assert len(res) == 2
        for qi in range(2):
            ref = _reference(cols, q[qi], "L2", field, limit, size)
            _assert_hits(res[qi], _flatten(ref))
            got_groups = [h["entity"][field] for h in res[qi]]
            assert got_groups == [v for v, hits in ref for _ in hits]


def test_grouping_with_filter_offset_and_ip(client, name):
    cols = _load(client, name, metric="IP")
    q = float_vectors(1, DIM, seed=10)[0]
    keep = cols["tag"] != "t3"
    res = client.search(name, [q.tolist()], limit=4, offset=2, filter='tag != "t3"', group_by_field="cat",
                        group_size=2, strict_group_size=True, output_fields=["tag"])[0]
    ref = _reference(cols, q, "IP", "cat", 4, 2, offset=2, keep=keep)
    _assert_hits(res, _flatten(ref))
    assert all(h["entity"]["tag"] != "t3" for h in res)


def test_non_strict_groups_are_prefixes_of_the_exact_ones(client, name):
    cols = _load(client, name)
    q = float_vectors(1, DIM, seed=11)[0]
    res = client.search(name, [q.tolist()], limit=8, group_by_field="cat", group_size=3, output_fields=["cat"])[0]
    ref = _reference(cols, q, "L2", "cat", 8, 3)
    got: dict = {}
    for h in res:
        got.setdefault(h["entity"]["cat"], []).append((h["id"], h["distance"]))
    assert list(got) == [v for v, _ in ref]  # the same groups, in the same order
    for v, hits in ref:
        assert 1 <= len(got[v]) <= 3
        assert [pk for pk, _ in got[v]] == [pk for pk, _ in hits[:len(got[v])]]


def test_grouping_on_hnsw_with_small_ef(client, name):
    _load(client, name, index_type="HNSW", params={"M": 16, "efConstruction": 200})
    q = float_vectors(1, DIM, seed=12)[0]
    res = client.search(name, [q.tolist()], limit=10, group_by_field="cat", group_size=2, strict_group_size=True,
                        search_params={"params": {"ef": 16}}, output_fields=["cat"])[0]
    counts: dict = {}
    for h in res:
        counts[h["entity"]["cat"]] = counts.get(h["entity"]["cat"], 0) + 1
    assert len(counts) == 10 and all(c <= 2 for c in counts.values())
    seen = [h["entity"]["cat"] for h in res]
    assert all(seen.index(v) == i or seen[i - 1] == v for i, v in enumerate(seen))  # each group's hits together


@pytest.mark.parametrize("kwargs, code, words", [
    ({"group_by_field": "nope"}, 1700, "groupBy field not found in schema"),
    ({"group_by_field": "score"}, 1100, "Unsupported data type for group by"),
    ({"group_by_field": "cat", "group_size": 11}, 1100, "exceeds configured max group size:10"),
    ({"group_by_field": "cat", "search_params": {"params": {"radius": 10.0}}}, 1100,
     "Not allowed to do range-search when doing search-group-by"),
])
def test_bad_grouping_is_refused(client, name, kwargs, code, words):
    _load(client, name)
    with pytest.raises(MilvusException) as e:
        client.search(name, [[0.0] * DIM], limit=3, **kwargs)
    assert e.value.code == code and words in e.value.message

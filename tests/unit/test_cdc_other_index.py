"""The CDC's catalog pass replaces a target index that is not the source's even when the task's entry
recorded no index ids (``catalog_sync._other_index``): a pass stopped between creating the target
collection and recording its indexes, then the source's index replaced by another type, left the target
with the old index for good."""

from __future__ import annotations

from vecdb.catalog_model import IndexInfo
from vecdb.cdc.catalog_sync import _other_index


def _idx(name="hnsw", kind="HNSW", metric="COSINE", user=None) -> IndexInfo:
    return IndexInfo(1, name, "vector", kind, metric, {"M": 8}, user_params=user or {})


def _described(name="hnsw", kind="HNSW", metric="COSINE") -> dict:
    return {"field_name": "vector", "index_name": name, "index_type": kind, "metric_type": metric, "M": "8"}


def test_the_same_index_is_kept():
    assert not _other_index(_idx(), _described())
    assert not _other_index(_idx(kind="HNSW", metric="cosine"), _described(kind="hnsw", metric="COSINE"))


def test_another_name_type_or_metric_is_replaced():
    assert _other_index(_idx(), _described(name="vector", kind="FLAT"))  # the kill case: the first index kept
    assert _other_index(_idx(), _described(kind="IVF_FLAT"))
    assert _other_index(_idx(), _described(metric="L2"))


def test_scalar_index_without_metric_and_autoindex_compare_by_name():
    scalar = IndexInfo(2, "tag_idx", "tag", "INVERTED", "", {})
    assert not _other_index(scalar, {"field_name": "tag", "index_name": "tag_idx", "index_type": "INVERTED"})
    auto = _idx(kind="HNSW", user={"index_type": "AUTOINDEX", "metric_type": "COSINE"})
    assert not _other_index(auto, _described(kind="AUTOINDEX"))  # the target describes what was asked
    # (indexes are paired by name: another field under the name is another index)
    assert _other_index(auto, {**_described(kind="AUTOINDEX"), "field_name": "other"})
    path = IndexInfo(3, "j_a", "j", "INVERTED", "", {"json_cast_type": "varchar", "json_path": 'j["a"]'})
    described = {"field_name": "j", "index_name": "j_a", "index_type": "INVERTED", "json_path": 'j["a"]'}
    assert not _other_index(path, described)
    assert not _other_index(path, {**described, "json_path": "/a"})  # (spelled otherwise by another server)

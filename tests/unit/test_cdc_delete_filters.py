"""The CDC replicator's deletes on the target (``vecdb.cdc.target.delete_rows``): filters of escaped key
literals, cut so each stays within ``DELETE_KEYS`` keys and ``DELETE_FILTER_CHARS`` characters (a
target's filter length is bounded: 10,000 keys of 200 characters were a 2 MB filter, refused by a vecdb
target for good), every key in exactly one of them, each read back to its keys by vecdb's own parser."""

from __future__ import annotations

from vecdb.cdc import target as target_mod
from vecdb.proxy.rpc_dml import _term_keys
from vecdb.schema import CollectionSchema, DataType, FieldSchema


class _Recorder:
    """A client that records its delete calls (the cutting is what is under test, not a server)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def delete(self, name: str, filter: str, **kw) -> None:  # noqa: A002 - pymilvus's keyword
        self.calls.append((filter, kw))


def _schema(dtype: DataType) -> CollectionSchema:
    pk = FieldSchema("k", dtype, field_id=100, is_primary=True, max_length=65_535)
    return CollectionSchema("c", [pk, FieldSchema("v", DataType.FLOAT_VECTOR, field_id=101, dim=2)])


def test_long_string_keys_are_cut_by_filter_length_and_read_back_whole():
    schema = _schema(DataType.VARCHAR)
    keys = [f"it's \"{i}\"\\ " + "x" * 200 for i in range(3_000)]
    client = _Recorder()
    target_mod.delete_rows(client, "c", schema, keys, "p1", 5.0)
    assert len(client.calls) > 1
    assert all(len(f) <= target_mod.DELETE_FILTER_CHARS + 64 for f, _ in client.calls)
    assert all(kw == {"timeout": 5.0, "partition_name": "p1"} for _, kw in client.calls)
    back = [k for f, _ in client.calls for k in _term_keys(f, schema.primary_field).tolist()]
    assert back == keys


def test_integer_keys_are_cut_by_count():
    schema = _schema(DataType.INT64)
    client = _Recorder()
    target_mod.delete_rows(client, "c", schema, list(range(25_000)), None, 5.0)
    counts = [len(_term_keys(f, schema.primary_field)) for f, _ in client.calls]
    assert counts == [10_000, 10_000, 5_000] and all(kw == {"timeout": 5.0} for _, kw in client.calls)

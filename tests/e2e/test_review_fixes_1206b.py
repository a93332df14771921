"""Review follow-ups of the delete changes (808a03e..5c81e50).

A constant-true delete filter is refused (1100) instead of deleting every row; random_sample, which
reads no field either, is no constant. The check told random_sample by its name anywhere in the
filter's text, so a string literal holding the name ("'random_sample' == 'random_sample'") deleted
every row (Milvus 2.3.5 deletes none: its query nodes cannot run the folded constant).
"""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import start_standalone
from tests.e2e._helpers import make_collection
from vecdb.expr import compile_filter
from vecdb.proxy.rpc_dml import _always_true
from vecdb.schema import CollectionSchema, FieldSchema
from vecdb.schema import DataType as VecdbType

SCHEMA = CollectionSchema("c", [FieldSchema("id", VecdbType.INT64, is_primary=True),
                                FieldSchema("vec", VecdbType.FLOAT_VECTOR, dim=2)])


@pytest.mark.parametrize(("expr", "constant"), [
    ("1 == 1", True),
    ("not false", True),
    ("'random_sample' == 'random_sample'", True),
    ('"random_sample(0.5)" like "random%"', True),
    ("random_sample(0.5)", False),
    ("true and random_sample(0.9)", False),
    ("random_sample(0.9) and 1 == 1", False),
    ("1 == 2", False),
    ("id > 0 or true", False),  # reads a field: deleted row by row, as Milvus
])
def test_always_true_is_told_by_the_filter_not_its_text(expr, constant):
    assert _always_true(compile_filter(expr, SCHEMA)) is constant


def _schema():
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    return s


def test_a_string_naming_random_sample_deletes_nothing(tmp_path):
    node = start_standalone(str(tmp_path))
    try:
        client = MilvusClient(f"http://127.0.0.1:{node.port}")
        s = _schema()
        make_collection(client, "c", s, consistency_level="Strong")
        client.insert("c", [{"id": i, "vec": [1.0, 0.0, 0.0, 0.0]} for i in range(4)])
        expr = "'random_sample' == 'random_sample'"
        with pytest.raises(MilvusException) as e:
            client.delete("c", filter=expr)
        assert (e.value.code, e.value.message) == (1100, f"delete plan can't be empty or always true : {expr}")
        count = client.query("c", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
        assert count == 4
        client.close()
    finally:
        node.stop()


def test_key_lists_the_fast_path_leaves_count_as_listed(tmp_path):
    """Milvus 2.3.5 (measured with this script): a primary-key list in any integer notation or
    parentheses is its simple delete, counted as listed (repeats, absent keys) and run on a released
    collection. vecdb counted the rows found (1 for [0x1, 1], 0 for an absent key) and asked for a load."""
    node = start_standalone(str(tmp_path))
    try:
        client = MilvusClient(f"http://127.0.0.1:{node.port}")
        s = _schema()
        cases = {"id in [0x1, 1]": (2, 3), "id == 0x7": (1, 4), "id in [0x8, 0x8, 9]": (3, 4),
                 "((id in [1, 1]))": (2, 3), "id in [01]": (1, 3)}
        for i, (expr, (deleted, left)) in enumerate(cases.items()):
            name = f"c{i}"
            make_collection(client, name, s, consistency_level="Strong")
            client.insert(name, [{"id": k, "vec": [1.0, 0.0, 0.0, 0.0]} for k in range(1, 5)])
            assert client.delete(name, filter=expr)["delete_count"] == deleted, expr
            count = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
            assert count[0]["count(*)"] == left, expr
            client.release_collection(name)
            assert client.delete(name, filter=expr)["delete_count"] == deleted, expr  # no load needed
        client.close()
    finally:
        node.stop()

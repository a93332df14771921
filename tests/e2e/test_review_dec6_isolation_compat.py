"""A collection whose ``partitionkey.isolation`` a vecdb from before vecdb.key_isolation stored as any text
(create and alter took it unchecked, and nothing read it): after the upgrade it is searched as before
(the value reads as off), and its property can be set right or dropped, through pymilvus."""

from __future__ import annotations

from pymilvus import DataType, MilvusClient

from tests.conftest import start_standalone

ISO = "partitionkey.isolation"


def test_a_collection_with_an_old_non_bool_value_stays_searchable_and_alterable(tmp_path):
    server = start_standalone(str(tmp_path))
    c = MilvusClient(uri=f"http://127.0.0.1:{server.port}")
    try:
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("k", DataType.INT64, is_partition_key=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
        index = c.prepare_index_params()
        index.add_index("v", index_type="FLAT", metric_type="L2")
        c.create_collection("old", schema=schema, index_params=index)
        c.insert("old", [{"id": i, "k": i % 2, "v": [float(i)] * 4} for i in range(4)])
        catalog = server.roles.catalog  # what the older version stored, written as it wrote it
        info = catalog.get("default", "old")
        info.properties[ISO] = "on"
        catalog.save(info)

        hits = c.search("old", [[0.0] * 4], limit=4, filter="id >= 1", consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == [1, 2, 3]
        assert [h["id"] for h in c.search("old", [[0.0] * 4], limit=2, consistency_level="Strong")[0]] == [0, 1]
        c.alter_collection_properties("old", {ISO: "false"})  # off to off: the vector index may stay
        assert c.describe_collection("old")["properties"][ISO] == "false"
        info = catalog.get("default", "old")
        info.properties[ISO] = "enabled"
        catalog.save(info)
        c.drop_collection_properties("old", [ISO])
        assert ISO not in c.describe_collection("old")["properties"]
    finally:
        c.close()
        server.stop()

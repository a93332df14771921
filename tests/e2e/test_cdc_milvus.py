"""CDC into a real Milvus 2.3.5 (PyPI ``milvus``, embedded standalone; bench.servers.MilvusStandalone):
a source standalone on NATS/etcd/S3 replicated into it, verify equal. ``make test`` installs ``milvus``
(the test extra); skipped where it is not installed (``pip install milvus==2.3.5``). Milvus takes ~10 s
to start."""

from __future__ import annotations

import importlib.util

import pytest
from pymilvus import MilvusClient

from tests.e2e.test_cdc import DIM, _rows, replicating
from vecdb.cdc.task import new_task_id

pytestmark = pytest.mark.skipif(importlib.util.find_spec("milvus") is None,
                                reason="the milvus package (Milvus 2.3.5 embedded) is not installed: "
                                       "pip install milvus==2.3.5")


def test_replicates_into_milvus_235(tmp_path, remote_storage):
    from bench.servers import MilvusStandalone

    (tmp_path / "milvus").mkdir()
    milvus = MilvusStandalone(str(tmp_path / "milvus")).start()
    with replicating(tmp_path, remote_storage("cdcmv" + new_task_id()), milvus, milvus.uri) as stream:
        c = MilvusClient(uri=stream.source_uri)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", datatype=5, is_primary=True)
        schema.add_field("vector", datatype=101, dim=DIM)
        schema.add_field("tag", datatype=21, max_length=16)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        c.create_collection("m", schema=schema, index_params=ip)
        c.create_partition("m", "p1")
        c.insert("m", _rows(range(0, 400)))
        c.insert("m", _rows(range(400, 500), seed=1), partition_name="p1")
        c.upsert("m", _rows(range(50, 120), seed=2))
        c.delete("m", ids=list(range(0, 30)))
        stream.wait_equal(120, "Milvus never equal")
        t = MilvusClient(uri=milvus.uri)
        assert t.query("m", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 470
        # a truncate and a rename: Milvus 2.3.5 has no TruncateCollection, so the collection is dropped and
        # created again (partitions, index, load) before the rows written after the truncate are applied
        c.truncate_collection("m")
        c.insert("m", _rows(range(1000, 1020), seed=3), partition_name="p1")
        c.rename_collection("m", "m2")
        c.insert("m2", _rows(range(2000, 2005), seed=4))
        stream.wait_equal(120, "the truncate and the rename did not reach Milvus")
        assert t.list_collections() == ["m2"] and set(t.list_partitions("m2")) == {"_default", "p1"}
        got = t.query("m2", filter="", output_fields=["id"], limit=100, consistency_level="Strong")
        assert sorted(r["id"] for r in got) == list(range(1000, 1020)) + list(range(2000, 2005))

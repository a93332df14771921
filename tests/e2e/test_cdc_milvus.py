"""CDC into a real Milvus 2.3.5 (PyPI ``milvus``, embedded standalone; bench.servers.MilvusStandalone):
a source standalone on NATS/etcd/S3 replicated into it, verify equal. Skipped when ``milvus`` is not
installed (``pip install milvus==2.3.5``); Milvus takes ~10 s to start."""

from __future__ import annotations

import importlib.util

import pytest
from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, _equal, _rows
from vecdb.cdc.replicator import Replicator
from vecdb.cdc.task import Task, TaskSpec, TaskStore, new_task_id
from vecdb.storage.memory import MemoryMetaStore

pytestmark = pytest.mark.skipif(importlib.util.find_spec("milvus") is None,
                                reason="the milvus package (Milvus 2.3.5 embedded) is not installed: "
                                       "pip install milvus==2.3.5")


def test_replicates_into_milvus_235(tmp_path, remote_storage):
    from bench.servers import MilvusStandalone

    storage = remote_storage("cdcmv" + new_task_id())
    source = start_standalone(str(tmp_path / "src"), storage=storage)
    (tmp_path / "milvus").mkdir()
    milvus = MilvusStandalone(str(tmp_path / "milvus")).start()
    su, tu = f"http://127.0.0.1:{source.port}", milvus.uri
    store = TaskStore(MemoryMetaStore())
    task = Task(new_task_id(), TaskSpec(source=storage, target={"uri": tu}))
    store.put(task)
    rep = Replicator(task, store).start()
    try:
        c = MilvusClient(uri=su)
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
        seen: list = []

        def caught_up() -> bool:
            seen[:] = [rep.progress.to_dict(), _equal(su, tu)]
            return rep.progress.lag_records == 0 and not seen[1]

        try:
            wait_until(caught_up, 120, "Milvus never equal")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        t = MilvusClient(uri=tu)
        assert t.query("m", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 470
    finally:
        rep.stop()
        source.stop()
        milvus.stop()

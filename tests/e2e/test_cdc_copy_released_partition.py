"""A base copy (``start: copy``) of a collection loaded on the source with one partition released: the
copy reads partition by partition, and a released one answers "partition not loaded"; the copy waits
for it as for a collection not loaded (saying which partition), copies the others meanwhile, and
copies it once it is loaded (it failed on every try, and the copies behind it waited for good)."""

from __future__ import annotations

from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, _rows
from tests.e2e.test_cdc_base_copy import copying
from tests.e2e.test_cdc_copy_types import _cut
from vecdb.cdc import follower
from vecdb.cdc.task import new_task_id


def test_a_released_partition_waits_and_the_other_collections_are_copied(tmp_path, remote_storage, monkeypatch):
    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    with copying(tmp_path, remote_storage("cdcrp" + new_task_id()), start_standalone(str(tmp_path / "dst"))) as s:
        c = MilvusClient(uri=s.source_uri)
        c.create_collection("a_parts", dimension=DIM)
        c.create_partition("a_parts", "cold")
        c.insert("a_parts", _rows(range(0, 20), extra=False))
        c.insert("a_parts", _rows(range(20, 30), extra=False), partition_name="cold")
        c.release_partitions("a_parts", ["cold"])
        c.create_collection("b_loaded", dimension=DIM)
        c.insert("b_loaded", _rows(range(0, 40), extra=False))
        _cut(s.source_uri, ["a_parts", "b_loaded"])
        rep = s.begin(start="copy")
        wait_until(lambda: "partitions cold" in rep.progress.last_error, 30, "the task did not say why it waits")
        wait_until(lambda: rep.progress.copy_pending == 1, 30, "the loaded collection was not copied")
        t = MilvusClient(uri=s.target_uri)
        wait_until(lambda: len(t.query("b_loaded", filter="id >= 0", consistency_level="Strong")) == 40, 30,
                   "the other collection was not copied")
        assert "a_parts" in rep.progress.last_error and rep.progress.state == "running"
        c.load_partitions("a_parts", ["cold"])
        wait_until(lambda: rep.progress.copy_pending == 0, 60, f"the copy did not end once loaded: "
                   f"{rep.progress.to_dict()}")
        s.wait_equal(60, "not equal once the partition was loaded and copied")
        assert sorted(r["id"] for r in t.query("a_parts", filter="id >= 0", partition_names=["cold"],
                                               consistency_level="Strong")) == list(range(20, 30))
        assert rep.progress.last_error == ""

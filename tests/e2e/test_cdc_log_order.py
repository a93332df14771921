"""CDC applies the source changes whose effect on rows depends on when each record was written at
their place in the log order (vecdb.cdc.log_order): ``truncate_collection``, a partition dropped and
created again under its name, ``rename_collection`` (names swapped, another database); and an index
dropped and created again with another type between two catalog passes. Each also
when the task learns of the change only after it applied records written after it (its catalog
passes held while they are applied), and when the log no longer holds those records (copied again
through the source's Milvus API with ``source.uri``, failed with the re-sync recipe without)."""

from __future__ import annotations

import json
import threading
import time

from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, Stream, _equal, _rows, replicating
from vecdb.cdc.follower import HOLD_NEW, cdc_positions_key
from vecdb.cdc.replicator import PUBLISH_SECONDS, Replicator
from vecdb.cdc.task import FAILED, Task, TaskSpec, new_task_id


class HeldReplicator(Replicator):
    """A task whose catalog passes wait while ``hold`` is set; its channels' records go on being
    applied meanwhile, as when a change lands on the source just before the records written after it
    and the task's next pass comes a moment later. Released, it passes at the next catalog change."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()
        self._passing = threading.Lock()

    def _sync_catalog(self) -> None:
        with self._passing:
            if not self.hold.is_set():
                super()._sync_catalog()

    def hold_passes(self) -> None:
        """``hold`` set, once a pass begun before has ended: one in flight could read the changes a test
        makes next and apply them before their records (a truncate applied at once, say)."""
        self.hold.set()
        with self._passing:
            pass


class HeldStream(Stream):
    replicator = HeldReplicator


def _into_target(tmp_path, storage: dict, stream=HeldStream):
    """``replicating`` with ``stream`` into a target standalone of its own (``<tmp_path>/dst``)."""
    target = start_standalone(str(tmp_path / "dst"))
    return replicating(tmp_path, storage, target, f"http://127.0.0.1:{target.port}", stream)


def _count(c: MilvusClient, name: str) -> int:
    return c.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def _ids(c: MilvusClient, name: str, **kw) -> list[int]:
    return sorted(r["id"] for r in c.query(name, filter="", output_fields=["id"], limit=10_000,
                                           consistency_level="Strong", **kw))


def _counted(c: MilvusClient, name: str, n: int):
    def check() -> bool:
        try:
            return _count(c, name) == n
        except Exception:  # noqa: BLE001 (not there or not loaded yet)
            return False
    return check


def _pass(c: MilvusClient, rep: HeldReplicator, tick: str) -> None:
    """The held task released, and a catalog change on the source (a collection created) for its pass."""
    rep.hold.clear()
    c.create_collection(tick, dimension=DIM)


def test_truncates_and_a_partition_created_again_reach_the_target_in_log_order(tmp_path, remote_storage):
    with _into_target(tmp_path, remote_storage("cdclo" + new_task_id())) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        c.create_collection("plain", dimension=DIM, num_shards=2)
        c.create_partition("plain", "p1")
        c.insert("plain", _rows(range(0, 200)))
        c.insert("plain", _rows(range(200, 300)), partition_name="p1")
        s.wait_equal(60, "not replicated")
        # a truncate the task learns of before the records written after it
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(1000, 1050)))
        s.wait_equal(60, "the truncate did not reach the target")
        assert _ids(t, "plain") == list(range(1000, 1050))
        # one it learns of after applying them: the target is emptied and they are applied again
        s.rep.hold_passes()
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(2000, 2040), seed=1))
        c.upsert("plain", _rows(range(2000, 2010), seed=2))
        c.delete("plain", ids=list(range(2035, 2040)))
        wait_until(_counted(t, "plain", 50 + 35), 60, "the records after the truncate were not applied")
        _pass(c, s.rep, "tick1")
        s.wait_equal(60, "the truncate learnt late did not reach the target")
        assert _ids(t, "plain") == list(range(2000, 2035))
        # a partition dropped and created again under its name, learnt after its new rows were applied
        # (into the old partition, on the target): only the new partition's rows remain
        c.insert("plain", _rows(range(2500, 2520), seed=3), partition_name="p1")
        s.wait_equal(60, "not replicated")
        s.rep.hold_passes()
        c.release_partitions("plain", ["p1"])
        c.drop_partition("plain", "p1")
        c.create_partition("plain", "p1")
        c.load_partitions("plain", ["p1"])
        c.insert("plain", _rows(range(3000, 3020), seed=4), partition_name="p1")
        wait_until(_counted(t, "plain", 35 + 20 + 20), 60, "the new partition's rows were not applied")
        _pass(c, s.rep, "tick2")
        s.wait_equal(60, "the partition created again did not reach the target")
        assert _ids(t, "plain", partition_names=["p1"]) == list(range(3000, 3020))
        assert _ids(t, "plain", partition_names=["_default"]) == list(range(2000, 2035))
        # a task run again after all this (from its recorded positions and entries) changes nothing
        s.rep.stop()
        c.insert("plain", _rows(range(4000, 4010), seed=5))
        s.resume()
        s.wait_equal(60, "not replicated after a restart")
        assert _count(t, "plain") == 35 + 20 + 10
        assert s.rep.progress.last_error == ""


def _plain_with_p1(c: MilvusClient, s) -> None:
    """Collection "plain": 20 rows in _default, 20 in partition p1, replicated."""
    c.create_collection("plain", dimension=DIM)
    c.create_partition("plain", "p1")
    c.insert("plain", _rows(range(0, 20)))
    c.insert("plain", _rows(range(100, 120), seed=1), partition_name="p1")
    s.wait_equal(60, "not replicated")


def test_a_partition_dropped_and_created_again_in_separate_passes_is_loaded_on_the_target(tmp_path, remote_storage):
    """A pass that sees a partition dropped (not yet created again) drops the target's, which releases
    it first: the target collection then loads a list of partitions, and a partition created there
    later is not in it. The next passes create it, and load it once the source's is loaded (before, its
    rows were on the target but neither counted nor read: ``verify`` found them missing)."""
    with _into_target(tmp_path, remote_storage("cdcpl" + new_task_id()), Stream) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        _plain_with_p1(c, s)
        c.release_partitions("plain", ["p1"])
        c.drop_partition("plain", "p1")
        wait_until(lambda: "p1" not in t.list_partitions("plain"), 60, "the drop did not reach the target")
        c.create_partition("plain", "p1")
        wait_until(lambda: "p1" in t.list_partitions("plain"), 60, "the partition did not reach the target")
        c.insert("plain", _rows(range(200, 230), seed=2), partition_name="p1")
        c.load_partitions("plain", ["p1"])
        s.wait_equal(60, "the partition created again is not loaded on the target")
        assert t.get_load_state("plain", partition_name="p1")["state"].name == "Loaded"
        assert _ids(t, "plain", partition_names=["p1"]) == list(range(200, 230))
        assert _count(t, "plain") == 20 + 30


def test_a_partition_released_on_the_source_is_released_on_the_target(tmp_path, remote_storage):
    """``release_partitions`` on the source while the collection stays loaded: the target's partition is
    released too (reads there no longer count its rows, as on the source), and loaded again with it."""
    with _into_target(tmp_path, remote_storage("cdcrp" + new_task_id()), Stream) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        _plain_with_p1(c, s)

        def state(partition: str) -> str:
            return t.get_load_state("plain", partition_name=partition)["state"].name

        assert state("p1") == "Loaded"
        c.release_partitions("plain", ["p1"])
        wait_until(lambda: state("p1") == "NotLoad", 60, "the release did not reach the target")
        assert state("_default") == "Loaded" and _count(t, "plain") == 20
        c.load_partitions("plain", ["p1"])
        wait_until(lambda: state("p1") == "Loaded", 60, "the load did not reach the target")
        s.wait_equal(60, "not equal once loaded again")
        assert _count(t, "plain") == 40


def test_renames_on_the_source_rename_the_target_collection(tmp_path, remote_storage):
    with _into_target(tmp_path, remote_storage("cdcrn" + new_task_id())) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        for name, ids in (("a", range(0, 30)), ("b", range(100, 140))):
            c.create_collection(name, dimension=DIM)
            c.insert(name, _rows(ids))
        c.create_alias("a", "a_alias")
        s.wait_equal(60, "not replicated")
        c.rename_collection("a", "a2")
        c.insert("a2", _rows(range(30, 40)))
        s.wait_equal(60, "the rename did not reach the target")
        assert sorted(t.list_collections()) == ["a2", "b"]  # renamed, not copied into a new collection
        assert _ids(t, "a2") == list(range(40)) and t.list_aliases("a2")["aliases"] == ["a_alias"]
        # names swapped between two passes (through a temporary name on the source), rows written meanwhile
        s.rep.hold_passes()
        c.rename_collection("a2", "tmp")
        c.rename_collection("b", "a2")
        c.rename_collection("tmp", "b")
        c.insert("b", _rows(range(40, 45)))
        c.insert("a2", _rows(range(140, 150)))
        wait_until(lambda: _counted(t, "a2", 45)() and _counted(t, "b", 50)(), 60, "rows not applied")
        _pass(c, s.rep, "tick")
        s.wait_equal(60, "the swap did not reach the target")
        assert sorted(t.list_collections()) == ["a2", "b", "tick"]
        assert _ids(t, "b") == list(range(45)) and _ids(t, "a2") == list(range(100, 150))
        assert t.list_aliases("b")["aliases"] == ["a_alias"] and t.list_aliases("a2")["aliases"] == []
        # an index dropped and created again with another type between two passes: the target's too
        s.rep.hold_passes()
        c.release_collection("a2")
        c.drop_index("a2", c.list_indexes("a2")[0])
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="IVF_FLAT", metric_type="COSINE", params={"nlist": 4},
                     index_name="ivf")
        c.create_index("a2", ip)
        c.load_collection("a2")
        _pass(c, s.rep, "tick2")
        s.wait_equal(60, "the index change did not reach the target")
        d = t.describe_index("a2", "ivf")
        assert (d["index_type"], d["metric_type"], str(d["nlist"])) == ("IVF_FLAT", "COSINE", "4")
        assert t.list_indexes("a2") == ["ivf"] and str(t.get_load_state("a2")["state"]).endswith("Loaded")
        # into another database
        c.drop_alias("a_alias")
        c.create_database("db2")
        c.rename_collection("b", "moved", target_db="db2")
        s.wait_equal(60, "the rename into another database did not reach the target")
        assert sorted(t.list_collections()) == ["a2", "tick", "tick2"]
        t.use_database("db2")
        assert t.list_collections() == ["moved"] and _ids(t, "moved") == list(range(45))


def test_a_change_whose_records_left_the_log_copies_again_or_fails(tmp_path, remote_storage):
    """The task learns of a truncate after applying the records written after it, and the source's
    flush then cut them from its log (the task had applied them): they cannot be applied again. With
    ``source.uri`` the collection is emptied on the target and copied again; without, the task fails,
    saying how to re-sync."""
    target, second = start_standalone(str(tmp_path / "dst")), start_standalone(str(tmp_path / "dst2"))
    tu, u2 = f"http://127.0.0.1:{target.port}", f"http://127.0.0.1:{second.port}"
    try:
        with replicating(tmp_path, remote_storage("cdccut" + new_task_id()), target, tu, HeldStream) as s:
            task2 = Task(new_task_id(), TaskSpec(source={**s.storage, "uri": s.source_uri}, target={"uri": u2}))
            s.store.put(task2)
            rep2 = HeldReplicator(task2, s.store).start()
            try:
                c, t, t2 = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri), MilvusClient(uri=u2)
                c.create_collection("plain", dimension=DIM)
                c.insert("plain", _rows(range(100)))
                s.wait_equal(60, "not replicated")
                wait_until(lambda: not _equal(s.source_uri, u2), 60, "not replicated by the second task")
                for rep in (s.rep, rep2):
                    rep.hold_passes()
                c.truncate_collection("plain")
                c.insert("plain", _rows(range(200, 230), seed=1))
                wait_until(lambda: _counted(t, "plain", 130)() and _counted(t2, "plain", 130)(), 60, "not applied")
                time.sleep(PUBLISH_SECONDS * 2)  # both tasks published their positions past those records
                c.flush("plain")  # the source persists and cuts its log up to what the tasks applied
                rep2.hold.clear()
                _pass(c, s.rep, "tick")
                wait_until(lambda: s.rep.progress.state == FAILED, 60, "the task without source.uri did not fail")
                assert "no longer holds the records" in s.rep.progress.reason and "Re-sync" in s.rep.progress.reason
                wait_until(lambda: rep2.progress.lag_records == 0 and rep2.progress.copy_pending == 0
                           and not _equal(s.source_uri, u2), 90, "the second task did not copy the collection again")
                assert _ids(t2, "plain") == list(range(200, 230)) and rep2.progress.last_error == ""
            finally:
                rep2.stop()
    finally:
        second.stop()


class _FlakyRenames(HeldReplicator):
    """The target refuses one rename (a timeout, say): the 4th the task asks for."""

    calls = 0

    def _rename_target(self, old, new, held):
        type(self).calls += 1
        if type(self).calls == 4:
            raise RuntimeError("target timeout (injected)")
        super()._rename_target(old, new, held)


class _FlakyStream(HeldStream):
    replicator = _FlakyRenames


def _two(c: MilvusClient) -> None:
    c.create_collection("a", dimension=DIM)
    c.insert("a", _rows(range(0, 30)))
    c.create_collection("b", dimension=DIM)
    c.insert("b", _rows(range(100, 140)))


def test_a_chain_of_renames_and_a_swap_with_a_failed_rename_in_the_middle(tmp_path, remote_storage):
    """Between two passes b becomes c and a becomes b (the collection moving into the freed name the older
    one); then a and b swapped, the target failing the task's 4th rename once (the pass runs again)."""
    with _into_target(tmp_path, remote_storage("cdcrc" + new_task_id()), _FlakyStream) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        _two(c)
        s.wait_equal(60, "not replicated")
        s.rep.hold_passes()
        c.rename_collection("b", "c")
        c.rename_collection("a", "b")
        _pass(c, s.rep, "tick")
        s.wait_equal(60, "the chain of renames did not reach the target")
        assert (_ids(t, "b"), _ids(t, "c")) == (list(range(30)), list(range(100, 140)))
        s.rep.hold_passes()
        _FlakyRenames.calls = 0
        c.rename_collection("b", "tmp")
        c.rename_collection("c", "b")
        c.rename_collection("tmp", "c")
        _pass(c, s.rep, "tick2")
        s.wait_equal(60, "the swap did not reach the target")
        assert _FlakyRenames.calls > 4 and "injected" in s.rep.progress.last_error or s.rep.progress.last_error == ""
        assert (_ids(t, "b"), _ids(t, "c")) == (list(range(100, 140)), list(range(30)))
        assert sorted(t.list_collections()) == ["b", "c", "tick", "tick2"]


def test_a_truncate_on_a_collection_taken_up_at_a_cut_log_and_on_an_older_version_s_entry(tmp_path, remote_storage):
    """A ``now`` task (no source.uri) takes up a collection whose log the source had already cut (flushed):
    the record at its position is gone, and a truncate after it is applied without failing the task
    (it applied nothing before it). Then the entry and positions as an older version wrote them (no
    truncate, partitions, indexes or stamps recorded) and a truncate made while that version ran: applied."""
    with _into_target(tmp_path, remote_storage("cdctu" + new_task_id()), lambda *a: Stream(*a, begin=False)) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        c.create_collection("plain", dimension=DIM)
        c.insert("plain", _rows(range(0, 50)))
        c.flush("plain")  # no task yet: the log is cut up to its end
        s.task, s.rep = s.start_task(s.target_uri)
        wait_until(lambda: t.has_collection("plain"), 60, "not created on the target")
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(1000, 1010)))
        s.wait_equal(60, "the truncate did not reach the target")
        assert _ids(t, "plain") == list(range(1000, 1010)) and s.rep.progress.state == "running"
        # as an older version left it
        s.rep.stop()
        meta, tid = s.store.meta, s.task.id
        for cid, entry in s.store.collections(tid).items():
            for k in ("truncated_ts", "partitions", "indexes"):
                entry.pop(k, None)
            meta.put(f"cdc/colls/{tid}/{cid}", json.dumps(entry).encode())
        meta.txn(delete_prefixes=[f"cdc/stamp/{tid}/"])
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(2000, 2005)))
        s.resume()
        s.wait_equal(60, "the truncate made under the older version did not reach the target")
        assert _ids(t, "plain") == list(range(2000, 2005)) and s.rep.progress.state == "running"


def test_a_truncate_a_rename_and_a_namespace_created_again_in_one_pass(tmp_path, remote_storage):
    """Between two passes: a collection truncated then renamed (rows written after each), and a
    partition-mode namespace dropped and created again (rows written into the new one)."""
    from pymilvus.grpc_gen import milvus_pb2

    from tests.e2e._helpers import create_namespaces, namespace_collection, raw_stub

    with _into_target(tmp_path, remote_storage("cdctn" + new_task_id())) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        c.create_collection("plain", dimension=DIM, num_shards=2)
        c.insert("plain", _rows(range(0, 100)))
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        namespace_collection(c, s.source_uri, "parted", ip, DIM, {"east": _rows(range(0, 10), extra=False),
                                                                 "west": _rows(range(10, 15), extra=False)})
        s.wait_equal(60, "not replicated")
        s.rep.hold_passes()
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(200, 220), seed=1))
        c.rename_collection("plain", "plain2")
        c.insert("plain2", _rows(range(300, 310), seed=2))
        c.release_partitions("parted", ["east"])
        with raw_stub(s.source_uri) as stub:
            r = stub.DropNamespace(milvus_pb2.DropNamespaceRequest(collection_name="parted", namespace_name="east"))
            assert getattr(r, "status", r).code == 0, r
        create_namespaces(s.source_uri, "parted", ("east",))
        c.load_collection("parted")
        c.insert("parted", _rows(range(50, 55), seed=3, extra=False), namespace="east")
        wait_until(_counted(t, "plain", 130), 60, "the rows after the truncate were not applied (to the old name)")
        _pass(c, s.rep, "tick")
        s.wait_equal(60, "not equal after the pass")
        assert _ids(t, "plain2") == list(range(200, 220)) + list(range(300, 310))
        got = t.query("parted", filter="id >= 0", namespace="east", consistency_level="Strong")
        assert sorted(r["id"] for r in got) == list(range(50, 55))
        assert s.rep.progress.last_error == "" and s.rep.progress.state == "running"


class _RenameAppliedThenTimeout(HeldReplicator):
    """The target applies the task's first rename but the call fails (a deadline passed on the way
    back): the pass stops before recording the entry's temporary name; the catalog pass is held
    from then on (the source renames back meanwhile)."""

    calls = 0

    def _rename_target(self, old, new, held):
        super()._rename_target(old, new, held)
        type(self).calls += 1
        if type(self).calls == 1:
            self.hold.set()
            raise RuntimeError("deadline exceeded (injected, after the target renamed)")


class _RenameStream(HeldStream):
    replicator = _RenameAppliedThenTimeout


def test_a_rename_done_on_the_target_but_not_recorded_then_renamed_back_keeps_the_rows(tmp_path, remote_storage):
    with _into_target(tmp_path, remote_storage("cdcr2" + new_task_id()), _RenameStream) as s:
        c, t = MilvusClient(uri=s.source_uri), MilvusClient(uri=s.target_uri)
        c.create_collection("a", dimension=DIM)
        c.insert("a", _rows(range(0, 30)))
        s.wait_equal(60, "not replicated")
        s.rep.hold_passes()
        c.rename_collection("a", "x")
        _pass(c, s.rep, "tick")  # phase 1: a -> _cdc_renaming_<id> on the target, then the injected failure
        wait_until(lambda: _RenameAppliedThenTimeout.calls >= 1, 30, "no rename asked of the target")
        c.rename_collection("x", "a")  # renamed back before the task's next pass
        _pass(c, s.rep, "tick2")
        s.wait_equal(60, "the rows of a did not stay on the target")
        assert _ids(t, "a") == list(range(30)) and sorted(t.list_collections()) == ["a", "tick", "tick2"]


class _PublishSpy(Replicator):
    """Records the source's cdcpos/<task> key right after each _take_positions (its publish)."""

    seen: list = []

    def _take_positions(self, cid, positions, copy, stamps):
        super()._take_positions(cid, positions, copy, stamps)
        raw = self._meta.get(cdc_positions_key(self.task.id))
        type(self).seen.append((json.loads(raw) if raw else None, dict(self._positions)))


class _SpyStream(Stream):
    replicator = _PublishSpy


def test_a_change_applied_at_a_restart_keeps_the_source_log_held_on_every_channel(tmp_path, remote_storage):
    with _into_target(tmp_path, remote_storage("cdcp2" + new_task_id()), _SpyStream) as s:
        c = MilvusClient(uri=s.source_uri)
        c.create_collection("plain", dimension=DIM, num_shards=2)
        c.create_collection("other", dimension=DIM)
        c.insert("plain", _rows(range(0, 50)))
        c.insert("other", _rows(range(0, 50)))
        s.wait_equal(60, "not replicated")
        s.rep.stop()
        c.truncate_collection("plain")
        c.insert("plain", _rows(range(100, 110)))
        _PublishSpy.seen.clear()
        s.resume()
        s.wait_equal(60, "the truncate did not reach the target")
        assert _PublishSpy.seen
        for published, positions in _PublishSpy.seen:
            # every channel the task has a position on stays held on the source (cdc_floor), rewound or not
            assert published is not None and set(published) - {HOLD_NEW} == set(positions), (published, positions)

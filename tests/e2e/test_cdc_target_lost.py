"""A target collection dropped outside the CDC task (by hand, a target restored from an old backup):
the task made it again empty at its next catalog pass and went on applying the later records only,
1 row of 31 on the target, reported as caught up with no error (found by a CDC bug hunt). Now the
rows it had replicated there count as lost, as a gap in the source log: with ``source.uri`` the
collection is copied again; without, the task fails saying how to re-sync."""

from __future__ import annotations

from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e.test_cdc import DIM, Stream, _rows, replicating
from vecdb.cdc.task import FAILED, Task, TaskSpec, new_task_id


def _lose_on_target(stream: Stream, target_uri: str) -> None:
    c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=target_uri)
    c.create_collection("lost", dimension=DIM)
    c.insert("lost", _rows(range(30), extra=False))
    stream.wait_equal(60, "not replicated before the drop")
    t.drop_collection("lost")
    c.insert("lost", _rows(range(30, 31), extra=False))
    c.close()
    t.close()


def test_without_source_uri_the_task_fails_and_says_how_to_resync(tmp_path, remote_storage):
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdclost" + new_task_id()), target, tu) as stream:
        _lose_on_target(stream, tu)
        p = stream.rep.progress
        wait_until(lambda: p.state == FAILED, 60, f"the task did not fail: {p.to_dict()}")
        assert "default.lost was gone from the target" in p.reason and "Re-sync" in p.reason
        assert stream.store.get(stream.task.id).state == FAILED


class _CopyingStream(Stream):
    """A task whose source has ``uri`` too: it can copy a collection again through the source's API."""

    def __init__(self, tmp_path, storage: dict, target_uri: str):
        super().__init__(tmp_path, storage, target_uri, begin=False)
        spec = TaskSpec(source={**storage, "uri": self.source_uri}, target={"uri": target_uri})
        self.task = Task(new_task_id(), spec)
        self.store.put(self.task)
        self.rep = self.replicator(self.task, self.store).start()


def test_with_source_uri_the_collection_is_copied_again(tmp_path, remote_storage):
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdclost" + new_task_id()), target, tu, _CopyingStream) as stream:
        _lose_on_target(stream, tu)
        stream.wait_equal(90, "the lost collection was not copied again")
        t = MilvusClient(uri=tu)
        got = t.query("lost", filter="id >= 0", output_fields=["id"], consistency_level="Strong")
        assert sorted(r["id"] for r in got) == list(range(31))
        assert stream.rep.progress.state != FAILED
        t.close()

"""CDC (vecdb.cdc): a source standalone on NATS/etcd/S3 (namespace of its own) replicated into a
target standalone on the embedded backends (its own data dir): a mixed stream of DDL and DML
(databases, collections with auto_id and a dynamic field, partitions, an index, an alias, load,
inserts, upserts, deletes, a collection dropped and created again) arrives, and ``verify`` finds
both sides equal."""

from __future__ import annotations

import contextlib
import time

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import start_standalone, wait_until
from tests.e2e._helpers import create_namespaces
from tests.log_fakes import FirstFollowerSilent
from vecdb import timestamp
from vecdb.cdc.log_order import partition_ids
from vecdb.cdc.replicator import PUBLISH_SECONDS, Replicator, open_source, read_catalog
from vecdb.cdc.task import Task, TaskSpec, TaskStore, new_task_id
from vecdb.cdc.verify import verify
from vecdb.storage.memory import MemoryMetaStore

DIM = 8


def _rows(ids, seed=0, extra=True) -> list[dict]:
    vecs = np.random.default_rng(seed).random((len(ids), DIM), dtype=np.float32)
    out = []
    for k, i in enumerate(ids):
        row = {"id": int(i), "vector": vecs[k].tolist(), "tag": f"t{int(i) % 7}"}
        if extra:
            row["color"] = ["red", "blue"][int(i) % 2]
        out.append(row)
    return out


def _equal(source_uri: str, target_uri: str) -> dict:
    return {k: v for k, v in verify(source_uri, target_uri).items() if v}


class Stream:
    """A source standalone on ``storage`` (NATS/etcd/S3; its data dir ``<tmp_path>/src``) and a CDC task
    (``Replicator``; the task in a memory task store) replicating it, from ``start="now"``, into the
    Milvus API at ``target_uri``: see ``replicating``."""

    replicator = Replicator  # the class running its tasks

    def __init__(self, tmp_path, storage: dict, target_uri: str, begin: bool = True):
        """``begin``: start the task now (else ``rep`` is None until a subclass starts one)."""
        self.storage, self.target_uri = storage, target_uri
        self.source = start_standalone(str(tmp_path / "src"), storage=storage)
        self.source_uri = f"http://127.0.0.1:{self.source.port}"
        self.store = TaskStore(MemoryMetaStore())
        self.rep: Replicator | None = None
        if not begin:
            return
        try:
            self.task, self.rep = self.start_task(target_uri)
        except BaseException:
            self.source.stop()
            raise

    def start_task(self, target_uri: str, **spec) -> tuple[Task, Replicator]:
        """Another task of this source (``spec``: ``TaskSpec``'s collections, rename, start), running."""
        task = Task(new_task_id(), TaskSpec(source=self.storage, target={"uri": target_uri}, **spec))
        self.store.put(task)
        return task, self.replicator(task, self.store).start()

    def resume(self) -> Replicator:
        """The task run again (after ``rep.stop()``): from the positions its last run recorded."""
        self.rep = self.replicator(self.task, self.store).start()
        return self.rep

    def wait_equal(self, seconds: float, what: str) -> None:
        """Until the task has no lag and ``verify`` finds source and target equal; else fails with what
        it saw last (the task's progress, the differences)."""
        seen: list = []
        meta, wal = open_source(self.storage)

        def caught_up() -> bool:
            # the entries first: a change the task applies late (a truncate, a partition created again) is
            # recorded after the target's change and before the records after it are applied again, so a
            # verify read after that sees the end state, not the target equal a moment before the change
            # empties it (verify first, then the entries, could see both before and after it)
            try:
                if not self._took_catalog(meta):
                    seen[:] = [self.rep.progress.to_dict(), "the task's entries have not taken up the catalog"]
                    return False
                seen[:] = [self.rep.progress.to_dict(), _equal(self.source_uri, self.target_uri)]
            except Exception as e:  # noqa: BLE001 (a collection renamed or dropped while verify read it)
                seen[:] = [self.rep.progress.to_dict(), repr(e)]
                return False
            return self.rep.progress.lag_records == 0 and not seen[1]

        try:
            wait_until(caught_up, seconds, what)
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        finally:
            wal.close()
            meta.close()

    def _took_catalog(self, meta) -> bool:
        """Whether the task's entries record each replicated collection's name, truncate and partitions
        as the source's catalog has them (changes it applies at its next catalog pass, which may empty
        a target collection that looked equal a moment before)."""
        colls, _, _ = read_catalog(meta)
        for cid, entry in self.store.collections(self.task.id).items():
            info = colls.get(cid)
            if info is not None and ((entry["db"], entry["name"]) != (info.db, info.name)
                                     or entry.get("truncated_ts", info.truncated_ts) != info.truncated_ts
                                     or entry.get("partitions", partition_ids(info)) != partition_ids(info)):
                return False
        return True


@contextlib.contextmanager
def replicating(tmp_path, storage: dict, target, target_uri: str, stream=Stream):
    """A ``stream`` (``Stream`` or a subclass) into ``target`` (a started server, at ``target_uri``); the
    task, the source and ``target`` stopped at the end, in that order (``target`` also when the stream
    does not start)."""
    try:
        s = stream(tmp_path, storage, target_uri)
    except BaseException:
        target.stop()
        raise
    try:
        yield s
    finally:
        if s.rep is not None:
            s.rep.stop()
        s.source.stop()
        target.stop()


def mixed_stream(c: MilvusClient) -> None:
    """DDL and DML on the source, as a user would."""
    c.create_database("db2")
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", datatype=5, is_primary=True)
    schema.add_field("vector", datatype=101, dim=DIM)
    schema.add_field("tag", datatype=21, max_length=16)
    c.create_collection("plain", schema=schema, num_shards=2)
    c.create_partition("plain", "p1")
    c.insert("plain", _rows(range(0, 500)))
    c.insert("plain", _rows(range(500, 700), seed=1), partition_name="p1")
    c.upsert("plain", _rows(range(100, 200), seed=2))
    c.delete("plain", ids=list(range(0, 50)))
    c.delete("plain", filter="id in [600, 601, 602]")
    ip = c.prepare_index_params()
    ip.add_index(field_name="vector", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
    c.create_index("plain", ip)
    c.alter_index_properties("plain", "vector", {"mmap.enabled": True})  # the target's index gets it too
    c.load_collection("plain")
    c.create_alias("plain", "plain_alias")
    auto = MilvusClient.create_schema(auto_id=True)
    auto.add_field("pk", datatype=5, is_primary=True, auto_id=True)
    auto.add_field("vector", datatype=101, dim=DIM)
    aip = c.prepare_index_params()
    aip.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    c.create_collection("auto", schema=auto, index_params=aip)
    c.insert("auto", [{"vector": v.tolist()} for v in np.random.default_rng(3).random((300, DIM), dtype=np.float32)])
    # dropped and created again under the same name: only the second one's rows remain
    c.create_collection("again", dimension=DIM)
    c.insert("again", [{"id": i, "vector": [0.5] * DIM} for i in range(100)])
    c.drop_collection("again")
    c.create_collection("again", dimension=DIM)
    c.insert("again", [{"id": i, "vector": [0.25] * DIM} for i in range(1000, 1040)])
    # a partition key: the target routes rows by it into its own partitions
    pk = MilvusClient.create_schema(auto_id=False)
    pk.add_field("id", datatype=5, is_primary=True)
    pk.add_field("vector", datatype=101, dim=DIM)
    pk.add_field("tenant", datatype=5, is_partition_key=True)
    pip = c.prepare_index_params()
    pip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
    c.create_collection("keyed", schema=pk, index_params=pip, num_partitions=4)
    c.insert("keyed", [{"id": i, "vector": [i / 10] * DIM, "tenant": i % 5} for i in range(200)])
    c.delete("keyed", filter="tenant == 3")
    c.use_database("db2")
    c.create_collection("other", dimension=DIM)
    c.insert("other", [{"id": i, "vector": [float(i)] * DIM} for i in range(60)])
    c.use_database("default")


def test_two_standalones_mixed_ddl_and_dml_replicate(tmp_path, remote_storage):
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcsrc" + new_task_id()), target, tu) as stream:
        c = MilvusClient(uri=stream.source_uri)
        mixed_stream(c)
        stream.wait_equal(90, "target never equal")
        t = MilvusClient(uri=tu)
        assert t.query("plain", filter="", output_fields=["count(*)"])[0]["count(*)"] == 700 - 50 - 3
        assert t.query("auto", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
        again = t.query("again", filter="", output_fields=["id"], limit=1000)
        assert sorted(r["id"] for r in again) == list(range(1000, 1040))
        # a quick-setup collection's AUTOINDEX is created as AUTOINDEX on the target, described as on the source
        assert t.describe_index("again", "vector")["index_type"] == "AUTOINDEX"
        assert t.describe_index("again", "vector")["metric_type"] == c.describe_index("again", "vector")["metric_type"]
        assert "plain_alias" in t.list_aliases("plain")["aliases"]
        assert t.list_indexes("plain") and "p1" in t.list_partitions("plain")
        assert t.describe_index("plain", "vector")["mmap.enabled"] == "True"
        assert str(t.get_load_state("plain")["state"]).endswith("Loaded")
        # the auto_id rows kept the source's ids
        src_ids = sorted(r["pk"] for r in c.query("auto", filter="", output_fields=["pk"], limit=1000))
        assert sorted(r["pk"] for r in t.query("auto", filter="", output_fields=["pk"], limit=1000)) == src_ids
        # later drops reach the target: a collection, a database
        c.drop_collection("auto")
        wait_until(lambda: not t.has_collection("auto"), 30, "drop not replicated")
        c.use_database("db2")
        c.drop_collection("other")
        c.use_database("default")
        c.drop_database("db2")
        wait_until(lambda: "db2" not in t.list_databases(), 30, "drop database not replicated")
        assert stream.rep.progress.state == "running" and stream.rep.progress.last_error == ""
        # the task is a follower of the source log: with the task stopped, a flush (which truncates the log
        # up to its checkpoint) keeps what the task has not applied yet; a new run of the task replays it
        time.sleep(PUBLISH_SECONDS * 1.5)
        stream.rep.stop()
        c.insert("plain", _rows(range(2000, 2300), seed=5))
        c.delete("plain", ids=list(range(2000, 2010)))
        c.flush("plain")
        stream.resume()
        stream.wait_equal(60, "no catching up after a flush")
        assert t.query("plain", filter="", output_fields=["count(*)"])[0]["count(*)"] == 700 - 50 - 3 + 290
        # a task from a timestamp, for two collections, one renamed: the catalog as it is, and only the
        # changes at or after that timestamp
        since = timestamp.compose(timestamp.now_ms())
        c.insert("plain", _rows(range(5000, 5020), seed=6))
        c.delete("plain", ids=[100])
        second = start_standalone(str(tmp_path / "dst2"))
        try:
            u2 = f"http://127.0.0.1:{second.port}"
            _, rep2 = stream.start_task(u2, start=since, collections=["plain", "default.keyed"],
                                        rename={"plain": "copy"})
            try:
                t2 = MilvusClient(uri=u2)

                def later_rows() -> bool:
                    try:
                        return rep2.progress.lag_records == 0 and \
                            t2.query("copy", filter="", output_fields=["count(*)"])[0]["count(*)"] == 20
                    except Exception:  # noqa: BLE001 (not created or loaded yet)
                        return False

                wait_until(later_rows, 60, "the task from a timestamp did not replicate the later rows")
                ids = sorted(r["id"] for r in t2.query("copy", filter="", output_fields=["id"], limit=100))
                assert ids == list(range(5000, 5020))
                # only the collections named, under their new names
                assert sorted(t2.list_collections()) == ["copy", "keyed"]
                assert "plain_alias" in t2.list_aliases("copy")["aliases"]
            finally:
                rep2.stop()
        finally:
            second.stop()


def test_a_task_past_the_retention_limit_fails_loudly(tmp_path, remote_storage, monkeypatch):
    """The source cut its log past a stopped task's position (retention 0 here): the task does not skip
    the gap, it fails, saying so and how to re-sync."""
    from vecdb.cdc import follower
    from vecdb.cdc.task import FAILED

    monkeypatch.setattr(follower, "CDC_RETENTION", 0)
    target = start_standalone(str(tmp_path / "dst"))
    with replicating(tmp_path, remote_storage("cdcret" + new_task_id()), target,
                     f"http://127.0.0.1:{target.port}") as stream:
        store, task = stream.store, stream.task
        c = MilvusClient(uri=stream.source_uri)
        c.create_collection("r", dimension=DIM)
        c.insert("r", _rows(range(10), extra=False))
        wait_until(lambda: store.positions(task.id) and min(store.positions(task.id).values()) > 0
                   and stream.rep.progress.lag_records == 0, 30, "not replicated")
        stream.rep.stop()
        c.insert("r", _rows(range(10, 20), extra=False))
        c.insert("r", _rows(range(20, 30), extra=False))
        c.flush("r")  # the log is cut at the checkpoint: past the task
        rep = stream.resume()
        wait_until(lambda: rep.progress.state == FAILED, 30, "the task did not fail")
        assert "truncated past this task's position" in rep.progress.reason and "Re-sync" in rep.progress.reason
        assert store.get(task.id).state == FAILED  # recorded: a restarted service shows it failed, with the reason


def test_a_stalled_source_follower_is_followed_again(tmp_path, remote_storage, monkeypatch):
    """The first follower the task opens on each channel of the source's log never hands a record out
    (as a JetStream consumer opened past a purge does): after ``vecdb.storage.stall``'s silence the
    task follows the channel again, and the rows arrive."""
    from vecdb.cdc import replicator
    from vecdb.storage import stall

    monkeypatch.setattr(stall, "STALL_SECONDS", 0.5)
    real_open = replicator.open_source
    logs: list[FirstFollowerSilent] = []

    def open_source(source):
        meta, log = real_open(source)
        logs.append(FirstFollowerSilent(log))
        return meta, logs[-1]

    monkeypatch.setattr(replicator, "open_source", open_source)
    target = start_standalone(str(tmp_path / "dst"))
    with replicating(tmp_path, remote_storage("cdcstall" + new_task_id()), target,
                     f"http://127.0.0.1:{target.port}") as stream:
        c = MilvusClient(uri=stream.source_uri)
        c.create_collection("s", dimension=DIM)
        c.insert("s", _rows(range(40), extra=False))
        stream.wait_equal(60, "the rows behind a stalled follower")
        followed = logs[-1].follows
        assert followed and all(n >= 2 for n in followed.values()), followed  # each channel's first was silent
        t = MilvusClient(uri=stream.target_uri)
        assert t.query("s", filter="", output_fields=["count(*)"])[0]["count(*)"] == 40


def test_a_collection_ttl_replicates_and_rows_expired_on_the_source_are_not_copied(tmp_path, remote_storage):
    """collection.ttl.seconds: the property (and later changes of it) reach the target; rows that had
    expired on the source before the task applied them are skipped (the target would write them with new
    timestamps and show them again for a whole TTL)."""
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcttl" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        c.create_collection("ttl", dimension=DIM, properties={"collection.ttl.seconds": 2})
        wait_until(lambda: t.has_collection("ttl"), 30, "collection not replicated")
        assert t.describe_collection("ttl")["properties"]["collection.ttl.seconds"] == "2"
        stream.rep.stop()
        c.insert("ttl", [{"id": i, "vector": [0.1] * DIM} for i in range(10)])
        time.sleep(2.5)  # expired on the source before the task sees them
        c.insert("ttl", [{"id": i, "vector": [0.2] * DIM} for i in range(10, 15)])
        stream.resume()
        seen: list = []

        def copied() -> bool:
            try:
                seen[:] = sorted(r["id"] for r in t.query("ttl", "id >= 0", consistency_level="Strong"))
            except Exception:  # noqa: BLE001 (not loaded on the target yet)
                return False
            return bool(seen)

        wait_until(copied, 30, "rows not replicated")
        assert seen == list(range(10, 15))
        c.alter_collection_properties("ttl", {"collection.ttl.seconds": 600})
        wait_until(lambda: t.describe_collection("ttl")["properties"].get("collection.ttl.seconds") == "600", 30,
                   "the TTL change not replicated")
        c.drop_collection_properties("ttl", ["collection.ttl.seconds"])
        wait_until(lambda: "collection.ttl.seconds" not in t.describe_collection("ttl")["properties"], 30,
                   "the TTL removal not replicated")
        assert stream.rep.progress.last_error == ""


def test_an_mmap_change_made_while_released_reaches_a_target_still_loaded(tmp_path, remote_storage):
    """The source released, its ``mmap.enabled`` altered and loaded again between two passes: the target,
    still loaded, refuses the change while loaded (as the source did), so the task releases it for the
    change and loads it again as the source is."""
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcmm" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        c.create_collection("mm", dimension=DIM)
        c.insert("mm", [{"id": i, "vector": [0.1] * DIM} for i in range(10)])
        stream.wait_equal(60, "not replicated")
        stream.rep.stop()
        c.release_collection("mm")
        c.alter_collection_properties("mm", {"mmap.enabled": True})
        c.load_collection("mm")
        stream.resume()
        wait_until(lambda: t.describe_collection("mm")["properties"].get("mmap.enabled") == "True", 60,
                   "the mmap change not replicated")
        stream.wait_equal(60, "not equal after the change")
        assert t.get_load_state("mm")["state"].name == "Loaded"
        assert stream.rep.progress.last_error == ""


def test_a_database_time_zone_replicates_and_other_database_properties_do_not(tmp_path, remote_storage):
    """A database's ``timezone`` (TIMESTAMPTZ output and offset-less input) reaches the target, changed
    and dropped; its limits and deny switches stay the target's own (the target may be sized and used
    differently: a force-deny-writing copied there would stop the replication itself)."""
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdctz" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        c.create_database("zoned", properties={"timezone": "Asia/Shanghai", "database.max.collections": "3"})
        wait_until(lambda: t.describe_database("zoned").get("timezone") == "Asia/Shanghai"
                   if "zoned" in t.list_databases() else False, 30, "database time zone not replicated")
        assert "database.max.collections" not in t.describe_database("zoned")
        c.alter_database_properties("zoned", {"timezone": "America/New_York"})
        wait_until(lambda: t.describe_database("zoned").get("timezone") == "America/New_York", 30,
                   "the time zone change not replicated")
        c.drop_database_properties("zoned", ["timezone"])
        wait_until(lambda: "timezone" not in t.describe_database("zoned"), 30, "the time zone removal not replicated")
        assert stream.rep.progress.last_error == ""


def test_namespace_collections_replicate_with_their_namespaces(tmp_path, remote_storage):
    """enable_namespace collections (vecdb.namespaces) reach the target with their mode; each row lands
    in its own namespace there: by ``$namespace_id`` (partition_key mode), by partition (partition mode)."""
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcns" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        for name, props in (("keyed_ns", {}), ("parted_ns", {"namespace.mode": "partition"})):
            schema = MilvusClient.create_schema(enable_namespace=True)
            schema.add_field("id", datatype=5, is_primary=True)
            schema.add_field("vector", datatype=101, dim=DIM)
            schema.add_field("tag", datatype=21, max_length=16)
            c.create_collection(name, schema=schema, index_params=ip, properties=props)
        c.insert("keyed_ns", _rows(range(0, 30), extra=False), namespace="acme")
        c.insert("keyed_ns", _rows(range(100, 120), extra=False), namespace="globex")
        create_namespaces(stream.source_uri, "parted_ns", ("east", "west"))
        c.insert("parted_ns", _rows(range(0, 10), extra=False), namespace="east")
        c.insert("parted_ns", _rows(range(10, 15), extra=False), namespace="west")
        stream.wait_equal(60, "namespace collections not replicated")
        assert t.describe_collection("keyed_ns")["enable_namespace"] is True
        assert [f["name"] for f in t.describe_collection("keyed_ns")["fields"]] == ["id", "vector", "tag"]
        for name, ns, ids in (("keyed_ns", "acme", range(0, 30)), ("keyed_ns", "globex", range(100, 120)),
                              ("parted_ns", "east", range(0, 10)), ("parted_ns", "west", range(10, 15))):
            got = t.query(name, filter="id >= 0", namespace=ns, consistency_level="Strong")
            assert sorted(r["id"] for r in got) == list(ids), (name, ns)
        assert stream.rep.progress.last_error == ""


def test_json_path_indexes_replicate_one_per_path(tmp_path, remote_storage):
    """Several INVERTED indexes on one JSON field, one per path (Milvus 2.5+), reach the target by name
    with their paths and cast types; one dropped on the source and another created under its name on
    another path is replaced there (the catalog pass pairs indexes by name, not by field)."""
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcjp" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        schema = MilvusClient.create_schema()
        schema.add_field("id", datatype=5, is_primary=True)
        schema.add_field("vector", datatype=101, dim=DIM)
        schema.add_field("j", datatype=23)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        ip.add_index(field_name="j", index_name="j_a", index_type="INVERTED",
                     params={"json_cast_type": "varchar", "json_path": 'j["a"]'})
        ip.add_index(field_name="j", index_name="j_b", index_type="INVERTED",
                     params={"json_cast_type": "double", "json_path": 'j["b"]'})
        c.create_collection("jp", schema=schema, index_params=ip)
        c.insert("jp", [{"id": i, "vector": [0.1] * DIM, "j": {"a": f"s{i % 3}", "b": i}} for i in range(20)])
        stream.wait_equal(60, "not replicated")

        def paths() -> dict:
            return {n: (d["field_name"], d.get("json_path"), str(d.get("json_cast_type")).lower())
                    for n in t.list_indexes("jp") if (d := t.describe_index("jp", n))["field_name"] == "j"}

        assert paths() == {"j_a": ("j", 'j["a"]', "varchar"), "j_b": ("j", 'j["b"]', "double")}
        c.release_collection("jp")
        c.drop_index("jp", "j_b")
        ip = c.prepare_index_params()
        ip.add_index(field_name="j", index_name="j_b", index_type="INVERTED",
                     params={"json_cast_type": "bool", "json_path": 'j["c"]'})
        c.create_index("jp", ip)
        c.load_collection("jp")
        wait_until(lambda: paths() == {"j_a": ("j", 'j["a"]', "varchar"), "j_b": ("j", 'j["c"]', "bool")}, 60,
                   f"the replaced index not replicated: {paths()}")
        stream.wait_equal(60, "not equal after the index change")
        assert sorted(r["id"] for r in t.query("jp", filter='j["a"] == "s1"', consistency_level="Strong")) == \
            list(range(1, 20, 3))
        assert stream.rep.progress.last_error == ""

"""CDC killed while it applies the source changes of ``vecdb.cdc.log_order``: the ``vecdb cdc`` service
(its own process, its task in its local store) replicates a source standalone on NATS/etcd/S3 into a
target standalone while a writer inserts, upserts and deletes into every collection, and the source
truncates a collection, drops a partition and creates it again, renames collections (a chain, a swap)
and replaces an index by another type. The service is killed with SIGKILL at varied moments: right
after a change is made, right after it logs having applied one (a rename half done: one collection
still under its ``_cdc_renaming_`` name), and at a random delay (fixed seed) after a restart that finds
several changes made while it was down. Afterwards the target equals the source: collection names
(none left under a temporary name), partitions (loaded as the source's), index types, count(*),
primary keys (per partition) and every field of every row (``verify``, and a sample read back), and
the task's entries record where each collection is and the changes applied. And the pass that finds a
partition dropped stopped by the target being down, the service killed, the partition created again
before both restart: the old partition's rows do not stay under its name."""

from __future__ import annotations

import random
import signal
import threading
import time

from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import free_port, start_standalone, start_vecdb, stop_processes, wait_until
from tests.e2e.test_cdc import DIM, _rows
from vecdb.cdc.cli import call
from vecdb.cdc.log_order import partition_ids
from vecdb.cdc.replicator import open_source, read_catalog
from vecdb.cdc.task import TaskStore, new_task_id
from vecdb.cdc.verify import verify
from vecdb.storage.local_meta import LocalMetaStore

NAMES = ("plain", "a", "b", "c", "idx")  # what the writer writes into, where it exists (renames move them)
TMP = "_cdc_renaming_"


class Writer(threading.Thread):
    """Inserts (half of ``plain``'s into its partition ``p1``), upserts and deletes into each of ``NAMES``
    in turn until stopped, each id written once by an insert; a write a change refuses (a partition
    dropped, a name renamed away, a collection released) is skipped."""

    def __init__(self, uri: str):
        super().__init__(daemon=True)
        self.uri, self.stop, self.batches, self.failures = uri, threading.Event(), 0, 0

    def run(self) -> None:
        rng = random.Random(5)
        c = MilvusClient(uri=self.uri, timeout=10)
        nxt, k = 100_000, 0
        while not self.stop.is_set():
            name = NAMES[k % len(NAMES)]
            k += 1
            try:
                if not c.has_collection(name):
                    continue
                n = rng.randint(10, 40)
                part = "p1" if name == "plain" and rng.random() < 0.5 else ""
                c.insert(name, _rows(range(nxt, nxt + n), seed=nxt), partition_name=part)
                nxt += n
                old = rng.sample(range(100_000, nxt), 6)
                c.upsert(name, _rows(old[:3], seed=nxt + 1))
                c.delete(name, ids=old[3:])
                self.batches += 1
            except MilvusException:
                self.failures += 1
            finally:
                time.sleep(0.02)
        c.close()


class CdcService:
    """The ``vecdb cdc`` process on ``data_dir`` and ``port``, started again after each kill; its log at
    INFO (the lines a kill waits for)."""

    def __init__(self, data_dir, port: int, monkeypatch):
        self.data_dir, self.port, self.procs = data_dir, port, []
        self.url = f"http://127.0.0.1:{port}"
        self._monkeypatch = monkeypatch
        self.kills = 0
        self.start()

    def start(self) -> None:
        with self._monkeypatch.context() as m:
            m.setenv("VECDB_TEST_LOG_LEVEL", "INFO")
            self.proc = start_vecdb("cdc", "--port", str(self.port), "--data-dir", str(self.data_dir),
                                    ready=" ready on ")
        self.procs.append(self.proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def restart(self) -> None:
        self.kill()
        self.start()

    def kill_on(self, line: str, seconds: float = 30.0) -> bool:
        """Kill (and start again) as soon as this run logs ``line``; whether it did (else killed anyway
        after ``seconds``: the change was applied by an earlier run, or not yet)."""
        deadline = time.monotonic() + seconds
        while line not in self.proc.output() and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = line in self.proc.output()
        self.restart()
        return seen

    def task(self, tid: str) -> dict:
        code, out = call(self.url, "GET", f"/v1/tasks/{tid}")
        assert code == 200, out
        return out


# --- the changes ---------------------------------------------------------------------------------

def truncate(c: MilvusClient) -> None:
    c.truncate_collection("plain")


def partition_again(c: MilvusClient) -> None:
    c.release_partitions("plain", ["p1"])
    c.drop_partition("plain", "p1")
    c.create_partition("plain", "p1")
    c.load_partitions("plain", ["p1"])


def rename_chain(c: MilvusClient, first: tuple[str, str], then: tuple[str, str]) -> None:
    c.rename_collection(*first)
    c.rename_collection(*then)


def swap(c: MilvusClient, x: str, y: str) -> None:
    c.rename_collection(x, "tmp")
    c.rename_collection(y, x)
    c.rename_collection("tmp", y)


def replace_index(c: MilvusClient, index_type: str, metric: str, params: dict) -> None:
    c.release_collection("idx")
    c.drop_index("idx", c.list_indexes("idx")[0])
    ip = c.prepare_index_params()
    ip.add_index(field_name="vector", index_type=index_type, metric_type=metric, params=params,
                 index_name=index_type.lower())
    c.create_index("idx", ip)
    c.load_collection("idx")


# --- the checks ----------------------------------------------------------------------------------

def _ids(c: MilvusClient, name: str, **kw) -> list[int]:
    return sorted(r["id"] for r in c.query(name, filter="id >= 0", output_fields=["id"], limit=16384,
                                           consistency_level="Strong", **kw))


def _indexes(c: MilvusClient, name: str) -> list[tuple]:
    out = []
    for idx in sorted(c.list_indexes(name)):
        d = c.describe_index(name, idx)
        out.append((idx, d["field_name"], d["index_type"], d["metric_type"],
                    {k: str(d[k]) for k in ("nlist", "M", "efConstruction") if k in d}))
    return out


def _load_state(c: MilvusClient, name: str, partition: str) -> str:
    return c.get_load_state(name, partition_name=partition)["state"].name


def assert_same(s: MilvusClient, t: MilvusClient) -> None:
    """Names, partitions (and their load states), indexes, primary keys (per partition) and a sample of rows
    field by field."""
    names = sorted(s.list_collections())
    assert sorted(t.list_collections()) == names and not [n for n in names if n.startswith(TMP)], \
        (names, t.list_collections())
    for name in names:
        assert sorted(t.list_partitions(name)) == sorted(s.list_partitions(name)), name
        assert [_load_state(t, name, p) for p in sorted(s.list_partitions(name))] == \
            [_load_state(s, name, p) for p in sorted(s.list_partitions(name))], name
        assert _indexes(t, name) == _indexes(s, name), name
        for p in s.list_partitions(name):
            assert _ids(t, name, partition_names=[p]) == _ids(s, name, partition_names=[p]), (name, p)
        ids = _ids(s, name)
        sample = ids[:: max(1, len(ids) // 50)]
        if sample:
            want = s.query(name, ids=sample, output_fields=["*"], consistency_level="Strong")
            got = t.query(name, ids=sample, output_fields=["*"], consistency_level="Strong")
            key = lambda r: r["id"]  # noqa: E731
            assert [(r["id"], r["tag"], r["color"]) for r in sorted(got, key=key)] == \
                [(r["id"], r["tag"], r["color"]) for r in sorted(want, key=key)], name
            for a, b in zip(sorted(got, key=key), sorted(want, key=key)):
                assert [round(x, 5) for x in a["vector"]] == [round(x, 5) for x in b["vector"]], (name, a["id"])


def assert_entries(cdc_dir, tid: str, storage: dict) -> None:
    """The task's entries (read from the stopped service's store) say where each source collection is
    on the target, with no rename left half done, and record its truncate and partitions."""
    meta, wal = open_source(storage)
    try:
        colls, _, _ = read_catalog(meta)
    finally:
        wal.close()
        meta.close()
    store = LocalMetaStore(str(cdc_dir / "meta"))
    try:
        entries = TaskStore(store).collections(tid)
    finally:
        store.close()
    assert set(entries) == set(colls), (entries, colls)
    for cid, info in colls.items():
        e = entries[cid]
        assert "moving" not in e and (e["db"], e["name"], e["target"]) == (info.db, info.name, info.name), (e, info)
        assert (e["truncated_ts"], e["partitions"]) == (info.truncated_ts, partition_ids(info)), (e, info)


def wait_equal(cdc: CdcService, su: str, tu: str, seconds: float) -> dict:
    """Until the task has no lag and ``verify`` finds source and target equal, twice a second apart (no
    change left to apply that would empty a collection); the task as the API says then."""
    last: list = []

    def equal() -> bool:
        try:
            last[:] = [cdc.task("t1"), {k: v for k, v in verify(su, tu).items() if v}]
        except MilvusException as e:  # a collection not loaded yet on the target
            last[:] = [cdc.task("t1"), repr(e)]
            return False
        return last[0]["lag_records"] == 0 and not last[1]

    try:
        wait_until(equal, seconds, "the target never became equal to the source")
        time.sleep(1)
        wait_until(equal, 30, "the target did not stay equal to the source")
    except AssertionError as e:  # (with each partition's load state: a partition not loaded is not counted)
        raise AssertionError(f"{e}: {last}; partitions loaded: source {_loaded(su)}, target {_loaded(tu)}") from None
    return last[0]


def _loaded(uri: str) -> dict:
    """Each collection's partitions and their load states (or why they could not be read)."""
    c = MilvusClient(uri=uri)
    try:
        return {n: {p: _load_state(c, n, p) for p in c.list_partitions(n)} for n in c.list_collections()}
    except MilvusException as e:
        return {"error": repr(e)}
    finally:
        c.close()


def _create(c: MilvusClient, name: str, shards: int = 1) -> None:
    """A loaded collection of ``id``, ``vector`` and dynamic fields (``_rows``), indexed FLAT (an index type
    named: an AUTOINDEX's type is the server's choice)."""
    schema = MilvusClient.create_schema(enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    ip = c.prepare_index_params()
    ip.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    c.create_collection(name, schema=schema, index_params=ip, num_shards=shards)


def _task(cdc: CdcService, storage: dict, tu: str) -> None:
    code, out = call(cdc.url, "POST", "/v1/tasks", {"id": "t1", "source": storage, "target": {"uri": tu},
                                                    "start": "now"})
    assert code == 200 and out["state"] == "running", out


def test_cdc_killed_while_applying_changes_loses_nothing(tmp_path, remote_storage, monkeypatch):
    storage = remote_storage("cdccc" + new_task_id())
    source = start_standalone(str(tmp_path / "src"), storage=storage)
    target = start_standalone(str(tmp_path / "dst"))
    su, tu = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    writer, cdc = Writer(su), None
    try:
        cdc = CdcService(tmp_path / "cdc", free_port(), monkeypatch)
        _task(cdc, storage, tu)
        c = MilvusClient(uri=su)
        for k, name in enumerate(("plain", "a", "b", "idx")):
            _create(c, name, shards=2 if name == "plain" else 1)
            c.insert(name, _rows(range(1000 * k, 1000 * k + 200), seed=k))
        c.create_partition("plain", "p1")
        c.insert("plain", _rows(range(500, 600), seed=9), partition_name="p1")
        writer.start()
        wait_until(lambda: writer.batches >= 10, 60, "the writer wrote nothing")
        # kills right after each change is made
        for change in (truncate, partition_again, lambda c: rename_chain(c, ("b", "c"), ("a", "b")),
                       lambda c: swap(c, "b", "c"), lambda c: replace_index(c, "IVF_FLAT", "L2", {"nlist": 4})):
            change(c)
            cdc.restart()
        # kills as soon as the service logs having applied one (a swap: one collection moved, one not yet)
        truncate(c)
        seen = [cdc.kill_on("applied a truncate of default.plain")]
        partition_again(c)
        seen.append(cdc.kill_on("applied partitions created again ['p1'] of default.plain"))
        rename_chain(c, ("c", "a"), ("b", "c"))
        seen.append(cdc.kill_on(" renamed on the source to "))
        swap(c, "a", "c")
        seen.append(cdc.kill_on(" renamed on the source to "))
        # changes made while the service is down, applied by its next run: killed at random moments of it
        cdc.kill()
        truncate(c)
        partition_again(c)
        swap(c, "a", "c")
        replace_index(c, "HNSW", "COSINE", {"M": 8, "efConstruction": 32})
        rng = random.Random(11)
        for _ in range(3):
            cdc.start()
            time.sleep(rng.uniform(0.1, 2.0))
            cdc.kill()
        cdc.start()
        time.sleep(1)
        writer.stop.set()
        writer.join(30)
        assert writer.batches > 20 and not writer.is_alive(), writer.batches
        last = wait_equal(cdc, su, tu, 120)
        assert last["state"] == "running" and not last["last_error"], last
        assert_same(c, MilvusClient(uri=tu))
        print(f"kills {cdc.kills}, writer batches {writer.batches} (failed {writer.failures}), logged lines "
              f"seen before a kill {seen}")
        stop_processes([cdc.proc])
        assert_entries(tmp_path / "cdc", "t1", storage)
    finally:
        writer.stop.set()
        if cdc is not None:
            stop_processes(cdc.procs)
        source.stop()
        target.stop()


def test_a_partition_dropped_while_the_target_is_down_and_created_again_before_a_restart(tmp_path, remote_storage,
                                                                                        monkeypatch):
    """The task's pass that finds a partition dropped on the source fails at the target (down); the
    service is killed, the partition created again on the source with other rows, the target and the
    service started again: only the new partition's rows are on the target."""
    storage = remote_storage("cdccp" + new_task_id())
    source = start_standalone(str(tmp_path / "src"), storage=storage)
    target = start_standalone(str(tmp_path / "dst"))
    su, tu = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    cdc = None
    try:
        cdc = CdcService(tmp_path / "cdc", free_port(), monkeypatch)
        _task(cdc, storage, tu)
        c = MilvusClient(uri=su)
        _create(c, "plain")
        c.create_partition("plain", "p1")
        c.insert("plain", _rows(range(0, 50)))
        c.insert("plain", _rows(range(100, 150), seed=1), partition_name="p1")
        wait_equal(cdc, su, tu, 60)
        target.stop()
        c.release_partitions("plain", ["p1"])
        c.drop_partition("plain", "p1")
        failed = cdc.proc.output().count("retrying in")
        # the second failed pass after the drop began after it: it read the catalog without p1
        wait_until(lambda: cdc.proc.output().count("retrying in") >= failed + 2, 60, "no pass failed at the target")
        cdc.kill()
        c.create_partition("plain", "p1")
        c.load_partitions("plain", ["p1"])
        c.insert("plain", _rows(range(200, 220), seed=2), partition_name="p1")
        target = start_standalone(str(tmp_path / "dst"), port=target.port)
        cdc.start()
        wait_equal(cdc, su, tu, 60)
        t = MilvusClient(uri=tu)
        assert _ids(t, "plain", partition_names=["p1"]) == list(range(200, 220))
        assert _ids(t, "plain", partition_names=["_default"]) == list(range(0, 50))
        stop_processes([cdc.proc])
        assert_entries(tmp_path / "cdc", "t1", storage)
    finally:
        if cdc is not None:
            stop_processes(cdc.procs)
        source.stop()
        target.stop()

"""A standalone server whose data disk fills up (a small tmpfs), and after space is freed.

What must hold: every acknowledged write is still there (count(*) Strong, exact ids and vectors) after
a restart, clean or kill -9, on the full disk; a write that cannot be stored is refused with code 1001
and a message that says the disk is full, and nothing of it is applied; reads, DDL and restarts keep
working while the disk is full (the log and the object store leave ``storage.disk_reserve_bytes`` free
for the metadata store); once space is freed, writes, flush and compaction work again without a repair.
docs/limits.md, "Disk full". Needs root (mount): skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.conftest import free_port, start_vecdb, wait_until
from tests.e2e._helpers import compact
from vecdb.errors import IoFailed
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.wal import WalLog

DIM = 128
MB = 1 << 20


@contextlib.contextmanager
def _mounted(tmp_path, fstype: str, *options: str):
    """A ``fstype`` filesystem mounted at ``tmp_path/disk`` (skips the test where mounting is not
    permitted), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a {fstype} needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    res = subprocess.run(["mount", "-t", fstype, *options, fstype, str(disk)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a {fstype} here: {res.stderr.strip() or res.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MiB tmpfs at ``tmp_path/disk``, unmounted after the test."""
    with _mounted(tmp_path, "tmpfs", "-o", "size=40m") as disk:
        yield disk


def test_a_filesystem_without_a_size_keeps_no_reserve(tmp_path):
    """ramfs reports 0 blocks (statvfs), as tmpfs size=0 and some FUSE filesystems do: the reserve
    check must not read that as a full disk (every write was refused)."""
    with _mounted(tmp_path, "ramfs") as disk:
        assert os.statvfs(disk).f_blocks == 0
        with WalLog(str(disk / "wal"), reserve_bytes=4 * MB) as wal:
            assert wal.append("ch", b"x" * 1000) == 1


def _filler(path, nbytes: int) -> None:
    with open(path, "wb") as f:
        for _ in range(nbytes // MB):
            f.write(b"\0" * MB)


def _fill_to_zero(path) -> None:
    """Take every free byte of the disk (a file grown until ENOSPC)."""
    with open(path, "ab", buffering=0) as f:
        for size in (MB, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def _disk_full_error(e: MilvusException) -> None:
    assert e.code == 1001, (e.code, e.message)
    assert "No space left on device" in e.message and "disk full" in e.message, e.message


def _rows(start: int, n: int) -> tuple[list[int], np.ndarray]:
    return list(range(start, start + n)), np.random.default_rng(start).standard_normal((n, DIM)).astype(np.float32)


def _insert(client: MilvusClient, acked: dict, start: int, n: int) -> None:
    ids, vecs = _rows(start, n)
    client.insert("c", [{"id": i, "vec": v} for i, v in zip(ids, vecs)])
    acked.update(zip(ids, vecs))


def _check(client: MilvusClient, acked: dict) -> None:
    """count(*) Strong is the acknowledged rows, and each reads back with its acknowledged vector."""
    count = client.query("c", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    assert count == len(acked)
    ids = sorted(acked)
    got = {}
    for i in range(0, len(ids), 4000):
        for row in client.query("c", filter=f"id in {ids[i:i + 4000]}", output_fields=["vec"],
                                consistency_level="Strong"):
            got[row["id"]] = np.asarray(row["vec"], np.float32)
    assert sorted(got) == ids
    bad = [i for i in ids if not np.array_equal(got[i], acked[i])]
    assert not bad, f"{len(bad)} rows read back with other vectors, e.g. {bad[:5]}"


def _start(data_dir, port: int, log):
    return start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=data_dir, log=log)


def _restart(proc, data_dir, port: int, log, sig: int, client: MilvusClient):
    client.close()  # pymilvus shares a connection per address: drop the one to the stopped server
    proc.send_signal(sig)
    assert proc.wait(30) is not None
    proc = _start(data_dir, port, log)
    return proc, MilvusClient(f"http://127.0.0.1:{port}")


def test_full_disk_refuses_writes_keeps_acknowledged_ones_and_recovers(small_disk, tmp_path):
    filler = small_disk / "filler"
    _filler(filler, 28 * MB)  # freed at the end: room to flush, index and compact what the server wrote
    data_dir, port, log = small_disk / "data", free_port(), tmp_path / "server.log"
    proc = _start(data_dir, port, log)
    try:
        client = MilvusClient(f"http://127.0.0.1:{port}")
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        params = client.prepare_index_params()
        params.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 40})
        client.create_collection("c", schema=schema, index_params=params)
        acked: dict[int, np.ndarray] = {}
        nid = 0
        for batch in (1000, 100, 1):  # fill up to the reserve, in smaller and smaller batches
            for _ in range(200):
                try:
                    _insert(client, acked, nid, batch)
                except MilvusException as e:
                    _disk_full_error(e)
                    break
                finally:
                    nid += batch
            else:
                pytest.fail(f"inserts of {batch} rows never filled the disk")
        assert len(acked) > 5000
        _check(client, acked)  # the refused inserts left nothing behind

        # while full: writes refused whole, reads and DDL work
        with pytest.raises(MilvusException) as err:
            client.upsert("c", [{"id": 0, "vec": np.ones(DIM, np.float32)}])
        _disk_full_error(err.value)
        with pytest.raises(MilvusException) as err:
            client.delete("c", ids=[1])
        _disk_full_error(err.value)
        try:
            client.flush("c")
        except MilvusException as e:
            _disk_full_error(e)
        hits = client.search("c", [acked[5].tolist()], limit=3, search_params={"params": {"ef": 64}})
        assert len(hits[0]) == 3 and all(h["id"] in acked for h in hits[0])
        hits = client.search("c", [acked[5].tolist()], limit=3, filter="id in [5, 6]")
        assert [h["id"] for h in hits[0]][0] == 5 and hits[0][0]["distance"] < 1e-3
        client.create_collection("other", dimension=DIM)
        client.create_partition("c", "p1")
        assert "other" in client.list_collections() and "p1" in client.list_partitions("c")
        client.release_collection("c")
        client.load_collection("c")
        _check(client, acked)

        # restarts on the full disk: clean, then kill -9
        for sig in (signal.SIGTERM, signal.SIGKILL):
            proc, client = _restart(proc, data_dir, port, log, sig, client)
            _check(client, acked)
            with pytest.raises(MilvusException) as err:
                _insert(client, acked, nid, 100)
            _disk_full_error(err.value)
            nid += 100

        # space freed: writes, flush, index and compaction work again, no repair
        filler.unlink()
        _insert(client, acked, nid, 1000)
        nid += 1000
        client.upsert("c", [{"id": 0, "vec": np.ones(DIM, np.float32)}])
        acked[0] = np.ones(DIM, np.float32)
        client.delete("c", ids=[1])
        del acked[1]
        client.flush("c")
        _insert(client, acked, nid, 500)
        client.flush("c")
        compact(client, "c")
        wait_until(lambda: client.describe_index("c", "vec")["pending_index_rows"] == 0, 60, "index not built")
        _check(client, acked)
        proc, client = _restart(proc, data_dir, port, log, signal.SIGTERM, client)
        _check(client, acked)
        client.close()
    finally:
        proc.stop()


def test_metadata_store_opens_and_recovers_on_a_disk_without_a_free_byte(small_disk):
    """A full disk (something else took the last byte): the metadata store opens (its open-time
    compaction cannot write a snapshot), reads, refuses a write whole, and takes writes once space is
    freed; the WAL refuses an append whole (no torn record) and appends again once space is freed."""
    meta_dir, wal_dir, filler = small_disk / "meta", small_disk / "wal", small_disk / "filler"
    with LocalMetaStore(str(meta_dir)) as meta:
        meta.put("a", b"1" * 1000)
    with WalLog(str(wal_dir)) as wal:
        wal.append("ch", b"x" * 1000)
    _fill_to_zero(filler)
    with LocalMetaStore(str(meta_dir)) as meta, WalLog(str(wal_dir)) as wal:
        assert meta.get("a") == b"1" * 1000
        with pytest.raises(IoFailed, match="No space left on device"):
            meta.put("b", b"2" * 100_000)
        assert meta.get("b") is None
        with pytest.raises(IoFailed, match="No space left on device"):
            wal.append("ch", b"y" * 100_000)
        assert wal.last_position("ch") == 1
        filler.unlink()
        meta.put("b", b"2" * 100_000)
        assert wal.append("ch", b"z" * 100_000) == 2
    with LocalMetaStore(str(meta_dir)) as meta, WalLog(str(wal_dir)) as wal:
        assert meta.get("a") == b"1" * 1000 and meta.get("b") == b"2" * 100_000
        assert [p for p, _ in wal.read("ch")] == [1, 2]
        assert wal.append("ch", b"w") == 3

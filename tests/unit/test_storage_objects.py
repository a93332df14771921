"""Object stores: LocalObjectStore checked against MemoryObjectStore, plus
atomic puts, key checks and memory-mapped reads."""

from __future__ import annotations

import io
import os
import threading
import uuid

import numpy as np
import pytest

from vecdb.errors import InvalidParameter, IoFailed, KeyNotFound
from vecdb.storage import local_objects
from vecdb.storage.base import ObjectStore
from vecdb.storage.local_objects import LocalObjectStore
from vecdb.storage.memory import MemoryObjectStore
from vecdb.storage.s3_objects import S3ObjectStore


def _s3_store(url: str, **kw) -> S3ObjectStore:
    """A store on the test S3 server, under a prefix of its own in a shared bucket."""
    return S3ObjectStore("vecdb-test", endpoint_url=url, prefix=f"t{uuid.uuid4().hex[:12]}",
                         access_key="test", secret_key="test", **kw)


@pytest.fixture(params=["memory", "local", "s3"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryObjectStore()
    elif request.param == "s3":
        s = _s3_store(request.getfixturevalue("s3_server").url)
    else:
        s = LocalObjectStore(str(tmp_path / "obj"))
    yield s
    s.close()


def test_put_get_exists_overwrite(store):
    assert isinstance(store, ObjectStore)
    store.put("seg/1/vec.npy", b"abc")
    store.put("seg/1/pk", memoryview(b"0123456789")[2:5])
    store.put("seg/1/empty", b"")
    assert store.get("seg/1/vec.npy") == b"abc"
    assert store.get("seg/1/pk") == b"234"
    assert store.get("seg/1/empty") == b""
    assert store.exists("seg/1/pk") and not store.exists("seg/1/nope") and not store.exists("seg/1")
    store.put("seg/1/vec.npy", b"replaced")
    assert store.get("seg/1/vec.npy") == b"replaced"
    with pytest.raises(KeyNotFound):
        store.get("seg/1/nope")
    with pytest.raises(KeyNotFound):
        store.get("seg/1")  # a prefix, not a key


def test_put_accepts_numpy_buffers(store):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.put("a", memoryview(arr))
    assert np.array_equal(np.frombuffer(store.get("a"), dtype=np.float32).reshape(3, 4), arr)


def test_put_streams_a_sequence_or_iterator_of_parts(store):
    arr = np.arange(6, dtype=np.int64)
    store.put("parts", [b"head", arr, memoryview(b"tail")])
    assert store.get("parts") == b"head" + arr.tobytes() + b"tail"
    store.put("gen", (bytes([i]) * 3 for i in range(4)))
    assert store.get("gen") == b"\0\0\0\1\1\1\2\2\2\3\3\3"
    store.put("none", [])
    assert store.get("none") == b""
    for bad in ("text", 12, [b"ok", "text"], [b"ok", None]):
        with pytest.raises(InvalidParameter):
            store.put("bad", bad)
    assert not store.exists("bad")


def test_list_matches_string_prefixes_and_is_sorted(store):
    keys = ["c/2/x", "c/10/x", "c/1/y", "c/1/x", "cx", "b/a"]
    for k in keys:
        store.put(k, k.encode())
    assert store.list("") == sorted(keys)
    assert store.list("c/") == ["c/1/x", "c/1/y", "c/10/x", "c/2/x"]
    assert store.list("c/1") == ["c/1/x", "c/1/y", "c/10/x"]
    assert store.list("c/1/") == ["c/1/x", "c/1/y"]
    assert store.list("c") == ["c/1/x", "c/1/y", "c/10/x", "c/2/x", "cx"]
    assert store.list("zz/") == [] and store.list("c/1/x/") == []


def test_delete_and_delete_prefix(store):
    for k in ["s/1/a", "s/1/b", "s/10/a", "s/2/a", "t"]:
        store.put(k, b"x")
    store.delete("s/1/a")
    store.delete("s/1/a")  # absent: no error
    store.delete("s")  # a prefix, not a key: nothing happens
    assert store.list("") == ["s/1/b", "s/10/a", "s/2/a", "t"]
    store.delete_prefix("s/1")
    assert store.list("") == ["s/2/a", "t"]
    store.delete_prefix("")
    assert store.list("") == []


@pytest.mark.parametrize(
    "key", ["", "/abs", "../x", "a/../../x", "a/./b", "a//b", "a/", ".", "..", "a\\b", "a\x00b", ".tmp-1"]
)
def test_bad_keys_are_rejected(store, key):
    with pytest.raises(InvalidParameter):
        store.put(key, b"x")
    with pytest.raises(InvalidParameter):
        store.get(key)
    with pytest.raises(InvalidParameter):
        store.delete(key)


# --- LocalObjectStore specifics ----------------------------------------------------------


def test_reopen_keeps_objects_and_cleans_temp_leftovers(tmp_path):
    root = str(tmp_path / "o")
    s = LocalObjectStore(root)
    s.put("a/b", b"1")
    s.close()
    leftover = os.path.join(root, "a", ".tmp-deadbeef")
    open(leftover, "wb").write(b"partial")
    s = LocalObjectStore(root)
    assert not os.path.exists(leftover)
    assert s.list("") == ["a/b"] and s.get("a/b") == b"1"


def test_local_path_is_memory_mappable(tmp_path):
    s = LocalObjectStore(str(tmp_path / "o"))
    arr = np.random.default_rng(0).random((100, 8), dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, arr)
    s.put("seg/7/vectors.npy", buf.getbuffer())
    path = s.local_path("seg/7/vectors.npy")
    assert path == os.path.join(str(tmp_path / "o"), "seg", "7", "vectors.npy")
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and np.array_equal(mm, arr)
    with pytest.raises(KeyNotFound):
        s.local_path("seg/7/nope")


def test_failed_put_leaves_old_object_and_no_temp_file(tmp_path, monkeypatch):
    root = str(tmp_path / "o")
    s = LocalObjectStore(root)
    s.put("k/v", b"old")

    def broken_write(fd, data):
        os.write(fd, bytes(memoryview(data)[:3]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_objects, "write_all", broken_write)
    with pytest.raises(IoFailed):
        s.put("k/v", b"new content")
    with pytest.raises(IoFailed):
        s.put("k/w", b"new content")
    assert s.get("k/v") == b"old"
    assert not s.exists("k/w")
    assert sorted(os.listdir(os.path.join(root, "k"))) == ["v"]


def test_readers_never_see_a_partial_object(tmp_path):
    s = LocalObjectStore(str(tmp_path / "o"))
    versions = [bytes([i]) * (1 << 20) for i in range(1, 4)]
    s.put("big", versions[0])
    stop = threading.Event()
    seen, bad = set(), []

    def reader():
        while not stop.is_set():
            data = s.get("big")
            if data in versions:
                seen.add(data[0])
            else:
                bad.append(len(data))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        s.put("big", versions[i % 3])
    stop.set()
    t.join()
    assert bad == [] and len(seen) >= 1
    assert s.list("") == ["big"]


def test_key_that_is_also_a_prefix_is_refused(tmp_path):
    s = LocalObjectStore(str(tmp_path / "o"))
    s.put("a/b", b"1")
    with pytest.raises(InvalidParameter):
        s.put("a", b"2")
    with pytest.raises(InvalidParameter):
        s.put("a/b/c", b"3")
    assert s.list("") == ["a/b"]


def test_empty_directories_are_removed_and_list_cannot_escape(tmp_path):
    root = str(tmp_path / "o")
    outside = tmp_path / "secret"
    outside.write_bytes(b"x")
    s = LocalObjectStore(root)
    s.put("x/y/z", b"1")
    s.delete("x/y/z")
    assert os.listdir(root) == []
    s.put("x", b"now a key")  # possible again once the directory is gone
    assert s.list("../") == [] and s.list("..") == [] and s.list("/") == []
    s.put("p/q/1", b"1")
    s.put("p/r", b"2")
    s.delete_prefix("p/")
    assert sorted(os.listdir(root)) == ["x"]


def test_closed_store_refuses_calls(tmp_path):
    s = LocalObjectStore(str(tmp_path))
    s.close()
    with pytest.raises(IoFailed):
        s.put("a", b"x")
    with pytest.raises(IoFailed):
        s.list("")


# --- S3ObjectStore specifics ---------------------------------------------------------------


def test_s3_large_objects_go_up_in_parts_and_come_back_whole(s3_server):
    s = _s3_store(s3_server.url, part_bytes=5 << 20)
    rng = np.random.default_rng(3)
    blob = rng.integers(0, 256, (12 << 20) + 12345, dtype=np.uint8)
    pieces = [blob[i:i + (3 << 20) + 7] for i in range(0, len(blob), (3 << 20) + 7)]
    s.put("big/one", pieces)
    assert s.get("big/one") == blob.tobytes()
    assert s.local_path("big/one") is None
    # no multipart upload is left open behind it
    assert s._s3.list_multipart_uploads(Bucket=s.bucket).get("Uploads", []) == []
    s.close()


def test_s3_failed_multipart_put_leaves_old_object_and_aborts(s3_server):
    s = _s3_store(s3_server.url, part_bytes=5 << 20)
    s.put("k", b"old")

    def parts():
        yield b"x" * (6 << 20)
        raise OSError("source broke")

    with pytest.raises(OSError):
        s.put("k", parts())
    assert s.get("k") == b"old"
    assert [u for u in s._s3.list_multipart_uploads(Bucket=s.bucket).get("Uploads", [])
            if u["Key"].startswith(s.prefix)] == []
    s.close()


def test_s3_key_may_also_be_a_prefix_and_prefixes_isolate_stores(s3_server):
    a, b = _s3_store(s3_server.url), _s3_store(s3_server.url)
    a.put("x", b"1")
    a.put("x/y", b"2")
    b.put("x", b"other")
    assert a.list("") == ["x", "x/y"] and b.list("") == ["x"]
    a.delete_prefix("")
    assert a.list("") == [] and b.get("x") == b"other"


def test_s3_unreachable_server_is_an_io_error():
    from vecdb.storage.servers import free_port

    with pytest.raises(IoFailed):
        S3ObjectStore("b", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="x", secret_key="x")


def test_s3_local_path_is_a_cached_mappable_copy(s3_server, tmp_path):
    cache = tmp_path / "cache"
    s = _s3_store(s3_server.url, cache_dir=str(cache))
    arr = np.random.default_rng(1).random((50, 4), dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, arr)
    s.put("seg/1/v.npy", buf.getbuffer())
    path = s.local_path("seg/1/v.npy")
    assert path.startswith(str(cache)) and s.local_path("seg/1/v.npy") == path  # fetched once
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and np.array_equal(mm, arr)
    s.put("seg/1/v.npy", b"replaced")  # a new version is fetched again, the old copy is gone
    assert not os.path.exists(path)
    newer = s.local_path("seg/1/v.npy")
    assert newer != path and open(newer, "rb").read() == b"replaced"
    s.delete_prefix("seg/")
    assert not os.path.exists(newer)
    assert [f for _, _, fs in os.walk(cache) for f in fs] == []
    with pytest.raises(KeyNotFound):
        s.local_path("seg/1/v.npy")
    assert _s3_store(s3_server.url).local_path("x") is None  # no cache: readers get the bytes

"""What keeps a restart with thousands of collections linear (tests/e2e/test_restart_many_collections.py
counts the start's metadata reads): the metadata snapshot in key order, the compactor's per-channel
caches, segment column files read without numpy's header parser, and the open-files limit raised."""

from __future__ import annotations

import bisect
import random
import resource
import tempfile

import numpy as np
import pytest

from vecdb import startup
from vecdb.datanode.compactor import ChannelCache
from vecdb.schema import CollectionSchema, DataType, FieldSchema, valid_key
from vecdb.storage import local_meta
from vecdb.storage import segments as sf
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.local_objects import LocalObjectStore
from vecdb.storage.memory import MemoryObjectStore


def test_reopened_meta_store_appends_every_key(tmp_path, monkeypatch):
    """Opening a store keeps its keys sorted for prefix scans; with the snapshot written in key order,
    each key goes at the end of the list (an insert in the middle moves every key after it: O(keys^2))."""
    keys = [f"{kind}/{i:05d}" for i in range(300) for kind in ("coll", "seg", "ckpt")]
    random.Random(7).shuffle(keys)
    with LocalMetaStore(str(tmp_path)) as store:
        for i in range(0, len(keys), 50):
            store.txn(puts={k: k.encode() for k in keys[i:i + 50]})
        lease = store.grant_lease(30)
        store.txn(puts={"session/a": b"x"}, lease=lease)  # in memory only: never in the snapshot
        store.txn(deletes=[keys[0]])
    LocalMetaStore(str(tmp_path)).close()  # compacts the journal into the snapshot

    middle = []
    insort = bisect.insort

    def counted(a, x, *args, **kw):
        if a and x < a[-1]:
            middle.append(x)
        insort(a, x, *args, **kw)

    monkeypatch.setattr(local_meta.bisect, "insort", counted)
    with LocalMetaStore(str(tmp_path)) as store:
        assert [k for k, _ in store.scan("")] == sorted(keys[1:])
    assert middle == []


def test_channel_cache_forgets_one_channels_keys():
    cache: ChannelCache[int] = ChannelCache()
    for c in range(3):
        for p in range(3):
            cache.put(f"segments/{c}/c{c}-s0/{p:020d}-1/", c * 10 + p)
        cache.put(f"deltas/{c}/c{c}-s0/{p:020d}.vcol", -c)
    cache.forget("c1-s0", {"segments/1/c1-s0/00000000000000000002-1/"})
    assert cache.get("segments/1/c1-s0/00000000000000000000-1/") is None
    assert cache.get("segments/1/c1-s0/00000000000000000002-1/") == 12
    assert cache.get("segments/0/c0-s0/00000000000000000000-1/") == 0  # other channels: as they were
    assert cache.get("deltas/2/c2-s0/00000000000000000002.vcol") == -2
    cache.keep_channels({"c2-s0": 2})
    assert cache.get("segments/0/c0-s0/00000000000000000000-1/") is None
    assert cache.get("segments/2/c2-s0/00000000000000000001-1/") == 21


@pytest.mark.parametrize("array", [
    np.arange(10, dtype=np.int64), np.ones((4, 8), np.float32), np.arange(6, dtype=">u8"),
    np.array([True, False, True]), np.zeros(0, np.uint64), np.zeros((2, 0), np.float16),
    np.array(["a", "bc"]), np.asfortranarray(np.ones((3, 2))), np.zeros((2, 3, 4), np.int8)],
    ids=["int64", "2d", "big-endian", "bool", "empty", "empty-2d", "unicode", "fortran", "3d"])
@pytest.mark.parametrize("mmap", [False, True])
def test_segment_column_files_read_as_numpy_does(tmp_path, array, mmap):
    """Column files are read without np.load's header parser: the same arrays (type, dtype, shape,
    values, writability) and the same errors as np.load, from a local store and from one without
    local files."""
    data = b"".join(p.tobytes() if isinstance(p, np.ndarray) else p for p in sf._npy_parts([array]))  # as written
    objects = LocalObjectStore(str(tmp_path))
    objects.put("c/x.npy", data)
    path = str(tmp_path / "c" / "x.npy")
    try:
        want = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:  # np.memmap of an empty file
        with pytest.raises(type(e)):
            sf._load_npy(objects, "c/x.npy", mmap)
        return
    got = sf._load_npy(objects, "c/x.npy", mmap)
    assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.writeable == want.flags.writeable and np.array_equal(got, want)
    remote = MemoryObjectStore()
    remote.put("c/x.npy", data)
    assert np.array_equal(sf._load_npy(remote, "c/x.npy", mmap), want)


def test_truncated_column_file_is_an_error(tmp_path):
    objects = LocalObjectStore(str(tmp_path))
    objects.put("c/x.npy", sf._npy_parts([np.arange(100)]))
    with open(tmp_path / "c" / "x.npy", "r+b") as f:
        f.truncate(300)
    for mmap in (False, True):
        with pytest.raises(ValueError):
            sf._load_npy(objects, "c/x.npy", mmap)


def test_open_files_limit_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard limit {hard}: nothing to raise to here")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        startup.raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_segment_files_read_without_ast(monkeypatch):
    """``ast`` is not thread-safe in CPython 3.11 (gh-106905): np.load's header parser beside another
    thread's failed a restart now and then ("AST constructor recursion depth mismatch"). Every column file
    a segment's fixed-width fields make is read without it."""
    import ast

    n = 5
    types = {"id": DataType.INT64, "v": DataType.FLOAT_VECTOR, "b": DataType.BINARY_VECTOR,
             "h": DataType.FLOAT16_VECTOR, "bf": DataType.BFLOAT16_VECTOR, "i8": DataType.INT8, "i32": DataType.INT32,
             "d": DataType.DOUBLE, "ok": DataType.BOOL}
    dims = {"v": 4, "b": 16, "h": 2, "bf": 2}
    fields = [FieldSchema(name, dtype, 100 + i, is_primary=name == "id", dim=dims.get(name, 0), nullable=name == "i32")
              for i, (name, dtype) in enumerate(types.items())]
    schema = CollectionSchema("c", fields)
    columns = {"id": np.arange(n, dtype=np.int64), "v": np.ones((n, 4), np.float32),
               "b": np.zeros((n, 2), np.uint8), "h": np.ones((n, 2), np.float16), "bf": np.ones((n, 2), np.uint16),
               "i8": np.arange(n, dtype=np.int8), "i32": np.arange(n, dtype=np.int32),
               valid_key("i32"): np.array([True, False, True, True, False]), "d": np.ones(n), "ok": np.ones(n, bool)}
    for objects in (MemoryObjectStore(), LocalObjectStore(tempfile.mkdtemp())):
        sf.write_segment(objects, "segments/1/c1-s0/00000000000000000001-1/", schema, columns,
                         np.arange(n, dtype=np.uint64))
        with monkeypatch.context() as m:
            m.setattr(ast, "literal_eval", lambda *a: pytest.fail("a segment file's header went through ast"))
            for mmap in (False, True):
                got, ts = sf.read_segment(objects, "segments/1/c1-s0/00000000000000000001-1/", schema, mmap)
                assert np.array_equal(ts, np.arange(n)) and set(got) == set(columns)
                for name, column in columns.items():
                    assert got[name].dtype == column.dtype and np.array_equal(got[name], column), name

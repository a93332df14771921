"""Sealed segment files in the object store, and the metadata that lists them.

Object store layout:
  ``segments/<collection>/<channel>/<position>-<partition>/<field_id>.npy``  fixed-width column
  ``segments/.../<field_id>.vcol``   object column (VARCHAR, JSON, ARRAY) in vecdb.column_codec's format
  ``segments/.../<field_id>.{indptr,indices,values}.npy``  SPARSE_FLOAT_VECTOR column as CSR
  ``segments/.../<field_id>.valid.npy``  a nullable field's validity mask (bool per row, False: null)
  ``segments/.../_ts.npy``           row timestamps
  ``segments/.../index-<field_id>-<index_id>.bin``  a vector index of the segment (vecdb.index.index_file)
  ``deltas/<collection>/<channel>/<position>.vcol``  deletes (pk, ts) logged up to that position
Fixed-width columns are ``.npy`` so a local store can memory-map them.

Metadata keys: ``seg/<collection>/<channel>/<position>-<partition>`` (JSON segment info),
``delta/<collection>/<channel>/<position>``, and ``ckpt/<collection>/<channel>``: the
log position up to which everything is in segment and delta files.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from collections.abc import Collection, Mapping

import numpy as np

from vecdb import function_columns, sparse
from vecdb.column_codec import decode_columns, encode_columns
from vecdb.column_defaults import absent_column, absent_mask
from vecdb.schema import CollectionSchema, DataType, valid_key
from vecdb.storage.base import MetaStore, ObjectStore
from vecdb.storage.fsutil import file_chunks


def segment_prefix(collection_id: int, channel: str, position: int, partition_id: int) -> str:
    return f"segments/{collection_id}/{channel}/{position:020d}-{partition_id}/"


def write_segment(store: ObjectStore, prefix: str, schema: CollectionSchema,
                  columns: Mapping[str, np.ndarray | list[np.ndarray]], ts: np.ndarray) -> None:
    """A column is an array or a list of arrays (row chunks, e.g. one per insert batch): chunks of a
    fixed-width column are streamed into one .npy file, never concatenated in memory."""
    for f in schema.fields:
        column = columns[f.name]
        chunks = column if isinstance(column, list) else [column]
        if f.dtype == DataType.SPARSE_FLOAT_VECTOR:
            csr = sparse.to_csr(np.concatenate(chunks) if len(chunks) > 1 else chunks[0])
            for part in _CSR_PARTS:
                store.put(f"{prefix}{f.field_id}.{part}.npy", _npy_parts([getattr(csr, part)]))
        elif chunks[0].dtype == object:
            col = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            store.put(f"{prefix}{f.field_id}.vcol", encode_columns({"v": col}, len(col)))
        else:
            store.put(f"{prefix}{f.field_id}.npy", _npy_parts(chunks))
        if f.nullable:
            mask = columns[valid_key(f.name)]
            store.put(f"{prefix}{f.field_id}.valid.npy", _npy_parts(mask if isinstance(mask, list) else [mask]))
    store.put(f"{prefix}_ts.npy", _npy_parts([ts.astype(np.uint64)]))


def read_segment(store: ObjectStore, prefix: str, schema: CollectionSchema, mmap: bool = False,
                 skip: Collection[str] = ()) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns (but those named in ``skip``) and row timestamps of one segment; a nullable field comes
    with its validity mask, keyed ``valid_key(name)``. A field the segment has no file of (added to
    the schema after it was written) reads as null in every row, or as its default value."""
    columns = {}
    ts = _load_npy(store, f"{prefix}_ts.npy", False)
    computed = []
    for f in schema.fields:
        if f.name in skip:
            continue
        if f.is_function_output and not _has_column(store, prefix, f.field_id):
            computed.append(f.name)  # written before its function was added (add_function_field)
            continue
        key = f"{prefix}{f.field_id}.npy"
        if f.dtype == DataType.SPARSE_FLOAT_VECTOR and store.exists(f"{prefix}{f.field_id}.indptr.npy"):
            parts = [_load_npy(store, f"{prefix}{f.field_id}.{p}.npy", mmap) for p in _CSR_PARTS]
            columns[f.name] = sparse.from_csr(sparse.Csr(*parts))
        elif store.exists(key):
            columns[f.name] = _load_npy(store, key, mmap)
        elif (f.nullable or f.struct_name) and not store.exists(f"{prefix}{f.field_id}.vcol"):
            # written before the field was added (add_collection_field): null, or its default value;
            # a struct's sub-field (add_collection_struct_field): no struct, an empty list
            columns[f.name] = absent_column(f, len(ts))
            if f.nullable:
                columns[valid_key(f.name)] = absent_mask(f, len(ts))
            continue
        else:
            _, cols, _ = decode_columns(store.get(f"{prefix}{f.field_id}.vcol"))
            columns[f.name] = cols["v"]
        if f.nullable:
            columns[valid_key(f.name)] = _load_npy(store, f"{prefix}{f.field_id}.valid.npy", mmap)
    for name in computed:
        needed = function_columns.input_names(schema, name)
        inputs = {k: columns[k] for k in needed if k in columns}
        if len(inputs) < len(needed):
            keep = set(needed)
            inputs, _ = read_segment(store, prefix, schema, skip=[f.name for f in schema.fields if f.name not in keep])
        col = function_columns.function_output(schema, name, inputs)
        assert col is not None  # its input is there: read just above
        columns[name] = col
    return columns, ts


def read_valid(store: ObjectStore, prefix: str, field, rows: int, mmap: bool = False) -> np.ndarray:
    """A nullable field's validity mask in a segment (every row null, or valid when it has a default
    value, for a field added after the segment was written)."""
    key = f"{prefix}{field.field_id}.valid.npy"
    return _load_npy(store, key, mmap) if store.exists(key) else absent_mask(field, rows)


def _has_column(store: ObjectStore, prefix: str, field_id: int) -> bool:
    return any(store.exists(f"{prefix}{field_id}{suffix}") for suffix in (".npy", ".indptr.npy", ".vcol"))


def read_ts(store: ObjectStore, prefix: str) -> np.ndarray:
    """A segment's row timestamps."""
    return _load_npy(store, f"{prefix}_ts.npy", False)


def read_column(store: ObjectStore, prefix: str, field, mmap: bool = False,
                schema: CollectionSchema | None = None) -> np.ndarray:
    """One fixed-width column (a vector field) of a segment; with ``schema``, a function's output the
    segment was written without is computed from its input (``read_segment``)."""
    if schema is not None and field.is_function_output and not _has_column(store, prefix, field.field_id):
        return read_segment(store, prefix, schema, skip=[f.name for f in schema.fields if f.name != field.name])[0][
            field.name]
    if field.nullable and not _has_column(store, prefix, field.field_id):  # added after the segment was
        return absent_column(field, len(read_ts(store, prefix)))  # written (add_collection_field): null rows
    return _load_npy(store, f"{prefix}{field.field_id}.npy", mmap)


_CSR_PARTS = ("indptr", "indices", "values")  # the fields of vecdb.sparse.Csr, in order


def npy_names(schema: CollectionSchema) -> list[str]:
    """The names of the .npy files a segment of ``schema`` may have (what a store caches locally to map):
    row timestamps, fixed-width columns and sparse columns' CSR parts."""
    names = ["_ts.npy"]
    for f in schema.fields:
        if f.dtype == DataType.SPARSE_FLOAT_VECTOR:
            names += [f"{f.field_id}.{part}.npy" for part in _CSR_PARTS]
        else:
            names.append(f"{f.field_id}.npy")
        if f.nullable:
            names.append(f"{f.field_id}.valid.npy")
    return names


# Segments smaller than this are searched exactly: an index would not pay for itself.
MIN_ROWS_FOR_INDEX = 1024


def index_key(prefix: str, field_id: int, index_id: int) -> str:
    return f"{prefix}index-{field_id}-{index_id}.bin"


def save_index(store: ObjectStore, index, key: str) -> None:
    """Write a vector index under ``key``, streamed from a temporary file (never one buffer)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        index.save(path)
        store.put(key, file_chunks(path))


def write_delta(store: ObjectStore, key: str, pks: np.ndarray, ts: np.ndarray,
                partition_ids: np.ndarray | None = None) -> None:
    """``partition_ids``: each delete's partition (a delete with a ``partition_name`` hits that partition's
    rows only; -1: every partition), kept only when some delete has one (a file without: every partition)."""
    cols = {"pk": pks, "ts": ts.astype(np.uint64)}
    if partition_ids is not None and bool((partition_ids != -1).any()):
        cols["partition"] = np.asarray(partition_ids, np.int64)
    store.put(key, encode_columns(cols, len(pks)))


def read_delta(store: ObjectStore, key: str) -> tuple[np.ndarray, np.ndarray]:
    pks, ts, _ = read_delta_scoped(store, key)
    return pks, ts


def read_delta_scoped(store: ObjectStore, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(primary keys, timestamps, partition ids: -1 where a delete hits every partition) of a delta file."""
    _, cols, _ = decode_columns(store.get(key))
    scoped = cols.get("partition")
    pids = np.asarray(scoped, np.int64) if scoped is not None else np.full(len(cols["pk"]), -1, np.int64)
    return cols["pk"], cols["ts"], pids


def _npy_parts(chunks: list[np.ndarray]) -> list:
    """An .npy file as parts: its header, then each chunk's bytes (no copy of the data)."""
    first = chunks[0]
    shape = (sum(len(c) for c in chunks),) + first.shape[1:]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False, "shape": shape})
    return [header.getvalue()] + [np.ascontiguousarray(c, dtype=first.dtype) for c in chunks]


def _load_npy(store: ObjectStore, key: str, mmap: bool) -> np.ndarray:
    path = store.local_path(key)
    if path is None:
        return _read_npy(io.BytesIO(store.get(key)), None)
    with open(path, "rb") as f:
        return _read_npy(f, path if mmap else None)


# The header ``_npy_parts`` writes (format 1.0, a number or bool dtype, C order), parsed here: ``np.load``
# parses every header as Python source (``ast.literal_eval``) and reads a file with ``np.fromfile`` (which
# dups the descriptor): 77 us for a small column file where this takes 12, and a restart with thousands of
# small segments loaded spent a fifth of its time there. And ``ast`` is not thread-safe in CPython 3.11
# (gh-106905): a restart's loads beside the compactor's reads failed now and then with "SystemError: AST
# constructor recursion depth mismatch" (2,000 collections: about one start in six did not come up). Any
# other header (a scalar, a structured or fixed-bytes dtype, Fortran order, a newer format) goes to np.load.
_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|][biuf]\d{1,2})', 'fortran_order': False, 'shape': \((\d+(?:, \d+)*),?\), \} *\n")
_NPY_PREAMBLE = 10  # magic (6 bytes), version (2), header length (uint16 little-endian)


def _read_npy(f: io.BufferedIOBase, map_path: str | None) -> np.ndarray:
    """``np.load(f, allow_pickle=False)``, or with ``map_path`` (``f``'s file) ``np.load(map_path,
    mmap_mode="r")``: the same array."""
    pre = f.read(_NPY_PREAMBLE)
    m = None
    if len(pre) == _NPY_PREAMBLE and pre[:8] == b"\x93NUMPY\x01\x00":
        m = _NPY_HEADER.fullmatch(f.read(int.from_bytes(pre[8:], "little")))
    if m is not None:
        dtype, shape = np.dtype(m.group(1).decode()), tuple(int(d) for d in m.group(2).split(b","))
        if map_path is None:
            array = np.empty(shape, dtype)
            if f.readinto(array.data) != array.nbytes:
                raise ValueError(f"failed to read all data for an array of shape {shape}")
            return array
        if math.prod(shape):  # (np.memmap refuses an empty file; np.load's error, below)
            return np.memmap(map_path, dtype, mode="r", offset=f.tell(), shape=shape)
    if map_path is not None:
        return np.load(map_path, mmap_mode="r", allow_pickle=False)
    f.seek(0)
    return np.load(f, allow_pickle=False)


# --- metadata -----------------------------------------------------------------
def checkpoint(meta: MetaStore, collection_id: int, channel: str) -> int:
    raw = meta.get(f"ckpt/{collection_id}/{channel}")
    return int(raw) if raw else 0


def list_segments(meta: MetaStore, collection_id: int, channel: str) -> list[dict]:
    return [json.loads(v) for _, v in meta.scan(f"seg/{collection_id}/{channel}/")]


def list_deltas(meta: MetaStore, collection_id: int, channel: str) -> list[str]:
    return [v.decode() for _, v in meta.scan(f"delta/{collection_id}/{channel}/")]


def persisted_state(meta: MetaStore, collection_id: int, channel: str) -> tuple[int, list[dict], list[str]]:
    """(checkpoint, segment infos, delta keys) of one channel, as one flush left them: a flush
    commits its segments, deltas and the checkpoint in one transaction, so lists read while the
    checkpoint did not move belong together. Read apart from it, a flush committing in between
    would give the old segments with the new checkpoint, and the rows of the new segment would
    be neither loaded nor replayed from the log. A compaction commits without moving the
    checkpoint, but always deletes segment keys: the segment list is read again after the
    deltas (a compaction in between would give its sources without the deltas it folded)."""
    while True:
        start = checkpoint(meta, collection_id, channel)
        seg_pairs = meta.scan(f"seg/{collection_id}/{channel}/")
        deltas = list_deltas(meta, collection_id, channel)
        if (meta.scan(f"seg/{collection_id}/{channel}/") == seg_pairs
                and checkpoint(meta, collection_id, channel) == start):
            return start, [json.loads(v) for _, v in seg_pairs], deltas

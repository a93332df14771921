"""Segments: the rows of one partition of one shard, column by column.

A segment grows by appends (capacity-doubling buffers, so readers can take
``buf[:n]`` views without copying while a writer appends behind them) until a
seal freezes it. Every row carries its insert timestamp ``ts`` and a delete
timestamp ``del_ts`` (``MAX_TIMESTAMP`` while alive). A reader at snapshot ``T``
sees row i iff ``ts[i] <= T < del_ts[i]``, and, in a collection with a TTL, ``ts[i] > E`` (the
snapshot's expiry bound, ``T`` less the TTL).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from vecdb.column_defaults import absent_column, absent_mask, empty_column, missing_column
from vecdb.function_columns import function_output
from vecdb.index.base import VectorIndex
from vecdb.schema import CollectionSchema, valid_key
from vecdb.timestamp import MAX_TIMESTAMP

_MIN_CAPACITY = 1024


class Segment:
    """``stub``: a segment of which this node keeps only the primary keys and row timestamps (a
    cluster query node that does not serve it: another node of its replica does, see
    ``vecdb.coord.assignment``). A stub takes deletes and supersedes rows like any segment, so the
    node's primary-key index spans the whole channel, but it is never read."""

    def __init__(self, slot: int, partition_id: int, schema: CollectionSchema, capacity: int = _MIN_CAPACITY,
                 stub: bool = False):
        self.slot = slot
        self.stub = stub
        self.partition_id = partition_id
        self.schema = schema
        self.sealed = False
        self.segment_id: int | None = None  # set once persisted by a data node
        self.prefix: str | None = None  # where its files live in the object store, once sealed
        self.n = 0
        self.max_ts = 0  # newest row timestamp
        self.min_ts = MAX_TIMESTAMP  # oldest row timestamp: no row expires before it
        self.min_del_ts = MAX_TIMESTAMP  # oldest delete timestamp: rows are all visible before it
        self.indexes: dict[str, VectorIndex] = {}  # field name -> VectorIndex (sealed segments)
        # Interim indexes over a prefix of the rows, built in the background while the segment
        # grows (and until its sealed index is ready); the rest is searched exactly.
        self.growing_indexes: dict[str, VectorIndex] = {}
        self.index_lock = threading.Lock()
        self._cols = {f.name: empty_column(f, capacity) for f in schema.fields
                      if not stub or f.name == schema.primary_field.name}
        self._ts = np.empty(capacity, np.uint64)
        self._del_ts = np.empty(capacity, np.uint64)
        for f in schema.fields:  # a nullable field's validity mask, a column of its own (vecdb.column_defaults)
            if f.nullable and f.name in self._cols:
                self._cols[valid_key(f.name)] = np.empty(capacity, np.bool_)

    @classmethod
    def from_columns(cls, slot: int, partition_id: int, schema: CollectionSchema,
                     columns: Mapping[str, np.ndarray], ts: np.ndarray, del_ts: np.ndarray,
                     stub: bool = False) -> Segment:
        """A sealed segment over existing arrays (loaded from files; may be memory-mapped); a
        ``stub`` needs only the primary key column."""
        seg = cls.__new__(cls)
        seg.slot, seg.partition_id, seg.schema, seg.stub = slot, partition_id, schema, stub
        seg.sealed, seg.segment_id, seg.prefix, seg.n = True, None, None, len(ts)
        seg.max_ts = int(ts.max()) if len(ts) else 0
        seg.min_ts = int(ts.min()) if len(ts) else MAX_TIMESTAMP
        seg.min_del_ts = int(np.min(del_ts)) if len(del_ts) else MAX_TIMESTAMP
        seg.indexes, seg.growing_indexes, seg.index_lock = {}, {}, threading.Lock()
        seg._cols = dict(columns)
        seg._ts = np.asarray(ts, np.uint64)
        seg._del_ts = np.array(del_ts, np.uint64)  # writable copy: deletes land here
        return seg

    def stubbed(self) -> Segment:
        """This segment as a stub: the same slot, keys, timestamps and delete timestamps (the very
        arrays: a delete marked on either lands in both), without its other columns and indexes."""
        seg = Segment.__new__(Segment)
        # caches kept on the segment (sparse postings, BM25 lengths...) stay with the full one
        keep = {"_cols", "_ts", "_del_ts"}
        seg.__dict__.update((k, v) for k, v in self.__dict__.items() if not k.startswith("_") or k in keep)
        pk = self.schema.primary_field.name
        seg.stub, seg._cols = True, {pk: self._cols[pk]}
        seg.indexes, seg.growing_indexes, seg.index_lock = {}, {}, threading.Lock()
        return seg

    def adopt_deletes(self, stub: Segment) -> None:
        """Take ``stub``'s delete timestamps (the same rows, in the same order): this segment
        replaces it, and deletes marked on it meanwhile must stay."""
        self._del_ts, self.min_del_ts = stub._del_ts, stub.min_del_ts

    # --- writes (caller holds the shard lock) --------------------------------
    def append(self, columns: Mapping[str, np.ndarray], count: int, ts: int) -> int:
        """Append ``count`` rows; returns the offset of the first one."""
        start, end = self.n, self.n + count
        if end > len(self._ts):
            self._grow(end)
        for name, buf in self._cols.items():
            col = columns.get(name)
            if col is None:  # written before a field or function was added: null, default, or computed
                col = function_output(self.schema, name, columns)
            if col is None:
                col = missing_column(self.schema, name, count, columns)
            buf[start:end] = col
        self._ts[start:end] = ts
        self._del_ts[start:end] = MAX_TIMESTAMP
        self.max_ts = max(self.max_ts, ts)
        self.min_ts = min(self.min_ts, ts)
        self.n = end  # publish after the data is in place
        return start

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * len(self._ts), _MIN_CAPACITY)
        for name, buf in list(self._cols.items()):
            new = np.empty((cap,) + buf.shape[1:], buf.dtype)
            new[: self.n] = buf[: self.n]
            self._cols[name] = new
        for attr in ("_ts", "_del_ts"):
            old = getattr(self, attr)
            new = np.empty(cap, np.uint64)
            new[: self.n] = old[: self.n]
            setattr(self, attr, new)

    def follow(self, schema: CollectionSchema) -> None:
        """``take_schema`` for a segment built outside the shard lock and installed under it: from files
        read, or columns gathered, before a field was added, it may lack the column of a field the shard
        took meanwhile (a read asking for it failed with a KeyError)."""
        if self.schema.version != schema.version or any(f.name not in self._cols for f in schema.fields):
            self.take_schema(schema)

    def take_schema(self, schema: CollectionSchema) -> None:
        """Follow a changed schema (caller holds the shard lock). A field added (add_collection_field)
        gets a column (and validity mask) over the rows so far, as ``absent_column`` reads them; a
        function's output added (add_function_field) gets the output computed from its input
        (``vecdb.function_columns``); both in the buffer's whole capacity so appends carry on. A field
        dropped (drop_collection_field) loses its column and indexes, as does a name that now means
        another field (another id). A stub keeps its keys only."""
        if not self.stub:
            cap, cols = len(self._ts), dict(self._cols)  # swapped in whole: readers may be iterating it
            kept = {f.name for f in schema.fields if (old := self.schema.field(f.name)) is not None
                    and old.field_id == f.field_id}
            cols = {k: v for k, v in cols.items() if (k[len(valid_key("")):] if k.startswith(valid_key(""))
                                                      else k) in kept}
            for f in schema.fields:
                if f.name in cols:
                    continue
                cols[f.name] = self._new_column(schema, f, cols, cap)
                if f.nullable:
                    cols[valid_key(f.name)] = absent_mask(f, cap)
            self._cols = cols
            for held in (self.indexes, self.growing_indexes):
                for name in [k for k in held if k not in kept]:
                    held.pop(name, None)
        self.schema = schema

    def _new_column(self, schema: CollectionSchema, f, cols: dict[str, np.ndarray], cap: int) -> np.ndarray:
        n = self.n
        computed = function_output(schema, f.name, {k: v[:n] for k, v in cols.items()})
        if computed is None:
            return absent_column(f, cap)
        if len(computed) == cap:
            return computed
        col = empty_column(f, cap)
        col[:n] = computed
        return col

    def mark_deleted(self, offsets: np.ndarray, ts) -> None:
        """Rows die at ``ts`` (a scalar or one timestamp per offset); an earlier death stands."""
        if not len(offsets):
            return
        ts = np.asarray(ts, np.uint64)
        d = self._del_ts
        d[offsets] = np.minimum(d[offsets], ts)
        self.min_del_ts = min(self.min_del_ts, int(ts.min()))

    def seal(self) -> None:
        """Freeze at ``n`` rows. The buffers are cut to views, not copied: capacity past ``n`` was
        never written, so it holds no resident memory, and a copy would double the peak."""
        n = self.n
        self._cols = {k: v[:n] for k, v in self._cols.items()}
        self._ts = self._ts[:n]
        self._del_ts = self._del_ts[:n]
        self.sealed = True

    def share_column(self, name: str, stored: np.ndarray | None) -> bool:
        """Serve a sealed vector column from ``stored`` (an index's own copy of the same rows, see
        VectorIndex.raw_vectors) and free this segment's copy: one copy of the vectors, not two.
        Only an in-memory column equal to ``stored`` is replaced; a memory-mapped one stays."""
        col = self._cols.get(name)
        if (stored is None or col is None or not self.sealed or isinstance(col, np.memmap)
                or col.shape != stored.shape or col.dtype != stored.dtype or not np.array_equal(col, stored)):
            return False
        self._cols[name] = stored
        return True

    # --- reads ------------------------------------------------------------
    def column(self, name: str, n: int | None = None) -> np.ndarray:
        return self._cols[name][: self.n if n is None else n]

    def ts(self, n: int | None = None) -> np.ndarray:
        return self._ts[: self.n if n is None else n]

    def del_ts(self, n: int | None = None) -> np.ndarray:
        return self._del_ts[: self.n if n is None else n]

    def pks(self, n: int | None = None) -> np.ndarray:
        return self.column(self.schema.primary_field.name, n)

    def visible(self, snapshot_ts: int, n: int, expired_at: int = 0) -> np.ndarray | None:
        """Rows [0, n) visible at ``snapshot_ts``, those written at or before ``expired_at`` excepted (a
        collection's TTL); None means all of them (the common case, no scan)."""
        expiring = self.min_ts <= expired_at
        if self.max_ts <= snapshot_ts < self.min_del_ts and not expiring:
            return None
        t = np.uint64(snapshot_ts)
        mask = (self._ts[:n] <= t) & (self._del_ts[:n] > t)
        if expiring:
            mask &= self._ts[:n] > np.uint64(expired_at)
        return mask

    def value_range(self, name: str) -> np.ndarray | None:
        """``[smallest, largest]`` of a sealed segment's scalar column ``name`` (every stored value, a null
        row's placeholder too), as an array of the column's dtype; computed once (a sealed segment never
        changes). None when the segment grows, is empty or a stub, or holds a NaN."""
        if not self.sealed or self.stub or not self.n:
            return None
        ranges = self.__dict__.setdefault("_value_ranges", {})
        if name not in ranges:
            col = self.column(name)
            if col.dtype == object:
                try:
                    ranges[name] = np.array([min(col), max(col)], dtype=object)
                except TypeError:  # values that do not order (a VARCHAR column holds str only)
                    ranges[name] = None
            elif col.dtype.kind == "f" and np.isnan(col).any():
                ranges[name] = None
            else:
                ranges[name] = np.array([col.min(), col.max()], dtype=col.dtype)
        return ranges[name]

    def alive_count(self) -> int:
        return int(np.count_nonzero(self._del_ts[: self.n] == MAX_TIMESTAMP))

    def column_names(self) -> list[str]:
        return list(self._cols)

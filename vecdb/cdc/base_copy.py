"""A CDC task's base copy (``"start": "copy"``): the rows a source collection already holds, read
through the source's Milvus API and upserted into the target, before its log is followed.

A source that has run for a while has cut its log below what it persisted (flush, truncation), so
following the log alone, even from its oldest record, cannot give a new target the rows written
long ago. With start ``copy``, each collection the task takes up that already exists on the source:

1. gets its channels' current end positions recorded as the task's positions, with a ``pending``
   copy mark, in one step (``TaskStore.add_collection``); the channels are followed from there at
   once, so the task's follower positions (``vecdb.cdc.follower``) hold the source's log back from
   that point during the copy, but nothing is applied from them yet (the replicator's pump skips
   the channels of a collection whose copy is pending);
2. is copied: partition by partition (one pass over the collection for a partition key; namespace
   by namespace in partition-mode namespaces), pages of ``COPY_BATCH`` rows of every field read in
   primary-key order (``Pages``: Strong consistency, one snapshot taken after step 1), upserted by primary key
   into the target collection (created by the catalog pass; auto_id off, so the keys go as they
   are) with the replicator's row writing (``upsert_rows``); function outputs (BM25 sparse vectors
   ...) are left out, the target computes them from the copied input as for the log's rows;
3. gets its copy mark deleted (``TaskStore.copy_done``); from then on its channels are applied from
   the positions recorded in step 1.

Why the target converges: the snapshot is read after the recorded positions, so every key's copied
value is its state at some moment after them; the log replayed from those positions then applies,
in order, every change made after them (upserts and deletes by primary key), so a key changed after
the positions ends at its last change, and a key not changed after them keeps its copied value,
which is its current one. Nothing is applied from the log before the copy ends, so no older copied
value overwrites a newer replayed one. The same argument makes a copy done again harmless: a task
stopped (or failing) in the middle of a copy keeps its recorded positions and copies the collection
again (within one run, after an error, from the primary key it had reached: the keys below it were
already copied after the positions).

Collections created on the source after the task was created are followed from their beginning and need
no copy, but for one whose log the source already cut when the task first sees it (created while the
task was stopped, then flushed): that one is copied as an existing one. Not copied: collections with
namespaces in partition_key mode (no API lists their namespaces, and a read must name one): logged, and
followed from the recorded positions only. Rows that expired (collection TTL) are not read, and copied
rows get the target's timestamps. A collection not loaded on the source cannot be queried: its copy
waits (logged, the task's ``last_error`` says why) while the other collections are copied, and starts
once it is loaded.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from vecdb import namespaces
from vecdb.catalog_model import CollectionInfo
from vecdb.cdc.target import Target, pk_literal, upsert_rows
from vecdb.schema import DataType

if TYPE_CHECKING:
    from vecdb.cdc.replicator import Replicator

log = logging.getLogger(__name__)

COPY_BATCH = 1000  # rows per page read from the source (and per upsert)
LOAD_RECHECK = 2.0  # seconds before a collection not loaded on the source has its load state asked again


class _Cursor:
    """Where the copy of one collection stands: its units (partition / namespace reads) and, in the
    unit being read, the last primary key copied."""

    def __init__(self, cid: int):
        self.cid = cid
        self.done_units: set[tuple[str | None, str | None]] = set()
        self.last_pk: Any = None
        self.it: Any = None
        self.unit: tuple[str | None, str | None] | None = None
        self.rows = 0

    def close(self) -> None:
        if self.it is not None:
            try:
                self.it.close()
            except Exception:  # noqa: BLE001 (the source went away)
                pass
            self.it = None


class BaseCopy:
    """The base copies a replicator still has to do, one page per ``step()`` on its own thread (so its
    channels keep being pumped and its follower positions published between pages)."""

    def __init__(self, rep: Replicator):
        self.rep = rep
        self.pending: dict[int, None] = {}  # collection ids, in the order they are copied
        self._cursor: _Cursor | None = None
        self._source: Target | None = None
        self._unloaded: dict[int, float] = {}  # not loaded on the source: collection id -> when to ask again
        self._released: dict[int, list[str]] = {}  # of those, loaded but with these partitions released
        self.problem = ""  # why a copy waits (collections not loaded on the source); the task's last_error

    def take(self, cids: set[int]) -> None:
        """The collections whose copy is pending now (``TaskStore.copies``, of the collections the task
        replicates); a collection that left (dropped on the source) stops being copied."""
        for cid in [c for c in self.pending if c not in cids]:
            del self.pending[cid]
            self._unloaded.pop(cid, None)
            self._released.pop(cid, None)
            if self._cursor is not None and self._cursor.cid == cid:
                self._cursor.close()
                self._cursor = None
        for cid in sorted(cids):
            self.pending.setdefault(cid, None)
        self._report()

    def restart(self, cid: int) -> None:
        """The collection's copy begun again from its first row, at a new snapshot (its target
        collection was emptied: ``vecdb.cdc.log_order``); pending from now on."""
        if self._cursor is not None and self._cursor.cid == cid:
            self._cursor.close()
            self._cursor = None
        self.pending.setdefault(cid, None)

    def step(self) -> bool:
        """Copy one page of the first pending collection; whether there was anything to do. A failure
        closes the read (the next step reads again from the last key copied) and is raised."""
        now = time.monotonic()
        cid = next((c for c in self.pending if self._unloaded.get(c, 0.0) <= now), None)
        if cid is None:  # nothing pending, or only collections waiting to be loaded on the source
            return False
        try:
            self._step(cid)
        except BaseException:
            self.reset()
            raise
        self._report()
        return True

    def reset(self) -> None:
        """After a failure: the source connection and the open read closed, the position kept."""
        if self._cursor is not None:
            self._cursor.close()
        if self._source is not None:
            self._source.close()
            self._source = None

    def close(self) -> None:
        self.reset()
        self._cursor = None

    def _report(self) -> None:
        p = self.rep.progress
        p.copy_pending = len(self.pending)
        info = self.rep._colls.get(next(iter(self.pending))) if self.pending else None
        p.copying = f"{info.db}.{info.name}" if info is not None else ""
        names = [f"{i.db}.{i.name}" + (f" (partitions {', '.join(self._released[c])})" if self._released.get(c) else "")
                 for c, i in ((c, self.rep._colls.get(c)) for c in self._unloaded) if i is not None]
        self.problem = (f"{', '.join(names)} not loaded on the source: the base copy reads rows through its "
                        f"Milvus API, which needs the collection loaded; load it there (its copy and its log "
                        f"wait; the other collections go on)") if names else ""

    def _step(self, cid: int) -> None:
        rep = self.rep
        if self._cursor is None or self._cursor.cid != cid:
            self._cursor = _Cursor(cid)
        cur = self._cursor
        info = rep._reread(cid)  # read after the positions were recorded: every partition the copy needs
        if info is None:  # dropped on the source: the catalog pass takes it away
            return
        if cur.it is None:
            if not self._loaded(info):
                return
            units = [u for u in self._units(info) if u not in cur.done_units]
            if not units:
                self._finish(info, cur)
                return
            if cur.unit != units[0]:
                cur.unit, cur.last_pk = units[0], None
            cur.it = self._open(info, cur)
        page = cur.it.next()
        if not page:
            cur.close()
            assert cur.unit is not None
            cur.done_units.add(cur.unit)
            cur.unit, cur.last_pk = None, None
            return
        self._write(info, cur, page)

    @staticmethod
    def readable(info: CollectionInfo) -> bool:
        """Whether the collection's rows can be read through the Milvus API: not with namespaces in
        partition_key mode (no API lists them, and a read must name one)."""
        return namespaces.mode_of(info.schema, info.properties) != namespaces.PARTITION_KEY_MODE

    def _units(self, info: CollectionInfo) -> list[tuple[str | None, str | None]]:
        """``(partition, namespace)`` reads covering the collection's rows."""
        mode = namespaces.mode_of(info.schema, info.properties)
        if not self.readable(info):
            log.warning("cdc task %s: %s.%s has namespaces in partition_key mode, which cannot be listed: its "
                        "existing rows are not copied, only the changes after the task took it up",
                        self.rep.task.id, info.db, info.name)
            return []
        if mode == namespaces.PARTITION_MODE:
            return [(None, p.name) for p in info.partitions]
        if info.schema.partition_key_field is not None:
            return [(None, None)]
        return [(p.name, None) for p in info.partitions]

    def _loaded(self, info: CollectionInfo) -> bool:
        """Whether the source has the collection loaded, and each partition the copy reads one by one
        (a query needs it: a partition released while the collection stays loaded answered "partition
        not loaded" to every try, and the pending copies behind it waited for good); if not, it waits
        ``LOAD_RECHECK`` seconds (the other pending copies go first), logged once."""
        from vecdb.cdc.verify import is_loaded

        client = self._client(info.db)
        released: list[str] = []
        if is_loaded(client, info.name):
            parts = ([] if info.schema.partition_key_field is not None or not self.readable(info)
                     else [p.name for p in info.partitions])
            released = [p for p in parts if not is_loaded(client, info.name, p)]
            if not released:
                self._unloaded.pop(info.id, None)
                self._released.pop(info.id, None)
                return True
        if info.id not in self._unloaded:
            what = f" (partitions {', '.join(released)} released)" if released else ""
            log.warning("cdc task %s: %s.%s is not loaded on the source%s: its base copy waits until it is loaded "
                        "there (its log is held and applied after the copy)", self.rep.task.id, info.db, info.name,
                        what)
        self._unloaded[info.id] = time.monotonic() + LOAD_RECHECK
        self._released[info.id] = released
        return False

    def _client(self, db: str):
        if self._source is None:
            src = self.rep.task.spec.source
            self._source = Target(src["uri"], src.get("token", ""))
        return self._source.client(db)

    def _open(self, info: CollectionInfo, cur: _Cursor):
        assert cur.unit is not None
        partition, ns = cur.unit
        # "*": every field of the schema (vectors too) and the dynamic field's keys
        out = ["*"] + [f.name for f in info.schema.fields
                       if f.dtype.is_vector and not f.is_hidden and not f.is_function_output and not f.struct_name]
        kw: dict[str, Any] = {}
        if partition is not None:
            kw["partition_names"] = [partition]
        if ns is not None:
            kw["namespace"] = ns
        return Pages(self._client(info.db), info.name, info.schema.primary_field.name,
                     info.schema.primary_field.dtype == DataType.VARCHAR, out, COPY_BATCH, cur.last_pk, kw)

    def _write(self, info: CollectionInfo, cur: _Cursor, page: list) -> None:
        rep = self.rep
        assert rep._target is not None and cur.unit is not None
        pk = info.schema.primary_field.name
        rows = _writable(info, page)
        partition, ns = cur.unit
        pname = ns if ns is not None else (partition or "")
        db, name = rep._place(info)
        upsert_rows(rep._target.client(db), name, rows, pname, ns, rep._target.timeout)
        cur.last_pk = rows[-1][pk]
        cur.rows += len(rows)
        rep.progress.copied_rows += len(rows)

    def _finish(self, info: CollectionInfo, cur: _Cursor) -> None:
        rep = self.rep
        rep.store.copy_done(rep.task.id, cur.cid)
        del self.pending[cur.cid]
        self._cursor = None
        log.info("cdc task %s copied %d rows of %s.%s; following its log from the positions recorded before the copy",
                 rep.task.id, cur.rows, info.db, info.name)


class Pages:
    """The rows of a collection (one partition / namespace), page by page in primary-key order: queries
    with a limit (``iterator``: rows sorted by primary key) and ``pk > <last key>``, the first at Strong
    consistency, the others at its snapshot (``iterator_session_ts`` passed back as
    ``guarantee_timestamp``), as pymilvus's ``query_iterator`` reads. That iterator is not used: it
    writes a VARCHAR key into its next filter unescaped (``pk > "a"b"``), so a key holding a quote, a
    backslash or a line break ends the read with a parse error. ``next()`` returns ``[]`` at the end,
    as an iterator's does."""

    def __init__(self, client, name: str, pk: str, pk_str: bool, output_fields: list[str], batch: int,
                 after: Any = None, kw: dict[str, Any] | None = None):
        self.client, self.name, self.pk, self.pk_str = client, name, pk, pk_str
        self.out, self.batch, self.last, self.kw = output_fields, batch, after, dict(kw or {})
        self.done = False

    def next(self) -> list:
        if self.done:
            return []
        flt = "" if self.last is None else f"{self.pk} > {pk_literal(self.last, self.pk_str)}"
        page = self.client.query(self.name, filter=flt, output_fields=self.out, limit=self.batch,
                                 consistency_level="Strong", iterator="True", **self.kw)
        ts = (getattr(page, "extra", None) or {}).get("iterator_session_ts", 0)
        if ts and "guarantee_timestamp" not in self.kw:
            self.kw["guarantee_timestamp"] = ts
        if len(page) < self.batch:
            self.done = True
        if page:
            self.last = page[-1][self.pk]
        return list(page)

    def close(self) -> None:
        self.done = True


_BYTE_VECTORS = (DataType.BINARY_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR, DataType.INT8_VECTOR)


def _writable(info: CollectionInfo, page: list) -> list[dict]:
    """The rows a query returned as an upsert takes them: function outputs (and hidden fields) left
    out; a JSON field's string value as JSON text (pymilvus parses a str it is given: ``"just a
    string"`` would be refused, ``"123"`` stored as the number 123); a byte vector, which a query
    returns as ``[bytes]``, as its bytes (an INT8_VECTOR as np.int8, as ``target.rows_of`` sends
    them)."""
    drop = [f.name for f in info.schema.fields if f.is_function_output or f.is_hidden]
    texts = [f.name for f in info.schema.fields if f.dtype == DataType.JSON and not f.is_hidden and not f.struct_name]
    unwrap = [(f.name, f.dtype == DataType.INT8_VECTOR) for f in info.schema.fields
              if f.dtype in _BYTE_VECTORS and not f.is_function_output and not f.struct_name]
    rows = [dict(r) for r in page]
    for row in rows:
        for name in drop:
            row.pop(name, None)
        for name in texts:  # a JSON string value: pymilvus reads a str as JSON text ("123" would become 123)
            v = row.get(name)
            if isinstance(v, str):
                row[name] = json.dumps(v, ensure_ascii=False)
        for name, int8 in unwrap:
            v = row.get(name)
            if isinstance(v, list) and len(v) == 1 and isinstance(v[0], bytes):
                row[name] = np.frombuffer(v[0], np.int8) if int8 else v[0]
    return rows

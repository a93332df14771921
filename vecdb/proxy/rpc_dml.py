"""RPCs: insert, upsert, delete, flush."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors, namespaces
from vecdb.catalog_model import DEFAULT_DB, DEFAULT_PARTITION, CollectionInfo
from vecdb.coord.flush import caller_deadline
from vecdb.coord.sealer import channel_bytes, row_sizes
from vecdb.expr import ast, compile_filter
from vecdb.expr import predicates as preds
from vecdb.expr.filter import KeyFilter
from vecdb.expr.lexer import INT64_MAX, INT64_MIN, syntax_error
from vecdb.expr.limits import MAX_EXPR_LENGTH
from vecdb.expr.local_time import localize_iso_literals
from vecdb.expr.parser import parse
from vecdb.external_tables import refuse_write
from vecdb.log_records import DeleteRecord, InsertRecord, Record
from vecdb.proxy import status
from vecdb.proxy.base import PARTITION_KEY_NAMES, ServiceBase, hash_keys, rpc
from vecdb.proxy.field_ops import apply_field_ops, parse_field_ops
from vecdb.proxy.fielddata import columns_from_field_data, function_output_columns, left_out_columns
from vecdb.proxy.quota import admit_collection, admit_database
from vecdb.proxy.results import ids_proto
from vecdb.proxy.templates import template_values
from vecdb.request_db import db_of
from vecdb.schema import DataType, valid_key
from vecdb.timestamp import physical_ms

log = logging.getLogger(__name__)

_PK_IN = re.compile(r"^\s*\(?\s*([A-Za-z_]\w*)\s+in\s+(\[.*\])\s*\)?\s*$", re.S)
_PK_EQ = re.compile(r"^\s*([A-Za-z_]\w*)\s*==\s*(-?\d+|\"[^\"\\]*\"|'[^'\\]*')\s*$")
# What the fast path reads: plain decimal ints (no leading zero: the filter language reads 010 as
# octal) or plain quoted strings without escapes; anything else (1_000, 0x10, escapes) goes to the
# compiler.
_PLAIN_VALUE = re.compile(r"-?(?:0|[1-9]\d*)|\"[^\"\\]*\"|'[^'\\]*'")
_PLAIN_ITEM = rf"\s*(?:{_PLAIN_VALUE.pattern})\s*"
_PLAIN_LIST = re.compile(rf"^\[(?:{_PLAIN_ITEM}(?:,{_PLAIN_ITEM})*,?\s*)?\]$")

# Rows of one insert record at most (their ``batch_bytes``), or a delete's keys: a larger batch goes in
# several records of one append (one timestamp, visible together). NATS JetStream's file store refuses
# any stored message of 32 MiB or more, whatever ``max_payload`` says, so a 36 MB insert (1,000 chunks
# of 30 kB text) that standalone took failed in a cluster with "atomic publish batch is incomplete"
# (found by a bug hunt, 2026-12-08).
RECORD_BYTES = 16 << 20


def _last_of_each_key(columns: dict, pk_name: str, n: int) -> tuple[dict, int]:
    """A batch's rows less the earlier rows of a repeated primary key: the last one wins, as where the
    batch is one log record (the query node keeps its last row of a key). A partition key splits a
    batch into a record per partition, all at one timestamp, so there the records' order decided."""
    if n < 2:
        return columns, n
    _, last_rev = np.unique(columns[pk_name][::-1], return_index=True)
    if len(last_rev) == n:
        return columns, n
    keep = np.sort(n - 1 - last_rev)
    return {k: v[keep] for k, v in columns.items()}, len(keep)


def _pieces(pid: int, rows: np.ndarray | None, n: int, sizes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """A partition's rows of a channel (None: all ``n``) as consecutive pieces of at most ``RECORD_BYTES``
    each (a row larger than that alone), in order."""
    rows = np.arange(n) if rows is None else rows
    ends = np.cumsum(sizes[rows])
    out, start = [], 0
    while start < len(rows):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + RECORD_BYTES, side="right")))
        out.append((pid, rows[start:stop]))
        start = stop
    return out


def _key_pieces(pks: np.ndarray) -> list[np.ndarray]:
    """A delete's keys of one channel as consecutive pieces of at most ``RECORD_BYTES`` each (a string key
    counted at 4 bytes a character, UTF-8's most): 2M int64 keys a piece."""
    if pks.dtype != object:
        step = RECORD_BYTES // pks.itemsize
        return [pks[i:i + step] for i in range(0, len(pks), step)]
    sizes = np.fromiter(map(len, pks), np.int64, len(pks)) * 4
    return [pks[r] for _, r in _pieces(-1, None, len(pks), sizes)]


class DmlRpcs(ServiceBase):
    # --- insert / upsert -----------------------------------------------------------
    def _check_size(self, request) -> None:
        size = request.ByteSize()
        if size > self.r.max_request_bytes:
            raise errors.ParameterTooLarge(
                f"request size {size} bytes exceeds the limit of {self.r.max_request_bytes} bytes; split the batch")

    def _route(self, info: CollectionInfo, columns: dict, n: int, partition_name: str):
        """Group rows by destination: {channel: [(partition id, row indices, or None for all rows)]}."""
        schema = info.schema
        pkey = schema.partition_key_field
        if pkey is not None:
            if partition_name and partition_name != DEFAULT_PARTITION:
                raise errors.InvalidParameter(PARTITION_KEY_NAMES)
            part_of_row = hash_keys(columns[pkey.name], info.num_partitions)
            part_ids = np.array([p.id for p in info.partitions], np.int64)[part_of_row]
        else:
            part_ids = np.full(n, info.partition(partition_name or DEFAULT_PARTITION).id, np.int64)
        shard_of_row = hash_keys(columns[schema.primary_field.name], info.shards_num)
        groups: dict[str, list] = {}
        if pkey is None and info.shards_num == 1:
            groups[info.channels[0]] = [(int(part_ids[0]) if n else 0, None)]
            return groups
        key = shard_of_row * (1 << 40) + np.unique(part_ids, return_inverse=True)[1]
        for k in np.unique(key).tolist():
            rows = np.flatnonzero(key == k)
            groups.setdefault(info.channels[k >> 40], []).append((int(part_ids[rows[0]]), rows))
        return groups

    def _write_rows(self, info: CollectionInfo, columns: dict, n: int, partition_name: str) -> int:
        pk_name = info.schema.primary_field.name
        unique = info.schema.partition_key_field is not None
        if unique:
            columns, n = _last_of_each_key(columns, pk_name, n)
        sizes = row_sizes(info.schema, columns, n)
        split = sizes is not None and int(sizes.sum()) > RECORD_BYTES
        if split and not unique:  # no key in two pieces, so their order decides nothing (the last row wins)
            columns, kept = _last_of_each_key(columns, pk_name, n)
            if kept != n:
                n, sizes = kept, row_sizes(info.schema, columns, kept)
        groups = self._route(info, columns, n, partition_name)
        if split and sizes is not None:
            groups = {ch: [piece for pid, rows in parts for piece in _pieces(pid, rows, n, sizes)]
                      for ch, parts in groups.items()}

        ids = {f.name: f.field_id for f in info.schema.fields if f.name in columns}  # which field each name is

        def builder(parts):
            def build(ts):
                out = []
                for pid, rows in parts:
                    cols = columns if rows is None else {k: v[rows] for k, v in columns.items()}
                    out.append(InsertRecord(info.id, pid, ts, n if rows is None else len(rows), cols, field_ids=ids))
                return out
            return build

        ts, _ = self.r.writer.write({ch: builder(parts) for ch, parts in groups.items()})
        self.sealer.wrote(info, {ch: sum(n if rows is None else len(rows) for _, rows in parts)
                                 for ch, parts in groups.items()}, channel_bytes(sizes, groups))
        return ts

    def _assign_pks(self, info: CollectionInfo, columns: dict, n: int, first: int | None = None) -> int | None:
        """An auto_id collection's keys for ``n`` rows: ``first`` and the next ones (new ones allocated
        when None); the first key (None: not auto_id)."""
        pk = info.schema.primary_field
        if not pk.auto_id:
            return None
        first = self.r.ids.allocate(n) if first is None else first
        ids = np.arange(first, first + n, dtype=np.int64)
        columns[pk.name] = ids if pk.dtype == DataType.INT64 else ids.astype(str).astype(object)
        return first

    @rpc(milvus_pb2.MutationResult)
    def Insert(self, request, context):
        self._check_size(request)
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "Insert", request, context, info)  # its database's and its own limits
        refuse_write(info.schema, "insert", info.name)  # an external collection's rows come from its files
        _check_schema_ts(info, request)
        n = request.num_rows
        partition_name = _namespaced(info, request)
        columns = columns_from_field_data(info.schema, request.fields_data, n, zone=self.zone_of(info))
        self._assign_pks(info, columns, n)
        ts = self._write_rows(info, columns, n, partition_name)
        pks = columns[info.schema.primary_field.name]
        return milvus_pb2.MutationResult(
            status=status.success(), IDs=ids_proto(pks, info.schema.primary_field.dtype),
            succ_index=range(n), insert_cnt=n, timestamp=ts)

    @rpc(milvus_pb2.MutationResult)
    def Upsert(self, request, context):
        self._check_size(request)
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "Upsert", request, context, info)  # its database's and its own limits
        refuse_write(info.schema, "upsert", info.name)  # an external collection's rows come from its files
        _check_schema_ts(info, request)
        pk = info.schema.primary_field
        if pk.auto_id:
            raise errors.InvalidParameter(
                "upsert can not assign primary field data when auto id enabled: the collection "
                f"{info.name} uses auto_id, so upsert cannot keep the primary key; use insert instead")
        n = request.num_rows
        partition_name = _namespaced(info, request)
        ops = parse_field_ops(info.schema, request)  # ARRAY_APPEND / ARRAY_REMOVE: a partial update
        partial = bool(getattr(request, "partial_update", False)) or bool(ops)
        columns = columns_from_field_data(info.schema, request.fields_data, n, partial_update=partial,
                                          zone=self.zone_of(info))
        if partial:
            columns = self._merge_partial(info, columns, n, partition_name, ops)
        ts = self._write_rows(info, columns, n, partition_name)
        # as Milvus's upsertTask: n rows inserted, n keys deleted (there or not), n upserted
        return milvus_pb2.MutationResult(
            status=status.success(), IDs=ids_proto(columns[pk.name], pk.dtype),
            succ_index=range(n), insert_cnt=n, delete_cnt=n, upsert_cnt=n, timestamp=ts)

    def _merge_partial(self, info: CollectionInfo, columns: dict, n: int, partition_name: str,
                       ops: dict[str, int] | None = None) -> dict:
        """Fill fields the client left out from the current rows (partial update); fields with an
        ARRAY_APPEND / ARRAY_REMOVE op get the op applied to the current arrays (vecdb.proxy.field_ops).
        The dynamic field is merged, as Milvus 2.6 merges it: a row keeps its current dynamic keys,
        the sent ones added or replacing theirs (pymilvus sends ``{}`` for a row without any)."""
        schema = info.schema
        ops = ops or {}
        missing = [f.name for f in schema.fields if f.name not in columns]
        missing += [valid_key(f.name) for f in schema.fields if f.nullable and f.name not in columns]
        dyn = schema.dynamic_field
        merged_dyn = [dyn.name] if dyn is not None and dyn.name in columns else []
        if not missing and not ops and not merged_dyn:
            return columns
        self.require_loaded(info)
        pk_name = schema.primary_field.name
        pks = columns[pk_name]
        with self.r.writer.locked(info.channels):
            current = self.r.querynode.query(info, self.r.tso.allocate(), KeyFilter(pk_name, pks), None,
                                             [pk_name] + missing + list(ops) + merged_dyn, None, 0)
        pos = {k: i for i, k in enumerate(current[pk_name].tolist())}
        idx = [pos.get(k) for k in pks.tolist()]
        exists = np.array([i is not None for i in idx], dtype=bool)
        take = np.asarray([-1 if i is None else i for i in idx], np.int64)
        fresh = {} if exists.all() else self._new_rows(schema, columns, pks, exists, n)
        for name in missing:
            if not exists.any():
                columns[name] = fresh[name]
                continue
            col = current[name][take]
            if name in fresh:
                col[~exists] = fresh[name][~exists]
            columns[name] = col
        if ops:
            base = {name: current[name][take] if len(current[name]) else np.empty(n, object) for name in ops}
            apply_field_ops(schema, ops, columns, base, exists)
        for name in merged_dyn:
            if exists.any():
                sent, old = columns[name], current[name][take]
                merged = sent.copy()
                merged[exists] = [{**old[i], **sent[i]} for i in np.flatnonzero(exists)]
                columns[name] = merged
        return columns

    @staticmethod
    def _new_rows(schema, columns: dict, pks: np.ndarray, exists: np.ndarray, n: int) -> dict:
        """The left-out fields of a partial update's rows whose primary key is new, as Milvus 2.6's
        upsert fills them (task_upsert.go): null, the default value, ``{}`` for the dynamic field, a
        function's output computed from the row (never sent by the client); a field that is none of
        these refuses the update."""
        left_out = [f.name for f in schema.fields if f.name not in columns]
        try:
            fresh = left_out_columns(schema, left_out, n)
        except errors.InvalidParameter as e:
            absent = pks[~exists].tolist()[0]
            raise errors.InvalidParameter(f"partial update of a new primary key {absent!r}: {e.message}") from None
        outputs = {f.name for f in schema.fields if f.is_function_output and f.name in left_out}
        if outputs:  # computed from the new rows' own input (sent, or null / default above)
            fresh.update({k: v for k, v in function_output_columns(schema, {**fresh, **columns}).items()
                          if k in outputs})
        return fresh

    # --- delete -----------------------------------------------------------------
    @rpc(milvus_pb2.MutationResult)
    def Delete(self, request, context):
        info = self.collection(db_of(request, context), request.collection_name)
        admit_collection(self.r, "Delete", request, context, info)  # its database's and its own limits
        refuse_write(info.schema, "delete", info.name)  # an external collection's rows come from its files
        expr = request.expr.strip()
        if not expr:
            raise errors.InvalidParameter("delete plan can't be empty or always true : " + request.expr)
        if request.partition_name and info.schema.partition_key_field is not None:
            raise errors.InvalidParameter(PARTITION_KEY_NAMES)  # as Milvus's deleteTask
        ns = namespaces.of_request(info, request, required=False)  # named: deletes only its rows
        expr = namespaces.scoped_expr(info, ns, expr)
        partition_name = next(iter(namespaces.scoped_partitions(info, ns, [request.partition_name])), "")
        pid = -1
        if partition_name:
            try:
                pid = info.partition(partition_name).id
            except errors.PartitionNotFound as e:
                if type(e) is not errors.PartitionNotFound:
                    raise
                raise errors.PartitionNotFound("Failed to get partition id: " + e.message) from None  # as Milvus
        listed = self._pks_from_expr(info, expr)
        if listed is None:
            flt = compile_filter(localize_iso_literals(expr, self.zone_of(info)), info.schema,  # as Milvus: its zone
                                 template_values(request.expr_template_values))
            if _always_true(flt):
                raise errors.InvalidParameter("delete plan can't be empty or always true : " + request.expr)
            listed = _term_keys(expr, info.schema.primary_field)  # keys the fast path leaves: 0x10, ((pk in ..))
        if listed is not None:
            # Milvus's simple delete counts the keys as listed, duplicates and absent keys included
            count, pks = len(listed), np.unique(listed)
        else:
            self.require_loaded(info)
            pk_name = info.schema.primary_field.name
            parts = {pid} if pid != -1 else None
            ts = self.r.writer.read_ts(info.channels)
            pks = self.r.querynode.query(info, ts, flt, parts, [pk_name], None, 0)[pk_name]
            count = len(pks)
        # Like Milvus >= 2.3.2 the reply carries no IDs (pymilvus then returns {"delete_count": n}).
        if not len(pks):
            return milvus_pb2.MutationResult(status=status.success(), delete_cnt=count)
        ts = self._delete_pks(info, pks, pid)
        return milvus_pb2.MutationResult(status=status.success(), delete_cnt=count, timestamp=ts)

    def _delete_pks(self, info: CollectionInfo, pks: np.ndarray, pid: int = -1) -> int:
        """Delete the rows of primary keys ``pks`` (of partition ``pid``; -1: any) through the log; the
        write's timestamp."""
        shard_of = hash_keys(pks, info.shards_num)
        builders: dict[str, Callable[[int], list[Record]]] = {}
        for s in np.unique(shard_of).tolist():
            # cut here, not in the builder: it runs under the channel's lock, again on each retry
            pieces = _key_pieces(pks[shard_of == s])

            def deletes(ts: int, pieces: list[np.ndarray] = pieces) -> list[Record]:  # one record, or several
                return [DeleteRecord(info.id, ts, piece, pid) for piece in pieces]

            builders[info.channels[s]] = deletes
        ts, _ = self.r.writer.write(builders)
        return ts

    def _pks_from_expr(self, info: CollectionInfo, expr: str) -> np.ndarray | None:
        """Fast path for ``pk in [...]`` / ``pk == v``: no scan, works on unloaded collections. The
        keys as listed (duplicates kept), or None when ``expr`` is not such a list."""
        pk = info.schema.primary_field
        if len(expr) > MAX_EXPR_LENGTH:
            parse(expr)  # refuses it, as for every filter
        m = _PK_IN.match(expr) or _PK_EQ.match(expr)
        if not m or m.group(1) != pk.name:
            return None
        text = m.group(2)
        if not (_PLAIN_LIST.match(text) if text.startswith("[") else _PLAIN_VALUE.fullmatch(text)):
            return None  # (010 is octal in the filter language, 1_000 no int: the compiler reads them)
        # the plain items read by hand (ast.literal_eval is not thread-safe in CPython 3.11: concurrent
        # deletes failed with "AST constructor recursion depth mismatch")
        values = [int(v) if v[0] not in "\"'" else v[1:-1] for v in _PLAIN_VALUE.findall(text)]
        want = int if pk.dtype == DataType.INT64 else str
        if not all(type(v) is want for v in values):
            return None  # let the expression compiler report the type error
        if want is int:
            if not all(INT64_MIN <= v <= INT64_MAX for v in values):
                parse(expr)  # raises the parser's "integer ... out of int64 range at column N"
                raise syntax_error(expr, "value out of range for Int64")
            return np.asarray(values, np.int64)
        return np.asarray(values, dtype=object)

    # --- flush (vecdb.coord.sealer) ---------------------------------------------------------
    @rpc(milvus_pb2.FlushResponse)
    def Flush(self, request, context):
        db = db_of(request, context)
        admit_database(self.r, "Flush", request, context, db)  # database.force.deny.flush
        resp = milvus_pb2.FlushResponse(status=status.success(), db_name=db)
        for name in request.collection_names:
            info = self.collection(db, name)
            with caller_deadline(_time_left(context)):  # a hung coord: the client hears it in time
                seg_ids, ts = self.sealer.flush(info)
            resp.coll_segIDs[name].data.extend(seg_ids)
            resp.flush_coll_segIDs[name].data.extend(seg_ids)
            resp.coll_seal_times[name] = physical_ms(ts) // 1000
            resp.coll_flush_ts[name] = ts
        return resp

    @rpc(milvus_pb2.GetFlushStateResponse)
    def GetFlushState(self, request, context):
        return milvus_pb2.GetFlushStateResponse(status=status.success(), flushed=True)

    @rpc(milvus_pb2.FlushAllResponse)
    def FlushAll(self, request, context):
        """client.flush_all: every collection of ``db_name`` (every database when empty), or of the
        request's ``flush_targets`` (pymilvus 2.6), sealed and persisted before the reply (as Flush);
        ``flush_all_ts`` the newest seal timestamp."""
        if request.flush_targets:
            targets = [(t.db_name or DEFAULT_DB, list(t.collection_names)) for t in request.flush_targets]
        else:
            targets = [(db, []) for db in ([request.db_name] if request.db_name else self.r.catalog.list_databases())]
        infos = []
        for db, names in targets:
            infos += [self.collection(db, n) for n in names] if names else self.r.catalog.list_collections(db)
        with caller_deadline(_time_left(context)):
            flush_ts = max([self.sealer.flush(info)[1] for info in infos], default=0) or self.r.tso.allocate()
        return milvus_pb2.FlushAllResponse(status=status.success(), flush_all_ts=flush_ts)

    @rpc(milvus_pb2.GetFlushAllStateResponse)
    def GetFlushAllState(self, request, context):
        return milvus_pb2.GetFlushAllStateResponse(status=status.success(), flushed=True)


def _always_true(flt) -> bool:
    """A filter that reads no field and holds ("1 == 1", "not false"): a delete of every row, which
    Milvus 2.3.5 carries out for none (its query nodes cannot run the folded constant) and newer ones
    refuse when the plan is empty. random_sample reads no field either, but is no constant: it is told
    by its node (the whole filter or a top-level ``and`` operand), not by its name in the text, which a
    string literal may hold ("'random_sample' == 'random_sample'" deleted every row)."""
    return not flt.fields and not _samples(flt) and bool(flt.evaluate({}, 1).all())


def _term_keys(expr: str, pk) -> np.ndarray | None:
    """The keys of a filter that compiled and is ``pk in [literals]`` or ``pk == literal`` (in any
    parentheses, any integer notation: what the fast path's plain reading leaves), as listed; None for
    any other filter. Milvus parses them all into the same simple delete (counted as listed, no load)."""
    tree = parse(expr)
    if isinstance(tree, ast.In) and not tree.negate and isinstance(tree.items, ast.ListLiteral):
        name, items = tree.value, tree.items.items
    elif isinstance(tree, ast.Binary) and tree.op == "==":
        name, items = tree.left, (tree.right,)
    else:
        return None
    if not (isinstance(name, ast.Name) and name.name == pk.name and not name.path):
        return None
    want = int if pk.dtype == DataType.INT64 else str
    values = [v.value for v in items if isinstance(v, ast.Literal) and type(v.value) is want]
    if len(values) != len(items):
        return None
    return np.asarray(values, np.int64) if want is int else np.asarray(values, dtype=object)


def _samples(flt) -> bool:
    """Whether ``flt`` holds a ``random_sample`` (the compiler puts it at the top level only)."""
    root = getattr(flt, "_root", None)  # (a compiled Filter's tree, as vecdb.element_search reads it)
    parts = root.children if isinstance(root, preds.And) else [root]
    return any(isinstance(p, preds.RandomSample) for p in parts)


def _time_left(context) -> float | None:
    """The seconds before the client's deadline (gRPC); None without one (or over REST, whose call
    object has no deadline)."""
    left = getattr(context, "time_remaining", None)
    return left() if left is not None else None


def _namespaced(info: CollectionInfo, request) -> str:
    """An insert's or upsert's namespace applied (vecdb.namespaces): ``$namespace_id`` added to its
    columns, or its partition named; returns the partition it writes to."""
    ns = namespaces.of_request(info, request)
    namespaces.fill_column(info, ns, request)
    return namespaces.write_partition(info, ns, request.partition_name)


def _check_schema_ts(info: CollectionInfo, request) -> None:
    """pymilvus 2.6 sends the schema's update timestamp it read (``schema_timestamp``); one older than
    the schema's last change (add_collection_field, alter_collection_field) is answered with
    SchemaMismatch, on which it reads the schema again and retries (Milvus 2.6)."""
    sent = getattr(request, "schema_timestamp", 0)
    if sent and sent < info.schema.update_ts:
        raise errors.SchemaMismatch(f"collection schema mismatch: the schema of {info.name} changed at "
                                    f"{info.schema.update_ts}, the request was made for {sent}")

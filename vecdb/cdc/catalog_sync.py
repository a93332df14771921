"""The catalog pass's work on the target of a CDC task: DDL replayed by reconciling state, not by
replaying calls. Whenever the source's catalog version moves, the task reads the source catalog (``db/``,
``coll/``, ``alias/``; ``vecdb.cdc.replicator``'s ``_sync_catalog``) and makes the target match it for
the collections it replicates: databases created, collections created with the same schema, shards,
consistency level and properties (a collection dropped on the source is dropped on the target, one
dropped and created again under the same name is a new collection with a new id and is replaced on the
target), partitions, indexes, aliases, load and release, renames. A target collection is always created
with ``auto_id`` off, so the source's ids (auto_id ones included) are written as they are
(``vecdb.cdc.target.target_schema``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from vecdb import timestamptz
from vecdb.catalog_model import (
    DEFAULT_DB,
    DEFAULT_PARTITION,
    INDEX_PROPERTIES,
    LOAD_TIME_PROPERTIES,
    TTL_PROPERTY,
    CollectionInfo,
)
from vecdb.cdc import log_order
from vecdb.cdc.target import Target, field_kwargs, target_schema
from vecdb.cdc.task import Task, TaskFailed, TaskStore
from vecdb.cdc.verify import is_loaded

log = logging.getLogger(__name__)

DATABASE_PROPERTIES = (timestamptz.ZONE_KEY,)  # the database properties a target takes from its source


class CatalogSync:
    """The DDL reconcile of one task (``vecdb.cdc.replicator.Replicator`` inherits it): a source
    collection's target made as the source's (``_sync_one``), its aliases (``_sync_aliases``), a
    database's properties (``_sync_database_properties``), renames followed (``_follow_renames``).

    It relies on what the Replicator sets: ``task`` and ``store`` (the task and its TaskStore, where
    the entries are recorded), ``_target`` (the open target; set before a pass), ``_entries`` (the
    task's entry of each replicated collection: where it is on the target, the source index ids it
    has), ``_db_properties`` (the database properties the target was given, per database), and
    ``_place`` / ``_target_of`` (the target database and collection of a source collection: its
    entry's, and the name the task's spec maps it to)."""

    task: Task
    store: TaskStore
    _target: Target | None
    _entries: dict[int, dict[str, Any]]
    _db_properties: dict[str, dict[str, str]]
    _place: Callable[[CollectionInfo], tuple[str, str]]
    _target_of: Callable[[CollectionInfo], str]

    def _sync_one(self, info: CollectionInfo) -> bool:
        """Whether the collection was created on the target (it had none under its place)."""
        assert self._target is not None
        db, name = self._place(info)
        c = self._target.client(db)
        created = not c.has_collection(name)
        if created:
            kw: dict[str, Any] = {"num_shards": info.shards_num, "consistency_level": info.consistency_level}
            if info.properties:
                kw["properties"] = dict(info.properties)
            if info.schema.partition_key_field is not None:
                kw["num_partitions"] = info.num_partitions
            c.create_collection(name, schema=target_schema(info.schema), **kw)
            log.info("cdc task %s created %s.%s on the target", self.task.id, info.db, name)
        else:
            self._sync_existing(c, name, info)
        if info.schema.partition_key_field is None:
            have = set(c.list_partitions(name))
            for p in info.partitions:
                if p.name not in have:
                    c.create_partition(name, p.name)
            for p in have - {p.name for p in info.partitions} - {DEFAULT_PARTITION}:
                log_order.drop_partition(c, name, p)
        # the target's indexes by name (a JSON field may have several, one per path): one the source no
        # longer has, or has another of under its name (dropped and created again between two passes:
        # another id, maybe another type or params), goes first, then each the target lacks is created
        have_idx = {n: c.describe_index(name, n) for n in c.list_indexes(name)}
        source = {i.index_name: i for i in info.indexes}
        replaced = self._replaced(info)
        gone = [n for n, d in have_idx.items()
                if (src := source.get(n)) is None or n in replaced or _other_index(src, d)]
        loaded = is_loaded(c, name)
        if gone and loaded:
            c.release_collection(name)
            loaded = False
        for idx_name in gone:
            c.drop_index(name, idx_name)
            del have_idx[idx_name]
        for idx in info.indexes:
            if idx.index_name not in have_idx:
                _create_index(c, name, idx)
            loaded = self._sync_index_properties(c, name, idx, have_idx.get(idx.index_name, {}), loaded)
        self._record_indexes(info)
        if info.loaded and not loaded:
            if info.loaded_partitions is None:
                c.load_collection(name)
            else:
                pnames = [p.name for p in info.partitions if p.id in info.loaded_partitions]
                if pnames:
                    c.load_partitions(name, pnames)
        elif not info.loaded and loaded:
            c.release_collection(name)
        elif info.loaded and info.schema.partition_key_field is None:
            # a partition the target created after it dropped one (released first: the target collection then
            # loads a list of partitions, without the new one) is loaded as the source's is
            want = [p.name for p in info.partitions if info.partition_loaded(p.id)]
            released = self._released_partitions(c, name, info)
            if released:
                c.release_partitions(name, released)
            if want and not _partitions_loaded(c, name, want):
                c.load_partitions(name, want)
        self._record_loaded_partitions(info)
        self._record(info, "created", True)  # (a target collection gone after this was dropped outside the task)
        return created

    def _replaced(self, info: CollectionInfo) -> set[str]:
        """The names of the source indexes whose id is not the one the task's entry recorded (entries
        written before indexes were recorded by name have them by field)."""
        had = (self._entries.get(info.id) or {}).get("indexes")
        if had is None:
            return set()
        out = set()
        for i in info.indexes:
            recorded = had.get(i.index_name, had.get(i.field_name))
            if recorded is not None and recorded != i.index_id:
                out.add(i.index_name)
        return out

    def _released_partitions(self, c, name: str, info: CollectionInfo) -> list[str]:
        """The partitions the source has released while the collection stays loaded (``release_partitions``):
        those its last recorded load state had loaded (the task's entry); without a record yet, those the
        target has loaded, asked one by one."""
        entry = self._entries.get(info.id) or {}
        had = entry.get("loaded_partitions")
        unloaded = [p for p in info.partitions if not info.partition_loaded(p.id)]
        if had is None:
            return [p.name for p in unloaded if _partitions_loaded(c, name, [p.name])]
        return [p.name for p in unloaded if p.id in had]

    def _record_loaded_partitions(self, info: CollectionInfo) -> None:
        """The ids of the source's loaded partitions in the task's entry, once the target's match."""
        self._record(info, "loaded_partitions", sorted(p.id for p in info.partitions if info.partition_loaded(p.id)))

    def _record(self, info: CollectionInfo, key: str, value) -> None:
        """``value`` as ``key`` of the collection's entry in the task, written only when it changed."""
        entry = self._entries.get(info.id)
        if entry is not None and entry.get(key) != value:
            entry[key] = value
            self.store.add_collection(self.task.id, info.id, entry, {})

    def _record_indexes(self, info: CollectionInfo) -> None:
        """The source's index ids (by name) in the task's entry, once the target has them."""
        self._record(info, "indexes", {i.index_name: i.index_id for i in info.indexes})

    def _sync_database_properties(self, db: str, properties: dict[str, str]) -> None:
        """The database's properties with a meaning for its data (``DATABASE_PROPERTIES``: its time zone)
        as the source's, asked of the target only when they changed here. Limits, deny switches and
        load defaults stay the target's own (it may be sized differently, and serve readers)."""
        want = {k: v for k, v in properties.items() if k in DATABASE_PROPERTIES}
        if self._db_properties.get(db) == want:
            return
        assert self._target is not None
        c = self._target.client(DEFAULT_DB)
        try:
            described = c.describe_database(db)
        except grpc.RpcError as e:  # a target without DescribeDatabase (Milvus 2.3) has no database properties
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            if want:
                log.warning("cdc task %s: the target has no database properties (no DescribeDatabase): %s's %s not "
                            "replicated", self.task.id, db, sorted(want))
            self._db_properties[db] = want
            return
        have = {k: str(v) for k, v in described.items() if k in DATABASE_PROPERTIES}
        change = {k: v for k, v in want.items() if have.get(k) != v}
        if change:
            c.alter_database_properties(db, change)
        dropped = [k for k in have if k not in want]
        if dropped:
            c.drop_database_properties(db, dropped)
        self._db_properties[db] = want

    def _sync_existing(self, c, name: str, info: CollectionInfo) -> None:
        """A target collection that exists: the fields added on the source (add_collection_field) added,
        its properties (alter_collection_properties: the TTL, mmap...) set as the source's (only asked
        of the target when they differ)."""
        described = c.describe_collection(name)
        if info.schema.version:
            have_fields = {f["name"] for f in described["fields"]}
            for f in info.schema.fields:
                if not f.is_hidden and f.name not in have_fields:
                    from pymilvus import DataType as PDataType  # type: ignore[import-untyped]

                    c.add_collection_field(name, f.name, PDataType(int(f.dtype)), desc=f.description,
                                           **field_kwargs(f))
                    log.info("cdc task %s added field %s to %s.%s on the target", self.task.id, f.name, info.db, name)
        have = {k: str(v) for k, v in (described.get("properties") or {}).items()}
        change = {k: v for k, v in info.properties.items() if have.get(k) != v}
        if change:
            if any(k in LOAD_TIME_PROPERTIES for k in change) and is_loaded(c, name):
                c.release_collection(name)  # (refused while loaded; loaded again below as the source is)
            c.alter_collection_properties(name, change)
        dropped = [k for k in (TTL_PROPERTY, timestamptz.ZONE_KEY) if k in have and k not in info.properties]
        if dropped:  # the TTL or the time zone removed on the source
            c.drop_collection_properties(name, dropped)

    @staticmethod
    def _sync_index_properties(c, name: str, idx, described: dict, loaded: bool) -> bool:
        """An index's properties (alter_index_properties: mmap.enabled) as the source's; only asked of a
        target when they differ (a Milvus 2.3 target has no AlterIndex). Whether the target collection
        is still loaded (a change needs it released; the caller loads it again as the source is)."""
        change = {k: v for k, v in idx.properties.items() if described.get(k) != v}
        drop = [k for k in INDEX_PROPERTIES if k in described and k not in idx.properties]
        if not change and not drop:
            return loaded
        if loaded:
            c.release_collection(name)
        if change:
            c.alter_index_properties(name, idx.index_name, change)
        if drop:
            c.drop_index_properties(name, idx.index_name, drop)
        return False

    def _sync_aliases(self, wanted: dict[int, CollectionInfo], aliases: dict[tuple[str, str], int]) -> None:
        assert self._target is not None
        for info in wanted.values():
            db, name = self._place(info)
            c = self._target.client(db)
            want = {a for (db, a), cid in aliases.items() if cid == info.id and db == info.db}
            listed = c.list_aliases(name)
            have = set(listed.get("aliases", []) if isinstance(listed, dict) else listed)
            for a in want - have:
                try:
                    c.create_alias(name, a)
                except Exception:  # noqa: BLE001 (the alias names another target collection: move it)
                    c.alter_alias(name, a)
            for a in have - want:
                c.drop_alias(a)

    def _follow_renames(self, infos: dict[int, CollectionInfo]) -> None:
        """Collections renamed on the source (the same id under another database or name): renamed on
        the target, in two steps each recorded in the task's entry, so that chains and swaps of names
        between two passes, and a pass that stops half way, end right: every collection that moves goes
        to a name of its own first (``_cdc_renaming_<id>``), then to its new name. A collection the task
        does not replicate that holds a new name on the target is replaced (logged); one another of its
        entries holds fails the task (two source collections map to one target name)."""
        moves: dict[int, tuple[str, str]] = {}
        for cid, info in infos.items():
            entry = self._entries[cid]
            new = (info.db, self._target_of(info))
            if (entry["db"], entry["target"]) != new:
                moves[cid] = new
        if not moves:
            return
        held = {(e["db"], e["target"]) for cid, e in self._entries.items() if cid not in moves}
        for cid in moves:
            entry = self._entries[cid]
            tmp = (entry["db"], f"_cdc_renaming_{cid}")
            if (entry["db"], entry["target"]) != tmp:
                self._move(cid, tmp, entry["name"], held)
        for cid, new in moves.items():
            entry, info = self._entries[cid], infos[cid]
            was = (entry["db"], entry["name"])
            self._move(cid, new, info.name, held)
            log.info("cdc task %s: %s.%s renamed on the source to %s.%s, on the target to %s.%s", self.task.id,
                     *was, info.db, info.name, *new)

    def _move(self, cid: int, to: tuple[str, str], name: str, held: set[tuple[str, str]]) -> None:
        """One rename of a collection's target, recorded before it is asked (``moving``: from where to
        where) and after it is done, so that a pass that stops in between finds where the collection is
        (``_settle_moves``) rather than guessing by names the next renames may reuse."""
        entry = self._entries[cid]
        entry["moving"] = {"from": [entry["db"], entry["target"]], "to": list(to), "name": name}
        self.store.add_collection(self.task.id, cid, entry, {})
        self._rename_target((entry["db"], entry["target"]), to, held)
        del entry["moving"]
        entry.update(db=to[0], target=to[1], name=name)
        self.store.add_collection(self.task.id, cid, entry, {})

    def _settle_moves(self) -> None:
        """Entries whose last rename on the target was asked but not recorded as done (the pass stopped):
        where the collection is now, from the target (still under its old name: not renamed; else under
        its new one)."""
        assert self._target is not None
        for cid, entry in self._entries.items():
            mv = entry.pop("moving", None)
            if mv is None:
                continue
            if not self._target.client(mv["from"][0]).has_collection(mv["from"][1]):
                entry.update(db=mv["to"][0], target=mv["to"][1], name=mv["name"])
            self.store.add_collection(self.task.id, cid, entry, {})

    def _rename_target(self, old: tuple[str, str], new: tuple[str, str], held: set[tuple[str, str]]) -> None:
        assert self._target is not None
        c = self._target.client(old[0])
        if not c.has_collection(old[1]):
            return  # renamed already (the pass stopped before recording it), or gone: the pass creates it
        dest = self._target.client(new[0])
        if dest.has_collection(new[1]):
            if new in held:
                raise TaskFailed(f"{new[0]}.{new[1]} on the target is where two collections of the source go (a "
                                 "rename on the source, and the task's rename map): give them distinct names")
            log.warning("cdc task %s: %s.%s on the target is replaced by %s.%s renamed on the source",
                        self.task.id, *new, *old)
            log_order.drop_collection(dest, new[1])
        log_order.drop_aliases(c, old[1])
        c.rename_collection(old[1], new[1], target_db=new[0] if new[0] != old[0] else "")


def _partitions_loaded(c, name: str, partitions: list[str]) -> bool:
    """Whether every one of the target collection's ``partitions`` is loaded: one ``GetLoadState`` for them
    all (``MilvusClient.get_load_state`` asks about one partition at a time)."""
    state = c._get_connection().get_load_state(name, partitions, context=c._generate_call_context())
    return getattr(state, "name", str(state)) == "Loaded"


def _other_index(idx, described: dict) -> bool:
    """Whether the target's index under ``idx``'s name (``described``: pymilvus's describe_index) is not the
    source's ``idx``: on another field, or, for a type the client named (not AUTOINDEX), of another type
    or metric. The recorded index ids miss a replacement made before the task's entry had any (a pass
    stopped between creating the target collection and recording its indexes, then the source's index
    replaced). A JSON path is not compared: another server may describe it in another spelling."""
    if described.get("field_name", idx.field_name) != idx.field_name:
        return True
    if idx.auto:
        return False
    have = (str(described.get("index_type", "")).upper(), str(described.get("metric_type", "")).upper())
    return have[0] != idx.index_type.upper() or bool(have[1] and idx.metric_type and have[1] != idx.metric_type.upper())


def _create_index(c, name: str, idx) -> None:
    """The source's index ``idx`` (an ``IndexInfo``) created on the target collection ``name``: as the client
    asked for it where the source chose the index (AUTOINDEX: its ``user_params``, so the target describes it
    as the source does and chooses the same way), else the type and build parameters the source built (its
    defaults included: another server's defaults may differ)."""
    ip = c.prepare_index_params()
    if idx.auto:
        asked = {k: v for k, v in idx.user_params.items() if k not in ("index_type", "metric_type")}
        ip.add_index(field_name=idx.field_name, index_type=idx.user_params.get("index_type", idx.index_type),
                     index_name=idx.index_name, metric_type=idx.user_params.get("metric_type", idx.metric_type),
                     params=asked)
    else:
        ip.add_index(field_name=idx.field_name, index_type=idx.index_type, index_name=idx.index_name,
                     metric_type=idx.metric_type, params=dict(idx.params))
    c.create_index(name, ip)

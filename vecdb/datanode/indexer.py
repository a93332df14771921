"""Index builds for persisted segments, in the background (the role of Milvus's index nodes).

Once a collection has a vector index, every flushed segment of at least
``MIN_ROWS_FOR_INDEX`` rows gets an index file beside its column files
(``vecdb.storage.segments.index_key``), whether the collection is loaded or not. So
DescribeIndex can say ``Finished`` honestly before a load, and a load reads the
finished index instead of building it.

In a cluster, the data node that owns a channel builds the indexes of all its
segments, loaded or not (``vecdb.datanode.index_scheduler``); query nodes never
build, they load the finished files. Standalone, a loaded collection is the
query node's business: it builds the indexes of the segments it seals (adopting
their interim index) and writes the same files; a load first calls ``settle``:
builds not yet started are dropped (the query node makes them) and running
ones are waited for, so no segment is built twice. Whoever builds records the
finished file (``IndexBuilds.finish``), which is what ``state`` counts and what
query nodes watch. GPU indexes are built on the device at load, and BIN_FLAT
has nothing to build.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from vecdb import metrics
from vecdb.catalog_model import CollectionInfo
from vecdb.coord import index_builds
from vecdb.coord.index_builds import BuildRefused, IndexBuilds
from vecdb.errors import KeyNotFound
from vecdb.index import new_index
from vecdb.schema import FieldSchema
from vecdb.storage import segments as sf
from vecdb.storage.base import MetaStore, ObjectStore

log = logging.getLogger(__name__)


def file_built(index_type: str) -> bool:
    """Whether a segment's index of this type is built once and kept as a file."""
    return (index_type not in ("BIN_FLAT", "SPARSE_INVERTED_INDEX", "SPARSE_WAND")
            and not index_type.startswith("GPU"))


def file_built_fields(info: CollectionInfo) -> list[tuple[Any, FieldSchema]]:
    """(index, field) of the collection's vector indexes built into one file per segment."""
    return [(idx, f) for idx in info.indexes if (f := info.schema.field(idx.field_name)) is not None
            and f.dtype.is_vector and file_built(idx.index_type)]


_BUILT_MAX = 10_000  # index keys SegmentIndexer remembers as built (about 1 MB)


class SegmentIndexer:
    builds_loaded = False  # standalone: a loaded collection's query node builds its segments' indexes

    def __init__(self, meta: MetaStore, objects: ObjectStore, threads: int = 1, node_id: str | None = None):
        self.meta = meta
        self.objects = objects
        self.node_id = node_id  # the builder named in the finished records and the build metrics
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="indexer")
        self._lock = threading.Lock()
        self._pending: dict[int, dict[str, Future]] = {}  # collection id -> key -> build (none: no entry)
        self._built: set[str] = set()  # index keys known to exist (a cache: emptied at _BUILT_MAX)
        self.builds = IndexBuilds(meta)
        # told of a build that neither finished nor failed for good (the store failed, another process was
        # building it): the channel's scheduler looks at it again later (vecdb.datanode.index_scheduler)
        self.on_unsettled: Callable[[int, str], None] | None = None

    def _segments(self, info: CollectionInfo, channels=None) -> list[tuple[str, dict]]:
        """(channel, segment info) of every persisted segment of ``info`` (of its ``channels``)."""
        return [(ch, seg) for ch in (info.channels if channels is None else channels)
                for seg in sf.list_segments(self.meta, info.id, ch)]

    def _targets(self, info: CollectionInfo, segments: list[tuple[str, dict]]):
        """(index info, field, channel, segment info, key) of every segment index ``info`` calls for."""
        fields = file_built_fields(info)
        for channel, seg in segments:
            if seg["num_rows"] < sf.MIN_ROWS_FOR_INDEX:
                continue
            for idx, field in fields:
                yield idx, field, channel, seg, sf.index_key(seg["prefix"], field.field_id, idx.index_id)

    def _exists(self, key: str, recorded: set[str]) -> bool:
        """Whether the index file ``key`` is there: a finished build record says so (``recorded``), or,
        for files written before builds were recorded, the object store."""
        if key in self._built or key in recorded:
            return True
        if self.objects.exists(key):
            self._remember(key)
            return True
        return False

    def _remember(self, key: str) -> None:
        """Index files go with their segments (a drop, a compaction): the cache is emptied once full
        rather than keeping the key of every index file ever built."""
        if len(self._built) >= _BUILT_MAX:
            self._built.clear()
        self._built.add(key)

    def _unpend(self, collection_id: int, key: str) -> None:
        """Under the lock: a build is no longer pending (nor its collection's entry, with none left)."""
        pending = self._pending.get(collection_id)
        if pending is not None:
            pending.pop(key, None)
            if not pending:
                del self._pending[collection_id]

    def _recorded(self, collection_id: int) -> set[str]:
        return set(index_builds.finished(self.meta, collection_id).values())

    def schedule(self, info: CollectionInfo, channels=None) -> None:
        """Queue a build for every persisted segment of ``info`` (of its ``channels``) that lacks its
        index file."""
        targets = list(self._targets(info, self._segments(info, channels)))
        recorded = self._recorded(info.id) if targets else set()
        for idx, field, channel, seg, key in targets:
            with self._lock:
                if key in self._pending.get(info.id, ()) or self._exists(key, recorded):
                    continue
                self._pending.setdefault(info.id, {})[key] = self._pool.submit(
                    self._build, info, idx, field, channel, seg, key)

    def _build(self, info: CollectionInfo, idx, field, channel: str, seg: dict, key: str) -> None:
        try:
            if index_builds.finished_key(self.meta, info.id, idx.index_id, seg["prefix"]) is not None:
                with self._lock:  # built meanwhile by another process (one that scheduled more than its channels)
                    self._remember(key)
                return
            vectors = sf.read_column(self.objects, seg["prefix"], field, mmap=True, schema=info.schema)
            # a nullable vector field's null rows stay out of the index (vecdb.index.nullable)
            valid = (sf.read_valid(self.objects, seg["prefix"], field, len(vectors), mmap=True)
                     if field.nullable else None)
            with metrics.timed(metrics.INDEX_BUILD_LATENCY, metrics.INDEX_TASK_COUNT,
                               self.node_id or metrics.STANDALONE):
                index = self.builds.run(info.id, idx.index_id, seg["prefix"], seg["num_rows"],
                                        partial(new_index, idx, field, vectors, valid))
            del vectors, valid  # the mapped columns, before the index file is written
            sf.save_index(self.objects, index, key)
            # the file is whole: say so (query nodes holding the segment watch for this record)
            self.builds.finish(info.id, idx.index_id, seg["prefix"], seg["num_rows"], key, self.node_id,
                               seg.get("segment_id"))
            if not any(s["prefix"] == seg["prefix"] for s in sf.list_segments(self.meta, info.id, channel)):
                self.objects.delete(key)  # the segment was dropped while we built
                index_builds.forget_segment(self.meta, info.id, seg["prefix"], [idx.index_id])
            else:
                with self._lock:
                    self._remember(key)
        except KeyNotFound:  # the segment was dropped before we read it
            log.info("index build skipped: segment %s is gone", seg["prefix"])
        except BuildRefused as e:  # failed (or crashed) before: the segment is searched exactly
            log.debug("index build of %s refused: %s", key, e.reason)
            if e.later:
                self._unsettled(info.id, channel)
        except Exception:  # recorded as failed when the build itself failed; reported by DescribeIndex
            log.exception("index build failed for %s", key)
            self._unsettled(info.id, channel)  # (one that failed for good is refused at the next look)
        finally:
            with self._lock:
                self._unpend(info.id, key)

    def _unsettled(self, collection_id: int, channel: str) -> None:
        if self.on_unsettled is not None:
            self.on_unsettled(collection_id, channel)

    def state(self, info: CollectionInfo, field_name: str) -> tuple[int, int]:
        """(rows indexed or not needing an index, total rows) over the persisted segments."""
        segments = self._segments(info)
        total = sum(seg["num_rows"] for _, seg in segments)
        idx = info.index_for_field(field_name)
        if idx is None or not file_built(idx.index_type):
            return total, total
        recorded = self._recorded(info.id)
        missing = sum(seg["num_rows"] for i, _, _, seg, key in self._targets(info, segments)
                      if i.index_id == idx.index_id and not self._exists(key, recorded))
        return total - missing, total

    def failures(self, info: CollectionInfo, index_id: int) -> list[dict]:
        """Segments whose build of index ``index_id`` failed or crashed (``index_builds.failures``)."""
        return index_builds.failures(self.meta, info.id, index_id)

    def settle(self, collection_id: int) -> None:
        """Drop the builds of ``collection_id`` not started yet and wait for the running ones."""
        with self._lock:
            futures = list(self._pending.get(collection_id, {}).values())
        running = [f for f in futures if not f.cancel()]
        wait(running)
        with self._lock:
            for key, f in list(self._pending.get(collection_id, {}).items()):
                if f.cancelled():
                    self._unpend(collection_id, key)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.builds.close()

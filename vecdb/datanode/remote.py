"""A cluster proxy's data node role: persisting is the data node processes' job when any runs.

A flush is the coord's (``vecdb.coord.flush``): it writes the seal records and waits until the data
node that owns each channel (``vecdb.coord.datanode_assignment``) persisted it up to its seal record
(``vecdb.datanode.flusher``). A channel that no data node process persisted (none lives) comes back
to the proxy, and ``ClusterDataNode.persist`` persists it in-process, as a cluster without data
nodes always did (and builds its indexes, which no data node then does). Everything else (the
indexer for unloaded collections, segment lists, drops) is the in-process ``DataNode``'s, over the
same metadata and object stores.

A ``client.compact`` request is carried out by the data node that owns each channel; a channel whose
data node died goes to the one that takes it over. While none lives, a channel still waiting
``compaction.timeout`` seconds after the request is marked failed when its state is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from vecdb.catalog_model import CollectionInfo
from vecdb.coord.datanode_assignment import DATANODE_SESSIONS
from vecdb.datanode import segment_listing
from vecdb.datanode.compactor import CompactionOptions, fail_overdue, request_compaction
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.datanode.node import DataNode
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

SEALERS_RECHECK = 1.0  # seconds between looks at whether data node processes run (the seal policy's)


class ClusterDataNode:
    def __init__(self, local: DataNode, meta: MetaStore):
        self.local, self.meta = local, meta

    @property
    def indexer(self) -> ClusterIndexer:
        return ClusterIndexer(self.local.indexer, self)

    def _datanodes(self) -> list[str]:
        return [k for k, _ in self.meta.scan(DATANODE_SESSIONS)]

    def seals_itself(self) -> bool:
        """While a data node process runs, the one following each channel seals it
        (``vecdb.datanode.flusher``); looked up at most once a second (a write asks every time)."""
        now = time.monotonic()
        checked, alive = getattr(self, "_sealers", (float("-inf"), False))
        if now - checked >= SEALERS_RECHECK:
            alive = bool(self._datanodes())
            self._sealers = (now, alive)
        return alive

    def persist(self, info: CollectionInfo, channel: str, upto: int) -> list[dict[str, Any]]:
        """In-process: what a flush leaves to the proxy when no data node process persisted the
        channel (``vecdb.coord.flush``; the compare-and-set on the checkpoint keeps it from persisting
        a record twice should one start meanwhile)."""
        segments = self.local.persist(info, channel, upto)
        if segments and info.indexes and not self._datanodes():  # no data node builds them, nor query nodes
            self.local.indexer.schedule(info, [channel])
        return segments

    def segments(self, info: CollectionInfo) -> list[dict[str, Any]]:
        return self.local.segments(info)

    def row_count(self, info: CollectionInfo, partition_ids: Iterable[int] | None = None) -> int:
        return self.local.row_count(info, partition_ids)

    def drop_collection(self, info: CollectionInfo) -> None:
        self.local.drop_collection(info)

    def drop_partition(self, info: CollectionInfo, partition_id: int) -> None:
        self.local.drop_partition(info, partition_id)

    def truncate_collection(self, info: CollectionInfo, ts: int) -> None:
        self.local.truncate_collection(info, ts)

    def compact(self, info: CollectionInfo, clustering: bool = False, options: CompactionOptions | None = None) -> int:
        """A request record the data node processes owning the channels carry out (they watch
        ``compaction/``); with none alive, this process compacts (as it persists)."""
        if not self._datanodes():
            return self.local.compact(info, clustering, options)
        compaction_id = self.local.ids.allocate()
        request_compaction(self.meta, compaction_id, info, self.local.compactor.settings.keep_requests, clustering,
                           options)
        return compaction_id

    def compaction(self, compaction_id: int) -> dict[str, Any] | None:
        record = self.local.compaction(compaction_id)
        return None if record is None else self._overdue([record])[0]

    def compactions(self, collection_id: int) -> list[dict[str, Any]]:
        return self._overdue(self.local.compactions(collection_id))

    def _overdue(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records, a channel that waits for a data node while none lives failed once it waited
        ``compaction.timeout`` (a data node that joins before takes the channel over and carries it
        out: ``vecdb.datanode.compactor``); a client waiting for the state never waits forever."""
        if all(segment_listing.executing(r) == 0 for r in records) or self._datanodes():
            return records
        timeout = self.local.compactor.settings.timeout
        return [fail_overdue(self.meta, r, timeout) for r in records]

    def segment_list(self, info: CollectionInfo, states: Iterable[int] = ()) -> list[dict[str, Any]]:
        return self.local.segment_list(info, states)

    def forget_index_builds(self, collection_id: int, index_ids: Iterable[int]) -> None:
        self.local.forget_index_builds(collection_id, index_ids)

    def close(self) -> None:
        self.local.close()


class ClusterIndexer:
    """The proxy's view of index builds: the data nodes build every segment of their channels
    (``vecdb.datanode.index_scheduler``), so ``schedule`` builds here only when none is alive;
    progress and failures are read from the build records, which any process can."""

    builds_loaded = True  # query nodes never build here: the records are the progress, loaded or not

    def __init__(self, local: SegmentIndexer, datanode: ClusterDataNode):
        self.local, self._datanode = local, datanode

    def schedule(self, info: CollectionInfo, channels=None) -> None:
        if not self._datanode._datanodes():
            self.local.schedule(info, channels)

    def state(self, info: CollectionInfo, field_name: str) -> tuple[int, int]:
        return self.local.state(info, field_name)

    def failures(self, info: CollectionInfo, index_id: int) -> list[dict]:
        return self.local.failures(info, index_id)

    def settle(self, collection_id: int) -> None:
        self.local.settle(collection_id)

"""Flushes and the automatic seal policy, over the roles a proxy holds: the one collaborator of the
proxy's Flush, Insert, Upsert and import handlers for both (as Milvus's proxy hands a flush to its
data coordinator in one call, and the coordinator decides when a growing segment is sealed).

``Sealer.flush(info, channels)``: the flush role's seal records (``vecdb.coord.flush``: in-process in
standalone, the coord's in a cluster), then the channels no data node process persisted persisted here
(``DataNodeRole.persist``), then the index builds of a collection no query node has loaded scheduled
(a loaded one's query node indexes what it seals).

``Sealer.wrote(info, rows per channel)``: the seal policy where no data node follows the channels
(standalone, a cluster without data node processes; else the data nodes', ``vecdb.datanode.flusher``):
a channel whose rows since its last seal reach ``datanode.seal_bytes`` (their bytes as the proxy measured
the columns it wrote: ``vecdb.datanode.seal.batch_bytes``) or ``datanode.seal_rows`` (``seal.is_full``, the
data nodes' policy too) is flushed, in the background. The query node's growing rows (written through
every proxy) count at the average size of the rows this proxy wrote there since its last seal. It runs
once the rows are durable, so nothing in it may fail the write: a client would retry an insert that is
already in the log (and duplicate its auto_id rows).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from vecdb import errors
from vecdb.catalog_model import CollectionInfo
from vecdb.datanode.seal import fixed_row_bytes, is_full, row_bytes, variable_row_bytes
from vecdb.roles import CatalogRole, DataNodeRole, FlushRole, QueryNodeRole
from vecdb.schema import CollectionSchema

if TYPE_CHECKING:
    from vecdb.proxy.writer import ShardWriter

log = logging.getLogger(__name__)


def row_sizes(schema: CollectionSchema, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    """Each of the ``n`` rows' bytes (``vecdb.datanode.seal.batch_bytes``'s measure); None where they cannot
    be measured (the schema's estimate counts then: nothing here may fail a write)."""
    try:
        fixed, sizes = fixed_row_bytes(schema), variable_row_bytes(schema, columns, n)
        return np.full(n, fixed, np.int64) if sizes is None else sizes + fixed
    except Exception:  # noqa: BLE001
        log.exception("measuring the rows of a write for the seal policy")
        return None


def channel_bytes(sizes: np.ndarray | None, groups: Mapping[str, Sequence[tuple[int, np.ndarray | None]]]
                  ) -> dict[str, int] | None:
    """Bytes of the rows each channel got (``sizes``: ``row_sizes``; ``groups``: channel -> [(partition id,
    the rows' indices, None for all)]); None when the sizes are (the schema's estimate counts then)."""
    if sizes is None:
        return None
    return {ch: int(sum(int(sizes.sum() if rows is None else sizes[rows].sum()) for _, rows in parts))
            for ch, parts in groups.items()}


class UnsealedRows:
    """Rows written through this proxy to each channel since its last seal through this proxy, and their
    bytes. The seal policy's count for a collection no query node here holds (inserted before its load:
    its growing rows are nowhere else counted, and it would be persisted as one segment however large it
    grew), and the rows' average size."""

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, rows: dict[str, int], nbytes: dict[str, int] | None = None) -> None:
        with self._lock:
            for ch, n in rows.items():
                self._rows[ch] = self._rows.get(ch, 0) + n
                self._bytes[ch] = self._bytes.get(ch, 0) + (nbytes or {}).get(ch, 0)

    def get(self, channel: str) -> int:
        return self._rows.get(channel, 0)

    def bytes(self, channel: str) -> int:
        return self._bytes.get(channel, 0)

    def sealed(self, channels: list[str]) -> None:
        with self._lock:
            for ch in channels:
                self._rows.pop(ch, None)
                self._bytes.pop(ch, None)


class Sealer:
    def __init__(self, flush: FlushRole, writer: ShardWriter, datanode: DataNodeRole, querynode: QueryNodeRole,
                 catalog: CatalogRole, seal_rows: int, seal_bytes: int) -> None:
        self.flusher, self.writer, self.datanode, self.querynode, self.catalog = (
            flush, writer, datanode, querynode, catalog)
        self.seal_rows, self.seal_bytes = seal_rows, seal_bytes
        self.unsealed = UnsealedRows()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sealer")

    def flush(self, info: CollectionInfo, channels: list[str] | None = None) -> tuple[list[int], int]:
        """Seal and persist ``channels`` (default: all of the collection's); the segment ids written
        and the seal timestamp."""
        channels = channels or info.channels
        done = self.flusher.flush(info.id, channels)
        self.unsealed.sealed(channels)
        self.writer.saw(done.positions)  # the coord's seal records end the channels now (a hint)
        seg_ids = list(done.segment_ids)
        for ch, pos in done.unpersisted.items():
            seg_ids += [s["segment_id"] for s in self.datanode.persist(info, ch, pos)]
        if seg_ids and info.indexes and not self.querynode.is_loaded(info.id):
            self.datanode.indexer.schedule(info)
        return seg_ids, done.ts

    def wrote(self, info: CollectionInfo, rows: dict[str, int], nbytes: dict[str, int] | None = None) -> None:
        """``rows`` (per channel) of ``info`` are in the log, of ``nbytes`` bytes (per channel,
        ``vecdb.datanode.seal.batch_bytes``; None: the schema's estimate, ``row_bytes``): seal the channels
        that are full."""
        if nbytes is None:
            per_row = row_bytes(info.schema)
            nbytes = {ch: n * per_row for ch, n in rows.items()}
        self.unsealed.add(rows, nbytes)
        try:
            if self.datanode.seals_itself():
                return
            full = [ch for ch in rows if self._full(ch)]
        except Exception as e:  # noqa: BLE001 - a query node that does not answer: the next write checks again
            log.warning("seal check of %s skipped: %s", info.name, e)
            return
        if full:
            self._background.submit(self._seal_quietly, info, full)

    def _full(self, channel: str) -> bool:
        """The query node's growing rows (at this proxy's rows' average size); this proxy's own count
        where it holds none (not loaded yet)."""
        own_rows, own_bytes = self.unsealed.get(channel), self.unsealed.bytes(channel)
        growing = self.querynode.growing_rows(channel)
        grown = growing * own_bytes // own_rows if own_rows else 0
        return is_full(max(growing, own_rows), max(grown, own_bytes), self.seal_rows, self.seal_bytes)

    def _seal_quietly(self, info: CollectionInfo, channels: list[str]) -> None:
        try:
            self.catalog.get_by_id(info.id)  # (by id: one created again under the name has other channels)
            self.flush(info, channels)
        except errors.CollectionNotFound:
            pass  # dropped meanwhile: nothing to seal (its log makes no channel again, vecdb.storage.dropped_channels)
        except Exception:  # the next insert or flush retries; the log still has the rows
            log.exception("automatic seal failed")

    def close(self) -> None:
        """Waits for a seal under way; drops those not started (the next write or flush does them)."""
        self._background.shutdown(wait=True, cancel_futures=True)

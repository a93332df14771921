"""A CDC task is a follower of its source's log: ``cdcpos/<task id>`` in the SOURCE's metadata store
holds ``{channel: last position applied to the target}``, and whoever truncates a channel (a
cluster's data node, ``vecdb.datanode.flusher``; a standalone's persist, ``vecdb.datanode.node``)
cuts it no further than the lowest of them, within ``CDC_RETENTION`` records behind the channel's
checkpoint. A task further behind does not hold the log back for ever: the cut passes it (logged
as an error) and the task fails loudly when it meets the gap, asking for a re-sync.

The key is not leased: a CDC service that is down (killed, upgraded) still holds the log back, up
to the retention limit, and a deleted task takes its key away (``vecdb.cdc.replicator.unpublish``).

A task that wants every collection (``collections: ["*"]``) also holds what it has not taken up yet:
its ``"*"`` (``HOLD_NEW``) is the largest collection id of its last catalog pass, and the channels of a
collection with a larger id (ids only grow: created since that pass) that it does not list are not cut
at all, so rows inserted and flushed before the task saw their collection still reach it (the race a
flush right after a create_collection lost). A replication edge holds every channel that way from the
moment its configuration is stored (``hold_new``, ``"*": -1``) until its task's first pass.
"""

from __future__ import annotations

import json
import logging

from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

CDC_POS_PREFIX = "cdcpos/"
CDC_RETENTION = 2_000_000  # records behind a channel's checkpoint a CDC task may hold its log back
HOLD_NEW = "*"  # in a task's positions: the collection id above which channels it does not list are held


def cdc_positions_key(task_id: str) -> str:
    return CDC_POS_PREFIX + task_id


HOLD_ALL = json.dumps({HOLD_NEW: -1}).encode()  # the positions of a task that has published none yet


def hold_new(meta: MetaStore, task_id: str) -> None:
    """A task about to start (a replication edge just configured): every channel held whole until it
    publishes its positions; nothing when it has published some already."""
    key = cdc_positions_key(task_id)
    meta.txn(puts={key: HOLD_ALL}, expect={key: None})


def cdc_floor(meta: MetaStore, channel: str, checkpoint: int, collection_id: int) -> int | None:
    """The lowest position a CDC task applied on ``channel`` (of collection ``collection_id``) within
    the retention limit, 0 for a task holding it whole (``HOLD_NEW``), None when no task follows it (or
    every one is past the limit)."""
    low = None
    for key, raw in meta.scan(CDC_POS_PREFIX):
        positions = json.loads(raw)
        applied = positions.get(channel)
        if applied is None:
            seen = positions.get(HOLD_NEW)
            if seen is None or collection_id <= seen:
                continue
            applied = 0  # created since the task's last catalog pass: held whole until the task takes it up
        if applied < checkpoint - CDC_RETENTION:
            log.error("cdc task %s applied %s only up to %d, %d records behind the checkpoint (retention %d): the "
                      "log is cut past it, and the task fails until it is re-synced", key[len(CDC_POS_PREFIX):],
                      channel, applied, checkpoint - applied, CDC_RETENTION)
            continue
        low = applied if low is None else min(low, applied)
    return low

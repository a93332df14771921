"""A CDC task is a follower of its source's log: ``cdcpos/<task id>`` in the SOURCE's metadata store
holds ``{channel: last position applied to the target}``, and whoever truncates a channel (a
cluster's data node, ``vecdb.datanode.flusher``; a standalone's persist, ``vecdb.datanode.node``)
cuts it no further than the lowest of them, within ``CDC_RETENTION`` records behind the channel's
checkpoint. A task further behind does not hold the log back for ever: the cut passes it (logged
as an error) and the task fails loudly when it meets the gap, asking for a re-sync.

The key is not leased: a CDC service that is down (killed, upgraded) still holds the log back, up
to the retention limit, and a deleted task takes its key away (``vecdb.cdc.replicator.unpublish``).
"""

from __future__ import annotations

import json
import logging

from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

CDC_POS_PREFIX = "cdcpos/"
CDC_RETENTION = 2_000_000  # records behind a channel's checkpoint a CDC task may hold its log back


def cdc_positions_key(task_id: str) -> str:
    return CDC_POS_PREFIX + task_id


def cdc_floor(meta: MetaStore, channel: str, checkpoint: int) -> int | None:
    """The lowest position a CDC task applied on ``channel`` within the retention limit, None when no
    task follows it (or every one is past the limit)."""
    low = None
    for key, raw in meta.scan(CDC_POS_PREFIX):
        applied = json.loads(raw).get(channel)
        if applied is None:
            continue
        if applied < checkpoint - CDC_RETENTION:
            log.error("cdc task %s applied %s only up to %d, %d records behind the checkpoint (retention %d): the "
                      "log is cut past it, and the task fails until it is re-synced", key[len(CDC_POS_PREFIX):],
                      channel, applied, checkpoint - applied, CDC_RETENTION)
            continue
        low = applied if low is None else min(low, applied)
    return low

"""Logs never make a dropped collection's channel again (``JetStreamLog``, ``WalLog``).

A log makes a channel on its first append (``Log``'s rules), and a collection's drop deletes its
channels once (``DataNode.drop_collection``, after the catalog record). Appends that are no client's
write still reach a channel after that: the data node's seal policy reading the last inserts, the
proxy's seal policy in the background, a flush, a write through a proxy that had not seen the drop
yet. Each such append made the channel again (a JetStream stream, a WAL directory) with its record
in it, and nothing deleted it: found by a drop-while-sealing churn
(``tests/e2e/test_dropped_channel_streams.py``). Given ``channel_dropped(channel)``
(``vecdb.catalog_model.channel_dropped``: the catalog no longer has the channel's collection, whose
id is never used again), a log refuses to make such a channel: ``CollectionNotFound``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from vecdb.errors import CollectionNotFound

log = logging.getLogger(__name__)

DroppedCheck = Callable[[str], bool]


def is_dropped(check: DroppedCheck | None, channel: str) -> bool:
    """``check(channel)``; False without a check, and when the catalog cannot be read (the channel is then
    made as it always was: a live collection's write never fails for the check)."""
    if check is None:
        return False
    try:
        return check(channel)
    except Exception as e:  # noqa: BLE001 (metadata store trouble)
        log.warning("cannot tell whether the collection of %s was dropped (the channel is made): %s", channel, e)
        return False


def refused(channel: str) -> CollectionNotFound:
    """The error of an append that would make a dropped collection's channel again."""
    return CollectionNotFound(f"collection not found[channel={channel}]: it was dropped, and its log channel "
                              f"is not made again")

"""A cluster query node publishes how far it applied each channel it holds, so the log can be
truncated below what every follower applied (``vecdb.datanode.flusher``).

``qnpos/<node id>`` holds ``{channel: last applied position}`` under the node's session lease (it
goes with the node), rewritten at most every ``PUBLISH_SECONDS`` when it changed. A position is
published only after it was applied, so it is never ahead of the node; a node that is loading a
channel has not published it yet, and reloads if the log was cut under its load (``QueryNode``).
"""

from __future__ import annotations

import json
import logging
import threading

from vecdb.querynode.node import QueryNode
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

QN_POS_PREFIX = "qnpos/"
PUBLISH_SECONDS = 1.0


def positions_key(node_id: str) -> str:
    return f"{QN_POS_PREFIX}{node_id}"


class PositionPublisher:
    def __init__(self, node: QueryNode, meta: MetaStore, node_id: str, lease: int):
        self.node, self.meta, self.node_id, self.lease = node, meta, node_id, lease
        self._stop = threading.Event()
        self._published: bytes | None = None
        self._thread = threading.Thread(target=self._run, name=f"querynode {node_id} positions", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_SECONDS):
            try:
                self.publish()
            except Exception:  # noqa: BLE001 (the store is unreachable: the next pass tries again)
                log.exception("query node %s: cannot publish its applied positions", self.node_id)

    def publish(self) -> None:
        raw = json.dumps(self.node.applied_positions(), sort_keys=True).encode()
        if raw != self._published:
            self.meta.txn(puts={positions_key(self.node_id): raw}, lease=self.lease)
            self._published = raw

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(10)

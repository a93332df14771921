"""Finding the nodes of a cluster from their sessions.

Every cluster process holds ``session/<role>/<node id>`` under a lease, its value JSON with
the ``address`` its RPC server listens on (``vecdb.coord.session.register_node``). So the
live nodes of a role are the keys under ``session/<role>/``: a node joins when its session is
written and leaves when it goes (revoked at once by a clean stop, expired ``session_ttl``
seconds after a crash). ``SessionWatch`` turns those changes into join and leave calls.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable

from vecdb.storage.base import MetaStore
from vecdb.storage.watch import PUT, PrefixWatch, WatchEvent

log = logging.getLogger(__name__)


def node_number(node_id: str) -> int:
    """The int64 a Milvus client shows for a node (GetReplicas, GetQuerySegmentInfo): the id
    itself when it is a number, else a stable hash of it (the same in every proxy)."""
    if node_id.isdigit() and int(node_id) < 1 << 63:
        return int(node_id)
    return zlib.crc32(node_id.encode()) & 0x7FFFFFFF


def session_address(value: bytes) -> str | None:
    """The ``address`` in a session's value; None when it has none (not a node that serves RPC)."""
    try:
        address = json.loads(value).get("address")
    except (ValueError, AttributeError):
        return None
    return address if isinstance(address, str) and address else None


class SessionWatch:
    """Calls ``on_join(node_id, address)`` for each node of ``role`` with a session (those
    there at construction first, in the constructor) and ``on_leave(node_id)`` when its session
    goes, on a watch thread, in the order the store applied the changes.

    Rules: a session's value never changes while it lives, so a new value under a known id is a
    new process (a restart under the same id): ``on_leave`` then ``on_join``. When the watch
    starts over (``PrefixWatch``: history compacted, store unreachable, a callback raised), the
    new scan is compared with what was known, so callers see only the real changes and never a
    join twice. A callback that raises leaves that node unknown: the join is tried again at the
    next start-over. Callbacks hold up every later change, so they must be quick (hand slow
    work, like loading collections on a node, to a thread of your own).
    """

    def __init__(self, meta: MetaStore, role: str, on_join: Callable[[str, str], None],
                 on_leave: Callable[[str], None], *, retry_wait: float = 1.0):
        self.prefix = f"session/{role}/"
        self._on_join, self._on_leave = on_join, on_leave
        self._values: dict[str, bytes] = {}  # node id -> its session's value, for the nodes joined
        self._watch = PrefixWatch(meta, self.prefix, self._reset, self._events, retry_wait=retry_wait,
                                  name=f"sessions {role}")

    def _reset(self, pairs: list[tuple[str, bytes]]) -> None:
        now = {key[len(self.prefix):]: value for key, value in pairs}
        for node_id in [n for n, value in self._values.items() if now.get(n) != value]:
            self._leave(node_id)
        for node_id, value in now.items():
            self._join(node_id, value)

    def _events(self, events: list[WatchEvent]) -> None:
        for ev in events:
            node_id = ev.key[len(self.prefix):]
            if ev.kind == PUT:
                assert ev.value is not None, "a put carries its value"
                self._join(node_id, ev.value)
            else:
                self._leave(node_id)

    def _join(self, node_id: str, value: bytes) -> None:
        known = self._values.get(node_id)
        if known == value:
            return
        if known is not None:
            self._leave(node_id)
        address = session_address(value)
        if address is None:
            log.warning("%s%s has no address; ignored", self.prefix, node_id)
            return
        self._on_join(node_id, address)
        self._values[node_id] = value

    def _leave(self, node_id: str) -> None:
        if self._values.pop(node_id, None) is not None:
            self._on_leave(node_id)

    def close(self) -> None:
        """Stop watching; no callback runs after this returns (unless called from one)."""
        self._watch.close()

"""A node's session: one metadata key held with a lease and renewed in the background.

While the process lives, the key is there; when it stops renewing (exit, crash, a stall
longer than ``ttl``) the key goes away within ``ttl`` seconds. An exclusive session is
taken only if nobody holds the key (compare-and-set), which keeps two servers off the same
storage namespace; a starting server waits up to about two ``ttl`` for a crashed
predecessor's session to run out. Cluster nodes register the same way, under ``session/<role>/<id>``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from vecdb.errors import IoFailed, LeaseExpired, ServiceUnavailable
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)


# This run of this process: in every session it holds, so records it leaves behind (index builds in
# progress, vecdb.coord.index_builds) can tell whether their writer is still alive.
INCARNATION = uuid.uuid4().hex


def describe_process(**extra) -> bytes:
    """Who holds a session: host, pid, start time and incarnation, as JSON (shown to whoever finds it taken)."""
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "incarnation": INCARNATION, **extra}).encode()


def _holder_is_dead(raw: bytes) -> bool:
    """Whether a session's holder (``describe_process``) was a process of this host that no longer runs: a
    restart after a crash then waits out its lease, which is worth saying (it is silent for up to two ttls)."""
    try:
        holder = json.loads(raw)
        if holder.get("host") != socket.gethostname():
            return False
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, AttributeError, PermissionError, OverflowError):
        return False
    return False


def live_incarnations(meta: MetaStore) -> set[str]:
    """The incarnations of the processes that hold a session now."""
    out = set()
    for _, raw in meta.scan("session/"):
        try:
            out.add(json.loads(raw).get("incarnation", ""))
        except (ValueError, AttributeError):
            continue
    return out


class Session:
    def __init__(self, meta: MetaStore, key: str, value: bytes, ttl: float = 10.0, exclusive: bool = True,
                 wait: float | None = None, on_lost: Callable[[], None] | None = None):
        self.meta, self.key, self.value, self.ttl = meta, key, value, float(ttl)
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.lost = False  # set once a renewal found the lease gone (before on_lost is called)
        # time.monotonic() when the last grant or renewal that succeeded was sent: the lease surely lives
        # until renewed_at + ttl (the store counts from when it got it). A holder that must not act once
        # another may hold the key acts only before then: a renewal can fail (store unreachable) for
        # longer than it takes the lease to end, and on_lost comes only once the store answers again.
        self.renewed_at = time.monotonic()
        # a crashed holder's lease runs out within ttl; the store may take a moment more to expire it
        self.lease = self._acquire(exclusive, 2 * self.ttl + 2 if wait is None else wait)
        self._thread = threading.Thread(target=self._renew_loop, name=f"session-{key}", daemon=True)
        self._thread.start()

    def _acquire(self, exclusive: bool, wait: float) -> int:
        deadline = time.monotonic() + wait
        said = False
        while True:
            sent = time.monotonic()
            lease = self.meta.grant_lease(self.ttl)
            if self.meta.txn(puts={self.key: self.value}, expect={self.key: None} if exclusive else None,
                             lease=lease):
                self.renewed_at = sent
                return lease
            self.meta.revoke_lease(lease)
            if time.monotonic() >= deadline:
                holder = self.meta.get(self.key)
                raise ServiceUnavailable(
                    f"{self.key} is held by another process ({(holder or b'?').decode(errors='replace')}); "
                    f"stop it, or use another storage.namespace")
            if not said:
                said = True
                holder = self.meta.get(self.key)
                if holder is not None and _holder_is_dead(holder):  # (a live holder: refused in one line, later)
                    log.warning("%s is held by a process of this host that is gone (%s): waiting up to %.0f s for "
                                "its lease to run out", self.key, holder.decode(errors="replace"),
                                deadline - time.monotonic())
            time.sleep(min(0.5, self.ttl / 4))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            sent = time.monotonic()
            try:
                alive = self.meta.renew_lease(self.lease)
            except LeaseExpired:
                alive = False
            except IoFailed as e:  # the store is unreachable: keep trying until the lease would be gone
                log.warning("session %s: cannot renew its lease: %s", self.key, e)
                continue
            if alive:
                self.renewed_at = sent
                continue
            log.error("session %s lost (its lease expired): another process may take over", self.key)
            self.lost = True
            if self._on_lost is not None:
                self._on_lost()
            return

    def trouble(self) -> str | None:
        """None while the session surely holds its key, else why not (for health checks): lost,
        ended, or not renewed for longer than its ttl (the store does not answer)."""
        if self.lost:
            return f"session {self.key} lost (its lease expired)"
        if self._stop.is_set():
            return f"session {self.key} ended"
        late = time.monotonic() - self.renewed_at
        if late > self.ttl:
            return f"session {self.key} not renewed for {late:.1f} s (the metadata store does not answer)"
        return None

    def close(self) -> None:
        """Stop renewing and end the lease now (the key goes at once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        try:
            self.meta.revoke_lease(self.lease)
        except IoFailed as e:
            log.warning("session %s: cannot revoke its lease (it runs out in %.0f s): %s", self.key, self.ttl, e)


def register_node(meta: MetaStore, role: str, node_id: str, address: str, ttl: float) -> Session:
    """A cluster node's session: ``session/<role>/<node id>`` holding its address (exclusive:
    two processes with one id are refused)."""
    return Session(meta, f"session/{role}/{node_id}", describe_process(role=role, address=address), ttl=ttl)

"""The three storage backends every role talks to, as protocols.

Each protocol has an embedded implementation (``wal.WalLog``,
``local_meta.LocalMetaStore``, ``local_objects.LocalObjectStore``), a
distributed one (JetStream, etcd, S3) and a simple in-memory reference
(``memory``) that the others are tested against. All implementations are
thread-safe. Failures of the medium (disk, network) raise
``vecdb.errors.IoFailed``; bad arguments raise ``InvalidParameter``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from vecdb.storage.watch import WatchEvent


@runtime_checkable
class Log(Protocol):
    """Append-only log, one independent sequence per channel (a channel = one
    shard of a collection).

    Rules:
    - Positions are ints starting at 1 per channel, strictly increasing by 1,
      never reused, even after ``truncate_before`` or a restart. (A channel
      that is dropped and appended to again starts over at 1: channel names
      are not meant to be reused.)
    - "Acknowledged" = ``append`` returned: the record is durable (fsync'd)
      and ``read`` returns it after any crash or restart.
    - ``read`` sees a consistent prefix of the channel (only acknowledged
      records), even while other threads append; it takes its snapshot when
      called, not when first iterated.
    - ``truncate_before(ch, p)`` *may* discard records with position < p
      (implementations discard whole files or blocks at a time); records at
      or above p, and records appended later, are kept. Discarded positions
      are skipped silently by ``read``. ``last_position`` is unaffected.
    - Unknown channels read as empty, with ``last_position`` 0; a channel
      exists once something was appended to it.
    """

    def append(self, channel: str, payload: bytes) -> int:
        """Durably append one record; return its position."""
        ...

    def append_batch(self, channel: str, payloads: list[bytes], expect_last: int | None = None) -> list[int]:
        """Durably append several records at once (one fsync); return their
        consecutive positions. With ``expect_last``, append only if the channel's last
        position is that one, else raise ``LogConflict`` (nothing written): writers in
        several processes keep a channel in timestamp order this way."""
        ...

    def read(self, channel: str, start: int = 1, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Records with start <= position (<= end if given), in order."""
        ...

    def follow(self, channel: str, start: int = 1) -> Follower:
        """A reader of the records with position >= ``start``, including those appended later
        (see ``vecdb.storage.follow``)."""
        ...

    def last_position(self, channel: str) -> int:
        """Position of the last acknowledged record; 0 when empty/unknown."""
        ...

    def truncate_before(self, channel: str, position: int) -> None:
        """Allow discarding records with position < ``position``."""
        ...

    def channels(self) -> list[str]:
        """Names of the existing channels, sorted."""
        ...

    def drop_channel(self, channel: str) -> None:
        """Delete a channel and all its records (no error if unknown)."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class Follower(Protocol):
    """Tails one channel from a start position: every acknowledged record once, in order."""

    def poll(self, timeout: float = 1.0, max_records: int = 1024) -> list[tuple[int, bytes]]:
        """The next records, waiting up to ``timeout`` seconds for at least one; [] if none came."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class MetaStore(Protocol):
    """Small key-value store for metadata (etcd-like).

    Keys are non-empty '/'-separated str, values bytes. Every write is
    durable before it returns. ``txn`` is all-or-nothing: it applies
    ``delete_prefixes``, then ``deletes``, then ``puts``, as one durable step
    (so a txn may clear a prefix and re-create keys under it), optionally only
    if expected values hold (compare-and-set).
    ``scan(prefix)`` matches plain string prefixes ("a/b" matches "a/bc").

    Revisions and watches (etcd's model; ``vecdb.storage.watch``):
    - Every change that alters keys advances the store-wide revision: a put (even of the same
      value), a delete of a present key, an applied txn, a lease ending (expiry or revoke) with
      keys. All the key changes of one such change share its revision. A change of nothing
      (deleting absent keys, a failed ``expect``) does not advance it. Revisions only grow,
      across restarts too, but need not be consecutive (etcd: other namespaces' writes count).
    - ``scan_revision(prefix)`` is a scan plus the revision it reflects; ``watch(prefix,
      revision + 1)`` then hands out every later change under the prefix: nothing is missed
      or seen twice. ``watch(prefix)`` without a start: the changes after the call returns.
    - A ``Watcher`` hands out ``WatchEvent(kind, key, value, revision)`` in revision order:
      ``"put"`` with the value, ``"delete"`` with None, one per key. Within a revision, the
      deleted keys in key order, then the put ones in the order given. A txn that deletes and
      re-puts a key gives only the put. Keys deleted by ``delete_prefixes`` or by a lease
      ending each have their delete event (a node's session vanishing is a delete). A poll
      never splits a revision.
    - History is bounded. A watch starting below the oldest revision kept raises
      ``WatchCompacted`` (etcd: compacted; memory and local stores keep the last
      ``watch_backlog`` events, 10,000 by default, in memory). A watcher that falls more than
      ``watch_backlog`` events behind is dropped: its ``poll`` raises ``WatchCompacted`` after
      the events it still had (memory/local: behind the store's changes under any prefix;
      etcd: events received and not yet polled). Either way: scan again and watch anew
      (``watch.PrefixWatch`` does).
    - A watcher sees every change to the backend, whichever client made it (etcd: another
      ``EtcdMetaStore`` on the same namespace). The local store is one process per directory,
      and its changes are kept in memory only: a watch cannot resume across its restart.
    - memory/local: a lease's expiry is noticed when the store is used, and by a blocked
      ``poll`` within 0.2 s; etcd expires leases itself. etcd watchers resume on their own
      when the connection breaks (from the last revision received + 1).
    """

    def get(self, key: str) -> bytes | None:
        ...

    def put(self, key: str, value: bytes) -> None:
        ...

    def delete(self, key: str) -> None:
        """No error if absent."""
        ...

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """(key, value) pairs whose key starts with ``prefix``, sorted by key."""
        ...

    def scan_revision(self, prefix: str) -> tuple[list[tuple[str, bytes]], int]:
        """``scan(prefix)`` and the store's revision it was read at (watch from it + 1)."""
        ...

    def watch(self, prefix: str, start_revision: int | None = None) -> Watcher:
        """The changes to keys starting with ``prefix`` from revision ``start_revision`` on (None:
        those after this call). Raises ``WatchCompacted`` when that revision is no longer kept."""
        ...

    def txn(
        self,
        puts: dict[str, bytes] | None = None,
        deletes: list[str] | None = None,
        delete_prefixes: list[str] | None = None,
        expect: dict[str, bytes | None] | None = None,
        lease: int | None = None,
    ) -> bool:
        """Apply the changes if every key in ``expect`` holds the given value (None: the key is
        absent), atomically with that check; return whether they were applied (always True
        without ``expect``). This compare-and-set is what leader election, id windows shared by
        several processes and the cluster's assignments are built on. With ``lease``, the puts
        belong to that lease (see below); an expired lease raises ``LeaseExpired``."""
        ...

    def grant_lease(self, ttl: float) -> int:
        """A lease that lives ``ttl`` seconds (1 to 86400) after it was granted or last renewed.
        Keys put with it are deleted when it ends; a later put of a key without it, or a
        delete, takes the key out of it. A node's session is such a key."""
        ...

    def renew_lease(self, lease: int) -> bool:
        """Start its ttl over; False when it already expired (its keys are gone)."""
        ...

    def revoke_lease(self, lease: int) -> None:
        """End it now and delete its keys (no error if it already ended)."""
        ...

    def close(self) -> None:
        ...


class MetaStoreMethods:
    """``put``, ``delete`` and ``scan`` of a ``MetaStore`` in terms of its ``txn`` and ``scan_revision``."""

    # what the store provides (declared, not defined: a definition here would shadow the store's)
    txn: Callable[..., bool]
    scan_revision: Callable[[str], tuple[list[tuple[str, bytes]], int]]

    def put(self, key: str, value: bytes) -> None:
        self.txn(puts={key: value})

    def delete(self, key: str) -> None:
        self.txn(deletes=[key])

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return self.scan_revision(prefix)[0]


@runtime_checkable
class Watcher(Protocol):
    """The changes under a prefix of a ``MetaStore``, in revision order (see ``MetaStore``)."""

    def poll(self, timeout: float = 1.0, max_events: int = 1024) -> list[WatchEvent]:
        """The next events (whole revisions: about ``max_events``), waiting up to ``timeout`` seconds
        for at least one; [] if none came. Raises ``WatchCompacted`` when the watcher was dropped,
        ``IoFailed`` once it or its store is closed (a poll blocked in another thread wakes up)."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class ObjectStore(Protocol):
    """Immutable blobs by key ('/'-separated, S3-like).

    ``put`` is atomic: a reader sees the whole object or none (a second put
    of the same key replaces it atomically). Keys are relative paths: no
    empty, '.' or '..' segments, no leading '/', no NUL or backslash.
    ``list``/``delete_prefix`` match plain string prefixes like S3 does.
    """

    def put(self, key: str, data) -> None:
        """``data``: bytes-like, or an iterable of bytes-like parts stored in order (streamed:
        a column or index file never has to be one buffer in memory)."""
        ...

    def get(self, key: str) -> bytes:
        """Raises ``vecdb.errors.KeyNotFound`` when absent."""
        ...

    def exists(self, key: str) -> bool:
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """No error if absent."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        ...

    def local_path(self, key: str) -> str | None:
        """A file path usable with ``np.load(mmap_mode='r')``, or None for a
        remote store. Raises ``KeyNotFound`` when a local key is absent."""
        ...

    def close(self) -> None:
        ...

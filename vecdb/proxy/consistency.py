"""Consistency levels of reads: what a search or query must wait for before a node answers.

Milvus's levels, as a cluster proxy keeps them (a standalone server applies every write before
acknowledging it, so there every level reads the newest state and nothing waits):

- **Strong**: every write acknowledged anywhere before the read began. The proxy asks the log
  for each channel's end (one lookup per channel) and the node waits until it applied it.
- **Session**: the writes of this client. pymilvus keeps one connection to one proxy, so the
  writes this proxy made are the client's: the node waits for the positions this proxy's writer
  reached, which costs no lookup at all.
- **Bounded**: the session's writes and every write older than ``BOUNDED_STALENESS`` seconds:
  the log ends are looked up at most once per that interval per channel and reused.
- **Eventually**: no promise; the proxy still passes its own positions (free, and it keeps a
  client's reads after its writes in order).

Below Bounded, a channel whose sealed segments a read takes from several nodes still waits for one
position on all of them (a recent log end, as Bounded; ``QueryNodeRouter._cut_parts``): each node
reads as of it, so an upsert is never seen half applied across two nodes.

A Strong read takes a fresh snapshot timestamp from the timestamp oracle (a coord round trip in
a cluster); the others reuse one up to ``BOUNDED_STALENESS`` old, raised to the newest timestamp
of the proxy's own writes (``ShardWriter.read_ts``), so a batch written under one timestamp is
still seen whole or not at all and a client still reads its own writes. The level of the
read in progress travels to the router in a context variable, set by the RPC handler around its
node calls (``reading_at``), so the nodes' read methods keep one signature in every deployment.
"""

from __future__ import annotations

import contextvars
import enum

from pymilvus.grpc_gen import common_pb2

BOUNDED_STALENESS = 1.0  # seconds; Milvus's default graceful time is 5 s


class ReadLevel(enum.IntEnum):
    STRONG = common_pb2.Strong
    SESSION = common_pb2.Session
    BOUNDED = common_pb2.Bounded
    EVENTUALLY = common_pb2.Eventually


_LEVEL: contextvars.ContextVar[ReadLevel] = contextvars.ContextVar("read_level", default=ReadLevel.STRONG)
# whether the snapshot of the read in progress was chosen by its client (an iterator's, a travel timestamp): reset
# as each RPC starts (``vecdb.proxy.base.rpc``), set by a read that takes one (``SearchRpcs._snapshot_ts``)
_PINNED: contextvars.ContextVar[bool] = contextvars.ContextVar("snapshot_pinned", default=False)


def level_of(request, default_level: int) -> ReadLevel:
    """The request's level: its own unless it asks for the collection's (``default_level``).
    Customized (a client-chosen guarantee timestamp) is read as Strong, the safe side."""
    use_default = getattr(request, "use_default_consistency", True)
    level = default_level if use_default else getattr(request, "consistency_level", default_level)
    try:
        return ReadLevel(level)
    except ValueError:
        return ReadLevel.STRONG


class reading_at:  # noqa: N801 - used as a function: ``with reading_at(level):``
    """The read level for the block (a class, not a generator: it is entered on every read)."""

    __slots__ = ("_level", "_token")

    def __init__(self, level: ReadLevel):
        self._level = level

    def __enter__(self) -> None:
        self._token = _LEVEL.set(self._level)

    def __exit__(self, *exc) -> None:
        _LEVEL.reset(self._token)


def current() -> ReadLevel:
    return _LEVEL.get()


def pin_snapshot(pinned: bool) -> None:
    """Whether the read this thread makes next keeps its snapshot timestamp whatever happens: an iterator's
    pages, a travel timestamp (True); else a cluster proxy retrying it after a node failed takes a fresh one
    (``QueryNodeRouter._read``: the node that took over may hold compacted segments only, without the rows
    an older snapshot sees). Every RPC starts with False."""
    _PINNED.set(pinned)


def snapshot_pinned() -> bool:
    return _PINNED.get()

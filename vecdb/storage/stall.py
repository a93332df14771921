"""A channel follower that hears nothing while the log is ahead of it: the check that every tailer
of the log runs (a query node's, a data node's), so none waits for ever on records that were cut
below it or on a follower that stopped handing them out (a JetStream consumer opened past a purge
looks like that: no later record ever comes to show it the gap)."""

from __future__ import annotations

import time
from typing import NamedTuple

from vecdb.storage.base import Log

STALL_SECONDS = 5.0  # silence after which a follower's tailer looks at the log itself
SETTLE_SECONDS = 1.0  # a record may be on its way at the first look: a follower is stuck at the second
# a log that hears its channels' ends (``heard_last``: JetStream's tips, a RemoteLog's shared poll) is
# looked at after a silence only when what it heard is past what the tailer applied, else this often
QUIET_LOOK_SECONDS = 60.0


class Heard(NamedTuple):
    """What a log's ``heard_last(channel)`` tells without asking its server: the highest position of the
    channel it heard of in ``epoch`` (0: none); a new epoch begins where it may have missed some (a
    reconnect, a failed call)."""

    epoch: int
    last: int


class Look(NamedTuple):
    """A look at the log itself about one channel: the ``Heard`` epoch then, and when (``time.monotonic``)."""

    epoch: int
    at: float


def look_stands(look: Look | None, heard: Heard, now: float, within: float = QUIET_LOOK_SECONDS) -> bool:
    """Whether what ``look`` saw, with the positions heard since, still tells the channel's end: the same
    epoch (no append missed since) and less than ``within`` seconds ago."""
    return look is not None and look.epoch == heard.epoch and now - look.at < within


def first_after(log: Log, channel: str, applied: int) -> int | None:
    """Where the channel's records after position ``applied`` begin, when it has any: ``applied + 1``
    (a follower should have handed it out), a later position (the ones between were cut), or
    ``last + 1`` when every record past ``applied`` was cut; None when the log ends at ``applied``."""
    last = log.last_position(channel)
    if last <= applied:
        return None
    records = iter(log.read(channel, applied + 1))
    try:
        return next((pos for pos, _ in records), last + 1)
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


class StallWatch:
    """Tells a follower's loop, polled after each empty poll, when its follower has stalled.

    ``heard()`` after each poll that handed out records; ``check(applied)`` after each that did not:
    after ``STALL_SECONDS`` of silence it looks at the log, and returns where the records after
    ``applied`` begin when the tailer must act: a position past ``applied + 1`` at once (records were
    cut below it), or ``applied + 1`` when the follower stayed silent on two looks ``SETTLE_SECONDS``
    apart at the same applied position with that record in the log (the follower is stuck: follow
    the channel again). None otherwise (a quiet log, or too soon to tell).

    A log with ``heard_last(channel)`` (``Heard``: JetStream's tips, ``vecdb.storage.jetstream_follow``;
    a RemoteLog's shared poll) is not asked while nothing it heard since the last look is past
    ``applied``, for up to ``QUIET_LOOK_SECONDS``: a thousand idle channels are not a thousand
    requests every few seconds."""

    def __init__(self, log: Log, channel: str):
        self.log = log
        self.channel = channel
        self._quiet_since = time.monotonic()
        self._suspect: int | None = None  # the applied position at which the log was last seen ahead
        self._heard = getattr(log, "heard_last", None)
        self._looked: Look | None = None

    def heard(self) -> None:
        self._quiet_since, self._suspect = time.monotonic(), None

    def check(self, applied: int) -> int | None:
        now = time.monotonic()
        if now - self._quiet_since < STALL_SECONDS:
            return None
        self._quiet_since = now
        heard = self._heard(self.channel) if self._heard is not None else None
        if heard is not None:
            if heard.last <= applied and look_stands(self._looked, heard, now):
                return None  # nothing appended past ``applied`` since the last look, as far as it heard
            self._looked = Look(heard.epoch, now)
        first = first_after(self.log, self.channel, applied)
        if first is None or first > applied + 1:
            self._suspect = None
            return first
        if self._suspect != applied:  # a record may be on its way: look again shortly
            self._suspect = applied
            self._quiet_since -= STALL_SECONDS - min(SETTLE_SECONDS, STALL_SECONDS)
            return None
        self._suspect = None
        return first

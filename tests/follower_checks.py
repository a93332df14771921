"""Checks every log's follower passes, shared by the tests of each log."""

from __future__ import annotations

import threading
import time


def closing_wakes_a_waiting_poll(follower, close=None) -> BaseException:
    """Close ``follower`` (or call ``close``) while a poll of 30 s waits in another thread: the poll
    must end within a second; returns what it raised (it must raise)."""
    raised: list[BaseException] = []

    def poll() -> None:
        try:
            follower.poll(timeout=30)
        except BaseException as e:  # noqa: BLE001
            raised.append(e)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    (close or follower.close)()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - started < 1.0
    assert raised, "the poll returned instead of raising"
    return raised[0]

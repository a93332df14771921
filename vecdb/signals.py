"""SIGINT and SIGTERM, handled outside signal context.

A Python signal handler runs in the main thread between two bytecodes of whatever that thread was
doing, even inside ``threading.Event.set`` or a ``Condition``'s ``__enter__``; a handler that takes
a lock the interrupted code holds never returns. Seen in CI: a worker of ``vecdb standalone
--workers 2`` whose primary had been killed got SIGTERM (PR_SET_PDEATHSIG), began to stop, got more
SIGTERMs while revoking its lease, and hung for ever in four nested handlers' ``Event.set``.

So the handler installed here does nothing. Python's C-level handler writes each signal's number
to the wakeup fd (``signal.set_wakeup_fd``); a thread of our own reads it and runs the callbacks,
where taking locks is fine. The main thread waits on an ``Event`` as before.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_lock = threading.Lock()
_callbacks: list[Callable[[], None]] = []
_watching = False


def on_stop_signal(callback: Callable[[], None]) -> None:
    """Call ``callback()`` from the signal-watching thread whenever SIGINT or SIGTERM comes. Call it
    from the main thread (as ``signal.signal`` must be), before the process says it is ready, so a
    stop sent right after that is not missed."""
    global _watching
    with _lock:
        _callbacks.append(callback)
        if _watching:
            return
        r, w = os.pipe()
        os.set_blocking(w, False)  # the C handler must never block on it
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, _nothing)  # a Python handler (not the default), so the signal is caught
        threading.Thread(target=_watch, args=(r,), name="stop-signals", daemon=True).start()
        _watching = True


def stop_event() -> threading.Event:
    """An Event that is set when SIGINT or SIGTERM comes (see ``on_stop_signal``)."""
    event = threading.Event()
    on_stop_signal(event.set)
    return event


def _nothing(signum, frame) -> None:
    """The Python-level handler: the work happens in ``_watch``."""


def _watch(fd: int) -> None:
    stops = {int(s) for s in STOP_SIGNALS}
    while True:
        try:
            got = os.read(fd, 512)
        except OSError:
            return
        if not got:
            return
        if stops.isdisjoint(got):
            continue  # another signal with a Python handler of its own
        with _lock:
            callbacks = list(_callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one failing callback must not keep the others from running
                log.exception("handling a stop signal")

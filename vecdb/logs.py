"""Log lines of a vecdb process: one line per event, naming the role and the node id, at a level
settable per role.

Format: ``<time> <LEVEL> [<role> <node id>] <logger>: <message>``; a traceback or a message with
line breaks stays on its one line (breaks written as ``\\n``), so a log collector never splits an
event. The node id is known once the role picked it (``NodeProcess`` calls ``set_node``; the coord
names itself by its address); until then it shows as ``-``.

The level, first that is set: ``--log-level``; ``log.<role>`` (``VECDB_LOG__QUERYNODE=DEBUG``, or
``log: {querynode: DEBUG}`` in the config file, for a file shared by every role); ``log.level``
(``VECDB_LOG__LEVEL``); INFO.
"""

from __future__ import annotations

import faulthandler
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)s [%(vecdb_role)s %(vecdb_node)s] %(name)s: %(message)s"

_context = {"role": "-", "node": "-"}


class _Context(logging.Filter):
    """Stamps each record with the process's role and node id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.vecdb_role = _context["role"]
        record.vecdb_node = _context["node"]
        return True


class OneLineFormatter(logging.Formatter):
    """A record, its traceback included, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


def level_for(role: str, flag: str | None, settings=None) -> str:
    """The level of ``role``: ``flag`` (``--log-level``), ``log.<role>``, ``log.level``, INFO."""
    if flag:
        return flag.upper()
    if settings is not None:
        per_role = getattr(settings, role, None) or settings.level
        if per_role:
            return per_role.upper()
    return "INFO"


def setup(role: str, level: str = "INFO", stream=None) -> None:
    """Log to ``stream`` (stderr) in the one-line format, as ``role``, at ``level``."""
    _context["role"] = role
    _context["node"] = "standalone" if role == "standalone" else "-"
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_vecdb", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    handler.addFilter(_Context())
    handler._vecdb = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    set_level(level)


def stacks_on_crash() -> None:
    """A crash of the interpreter (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL: a native library's fault)
    writes every thread's Python stack to stderr, the log, before the process dies: without it the log
    just ends. Unchanged where it is already on (``-X faulthandler``, pytest) or stderr has no file."""
    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable(file=sys.stderr)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no fileno (a stream in memory, say)
        pass


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    # FAISS logs which of its builds it tried ("Could not load library with AVX512 support") at INFO:
    # noise for a user, and not a problem (faiss-cpu picks the best kernels at run time).
    logging.getLogger("faiss.loader").setLevel(max(logging.WARNING, logging.getLogger().level))


def set_node(role: str, node_id: str) -> None:
    """The role and node id this process's lines name (the last role started, when a test runs
    several in one process)."""
    _context["role"], _context["node"] = role, node_id


SLOW_STOP_S = 10.0  # a stop that takes longer prints every thread's stack (where it hangs)


@contextmanager
def stacks_if_slow(seconds: float = SLOW_STOP_S) -> Iterator[None]:
    """Around a process's stop: if it has not finished after ``seconds``, every thread's Python
    stack goes to stderr (faulthandler, so it works while threads hold locks or the GIL is busy),
    and the stop goes on. A node that hangs on its way out says where, in its own log."""
    faulthandler.dump_traceback_later(seconds, exit=False, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()

"""Which earlier runs of a standalone server died of a native crash, not of a kill from outside.

A server that dies in the middle of an index build was killed either by the build (FAISS aborting,
a segfault: the same build would kill the next run too, vecdb.coord.index_builds refuses it) or
from outside (kill -9, the OOM killer, a power cut: the build is right to run once more). Only the
first leaves a trace the process can write: ``arm(data_dir)`` sends this run's fatal-signal stacks
(faulthandler: SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) to ``<data_dir>/crashes/<incarnation>``,
a file created empty at start, instead of stderr; ``died_natively`` is True for a run whose file
holds a dump. The next ``arm`` logs those stacks (so they reach the log, one start late) and keeps
the newest ``KEEP`` files. A file lost (pruned, another disk) makes a native crash read as a kill:
the build runs once more and is refused after that second crash.
"""

from __future__ import annotations

import faulthandler
import logging
import os
from typing import IO

from vecdb.coord.session import INCARNATION

log = logging.getLogger(__name__)

DIRNAME = "crashes"
REPORTED = ".reported"  # the suffix of a dump ``arm`` logged already
KEEP = 32
_armed: list[IO[str]] = []  # this run's file, open for the life of the process (faulthandler writes to it)


def directory(data_dir: str) -> str:
    return os.path.join(data_dir, DIRNAME)


def arm(data_dir: str) -> None:
    """This process's fatal-signal stacks to its file under ``data_dir`` (see the module doc)."""
    folder = directory(data_dir)
    try:
        os.makedirs(folder, exist_ok=True)
        _report_and_prune(folder)
        f = open(os.path.join(folder, INCARNATION), "w")  # noqa: SIM115 - open until the process ends
    except OSError as e:  # a read-only data dir: a crash then reads as a kill from outside
        log.warning("cannot keep native crash records in %s: %s", folder, e)
        return
    faulthandler.enable(file=f)
    _armed.append(f)


def died_natively(data_dir: str, incarnation: str) -> bool:
    """True when the run ``incarnation`` of this data dir died of a fatal signal (its stacks were written)."""
    path = os.path.join(directory(data_dir), incarnation)
    for p in (path, path + REPORTED):
        try:
            if os.path.getsize(p) > 0:
                return True
        except OSError:
            pass
    return False


def _report_and_prune(folder: str) -> None:
    entries = sorted(os.scandir(folder), key=lambda e: e.stat().st_mtime)
    for old in entries[:-KEEP] if len(entries) > KEEP else []:
        os.unlink(old.path)
    for e in entries[-KEEP:]:
        if e.name.endswith(REPORTED) or e.stat().st_size == 0:
            continue
        with open(e.path, errors="replace") as f:
            log.error("an earlier run of this server (%s) died of a native crash; its stacks:\n%s", e.name, f.read())
        os.replace(e.path, e.path + REPORTED)

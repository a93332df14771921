"""Index build attempts, recorded in the metadata store so that a failed build is reported and
a build that took its process down is never run again.

An index build hands a segment's vectors to native code (FAISS). A Python exception from it is
a failure we can record; a native abort (C++ ``terminate`` inside an OpenMP region, a segfault)
kills the whole process, and a restart that loads the collection again would rebuild the same
segment and die again, for ever. So each build of a persisted segment runs between two writes:

- before: ``idxbuild/<collection>/<index>/<channel>/<position>-<partition>/<incarnation>`` =
  ``{"state": "running", ...}``, where ``incarnation`` names this process's run
  (``vecdb.coord.session.INCARNATION``, also in every session this process holds);
- after: the key is deleted on success, or set to ``{"state": "failed", "reason": ...}``.

Before building, the segment's records are read. A ``failed`` one refuses the build. A
``running`` one whose process no longer holds any session died during that build: it becomes
``failed`` ("the process stopped while building"), and the build is refused. A refused or
failed segment is served by exact search, and DescribeIndex reports the index ``Failed`` with
the reason. Nothing retries it until the index is dropped and created again (a new index id);
dropping the index or the collection deletes its records.

A clean stop forgets the builds it interrupts (``close``), so only a process that dies in the
middle of a build leaves a ``running`` record behind. A builder made with ``retry_after_crash``
(a cluster's data node: it is also killed from outside, and its channels move to another data
node) marks its first attempt ``"retry": true``: a process that finds such a record of a dead
process deletes it and builds once more, without the mark, so a build that kills its process
again is refused after two crashes instead of one. A standalone server's builders retry too
(``data_dir`` set): it is killed from outside as well, and its own data dir tells a native crash,
which is not built again (``vecdb.native_crashes``), from a kill. Segments without files (no ``prefix``)
have no stable identity across restarts and are built without records.

Once the index file is written whole, the builder puts the same key with
``{"state": "finished", "key": <index object key>, "rows": ...}`` (``finish``): the one record a
finished build leaves, which is how query nodes learn the file is there (they watch ``idxbuild/``,
``vecdb.querynode.node``) and how DescribeIndex counts a segment as indexed without asking the
object store. A segment built twice would show two finished records (two incarnations).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from vecdb import native_crashes
from vecdb.coord.session import INCARNATION, live_incarnations
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

T = TypeVar("T")
ROOT = "idxbuild/"
RUNNING, FAILED, FINISHED = "running", "failed", "finished"
# A test switch for the crash tests: "raise" makes every recorded build fail with an exception,
# "abort" makes it kill the process the way a native crash does, "sleep:<seconds>" makes it take that
# long (a window in which the segment is not indexed yet). Never set in production.
FAULT_ENV = "VECDB_FAULT_INDEX_BUILD"


class BuildRefused(Exception):
    """The build failed before, or killed its process before; ``reason`` says which. ``later``: it is
    being built elsewhere now, so it may need building once more if that build does not finish."""

    def __init__(self, reason: str, later: bool = False):
        super().__init__(reason)
        self.reason, self.later = reason, later


def collection_prefix(collection_id: int) -> str:
    return f"{ROOT}{collection_id}/"


def index_prefix(collection_id: int, index_id: int) -> str:
    return f"{ROOT}{collection_id}/{index_id}/"


def _segment_prefix(collection_id: int, index_id: int, segment_prefix: str) -> str:
    """``segments/<collection>/<channel>/<position>-<partition>/`` -> that segment's records' prefix."""
    tail = segment_prefix.split("/", 2)[2]  # "<channel>/<position>-<partition>/"
    return f"{index_prefix(collection_id, index_id)}{tail}"


def segment_records_prefix(collection_id: int, index_id: int, segment_prefix: str) -> str:
    """The prefix of one segment's build records of one index."""
    return _segment_prefix(collection_id, index_id, segment_prefix)


def parse_key(key: str) -> tuple[int, int, str] | None:
    """``idxbuild/<collection>/<index>/<channel>/<segment dir>/<incarnation>`` -> (collection id,
    index id, segment prefix ``segments/<collection>/<channel>/<segment dir>/``); None for another key."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] + "/" != ROOT:
        return None
    try:
        cid, index_id = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return cid, index_id, f"segments/{cid}/{parts[3]}/{parts[4]}/"


def _records(meta: MetaStore, collection_id: int, *states: str):
    """((index id, segment prefix), record) of a collection's build records in one of ``states``."""
    marks = [f'"{state}"'.encode() for state in states]
    for key, raw in meta.scan(collection_prefix(collection_id)):
        if not any(m in raw for m in marks):  # (most records are of another state: not parsed)
            continue
        rec, parsed = json.loads(raw), parse_key(key)
        if rec["state"] in states and parsed is not None:
            yield (parsed[1], parsed[2]), rec


def finished(meta: MetaStore, collection_id: int) -> dict[tuple[int, str], str]:
    """(index id, segment prefix) -> index object key, of every finished build of a collection."""
    return {build: rec["key"] for build, rec in _records(meta, collection_id, FINISHED)}


def settled(meta: MetaStore, collection_id: int) -> set[tuple[int, str]]:
    """(index id, segment prefix) of every build of a collection that is over: finished, or failed (a
    failed build is never tried again)."""
    return {build for build, _ in _records(meta, collection_id, FINISHED, FAILED)}


def finished_key(meta: MetaStore, collection_id: int, index_id: int, segment_prefix: str) -> str | None:
    """The index file of the segment's finished build of ``index_id``; None when none finished."""
    for _, raw in meta.scan(_segment_prefix(collection_id, index_id, segment_prefix)):
        if b'"finished"' in raw and (rec := json.loads(raw))["state"] == FINISHED:
            return rec["key"]
    return None


def forget_segment(meta: MetaStore, collection_id: int, segment_prefix: str, index_ids) -> None:
    """The build records of a segment that is gone (compacted away, its partition dropped)."""
    meta.txn(delete_prefixes=[_segment_prefix(collection_id, i, segment_prefix) for i in index_ids])


def failures(meta: MetaStore, collection_id: int, index_id: int) -> list[dict]:
    """The failed builds of one index: ``{"segment", "rows", "reason"}`` each, oldest first.

    A ``running`` record of a process that is gone counts too (it is what a crash leaves)."""
    live = None
    out = []
    prefix = index_prefix(collection_id, index_id)
    for key, raw in meta.scan(prefix):
        rec = json.loads(raw)
        if rec["state"] == FINISHED:
            continue
        if rec["state"] == RUNNING:
            live = live_incarnations(meta) if live is None else live
            if rec["incarnation"] in live or rec.get("retry"):
                continue  # building, or to be built again by the channel's next data node
            rec = _crashed(rec)
        out.append({"segment": key[len(prefix):].rsplit("/", 1)[0], "rows": rec.get("rows", 0), "reason": rec["reason"],
                    "since": rec.get("since", "")})
    return sorted(out, key=lambda r: r["since"])


def _crashed(rec: dict) -> dict:
    return {**rec, "state": FAILED,
            "reason": (f"the server process (pid {rec.get('pid')} on {rec.get('host')}) stopped while building this "
                       f"index at {rec.get('since')}; a native crash is assumed and the build is not retried: the "
                       f"segment is searched exactly. Drop and create the index again to retry")}


class IndexBuilds:
    """Runs index builds of persisted segments under records in ``meta`` (see the module doc)."""

    def __init__(self, meta: MetaStore, retry_after_crash: bool = False):
        self.meta = meta
        self.retry_after_crash = retry_after_crash  # see the module doc
        self.data_dir: str | None = None  # a standalone server's: its runs' native crashes (vecdb.native_crashes)
        self._lock = threading.Lock()
        self._running: set[str] = set()  # this process's record keys of builds in progress
        self._closed = False

    def run(self, collection_id: int, index_id: int, segment_prefix: str | None, rows: int,
            build: Callable[[], T]) -> T:
        """``build()`` under a record; raises BuildRefused when the segment's build failed or crashed
        before, and re-raises (after recording it) whatever ``build`` raises."""
        if segment_prefix is None:
            return build()
        prefix = _segment_prefix(collection_id, index_id, segment_prefix)
        key = prefix + INCARNATION
        with self._lock:
            if key in self._running:
                raise BuildRefused("the same build is already running in this process", later=True)
            retried = self._refuse_if_failed(prefix)
            self._running.add(key)
        try:
            running = json.loads(_record(RUNNING, rows))
            if self.retry_after_crash and not retried:
                running["retry"] = True
            self.meta.put(key, json.dumps(running).encode())
            _inject_fault()
            result = build()
        except BaseException as exc:
            self._finish(key, _record(FAILED, rows, f"{type(exc).__name__}: {exc}"))
            raise
        self._finish(key, None)
        return result

    def finish(self, collection_id: int, index_id: int, segment_prefix: str, rows: int, index_key: str,
               by: str | None = None, segment_id: int | None = None) -> None:
        """Record that the segment's index file ``index_key`` is written whole (after ``run``)."""
        rec = json.loads(_record(FINISHED, rows))
        rec["key"] = index_key
        if by is not None:
            rec["by"] = by
        if segment_id is not None:
            rec["segment_id"] = segment_id
        self.meta.put(_segment_prefix(collection_id, index_id, segment_prefix) + INCARNATION, json.dumps(rec).encode())

    def _refuse_if_failed(self, prefix: str) -> bool:
        """Raises BuildRefused when the build must not run; True when it runs again after a crash."""
        retried = False
        records = self.meta.scan(prefix)
        live = live_incarnations(self.meta) if any(b'"running"' in raw for _, raw in records) else set()
        for key, raw in records:
            rec = json.loads(raw)
            if rec["state"] == FINISHED:
                continue  # built before (its file is the caller's to check): building again is allowed
            if rec["state"] == RUNNING and rec["incarnation"] == INCARNATION:
                continue  # this process's own record (a build of the same segment by another of its parts)
            if rec["state"] == RUNNING and rec["incarnation"] in live:
                # built once, not once per process
                raise BuildRefused("another live process is building it", later=True)
            if rec["state"] == RUNNING and rec.get("retry") and not self._died_natively(rec):
                log.warning("index build %s: its process (pid %s on %s) stopped while building it; building it "
                            "once more", key, rec.get("pid"), rec.get("host"))
                self.meta.delete(key)
                retried = True
                continue
            if rec["state"] == RUNNING:
                rec = _crashed(rec)
                self.meta.put(key, json.dumps(rec).encode())
                log.error("index build %s: %s", key, rec["reason"])
            raise BuildRefused(rec["reason"])
        return retried

    def _died_natively(self, rec: dict) -> bool:
        return self.data_dir is not None and native_crashes.died_natively(self.data_dir, rec["incarnation"])

    def _finish(self, key: str, record: bytes | None) -> None:
        with self._lock:
            if key not in self._running:
                return  # close() forgot it: the store may be closed already
            self._running.discard(key)
            if record is None:
                self.meta.delete(key)
            else:
                self.meta.put(key, record)

    def close(self) -> None:
        """A clean stop: builds still running are interrupted, not crashed; forget their records."""
        with self._lock:
            keys, self._running = self._running, set()
        for key in keys:
            try:
                self.meta.delete(key)
            except Exception:  # noqa: BLE001 - best effort; the record then reads as a crash
                log.warning("cannot forget the interrupted index build %s", key)


def _record(state: str, rows: int, reason: str = "") -> bytes:
    rec = {"state": state, "incarnation": INCARNATION, "pid": os.getpid(), "host": os.uname().nodename,
           "since": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    if reason:
        rec["reason"] = reason
    return json.dumps(rec).encode()


def _inject_fault() -> None:
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "raise":
        raise RuntimeError(f"index build failed on purpose ({FAULT_ENV}=raise)")
    if fault == "abort":
        os.abort()
    if fault.startswith("sleep:"):
        time.sleep(float(fault.split(":", 1)[1]))

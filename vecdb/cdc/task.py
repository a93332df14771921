"""A CDC task: what it replicates (its spec) and where it stands (its state), kept in the CDC
service's own metadata store.

Layout (the service's store, not the source's)::

    cdc/tasks/<task id>                 the spec and the state (JSON), rewritten on every change of state
    cdc/pos/<task id>/<channel>         the last source log position applied to the target (text int)
    cdc/stamp/<task id>/<channel>       "<stamp> <floor> <floor stamp>", written with the position
                                        (``STAMP_PREFIX``; ``vecdb.cdc.log_order`` reads it)
    cdc/colls/<task id>/<source coll>   a source collection id the task replicates: {"db", "name", "target",
                                        "truncated_ts", "partitions", "indexes"} (where it is on the target, and
                                        the source changes applied to it: ``vecdb.cdc.log_order``)
    cdc/dbs/<task id>/<db>              a database the task created on the target (dropped there with the source's)
    cdc/copy/<task id>/<source coll>    a base copy still to do (start "copy", ``vecdb.cdc.base_copy``): written
                                        with the collection's start positions, deleted once its rows are copied

A channel's position moves only after the target acknowledged every record up to it, so a
restarted task starts again right after what the target has; what it applies again (the records
of a batch the target took but whose position was not written yet) are upserts by primary key
and deletes by primary key, in log order, which give the same rows a second time: nothing is
lost, nothing is doubled.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from vecdb import errors
from vecdb.storage.base import MetaStore

TASK_PREFIX = "cdc/tasks/"
POS_PREFIX = "cdc/pos/"
COLLS_PREFIX = "cdc/colls/"
DBS_PREFIX = "cdc/dbs/"
COPY_PREFIX = "cdc/copy/"
# a channel's stamp, written with its position (vecdb.cdc.log_order needs it once the log is cut there):
# "<stamp> <floor> <floor stamp>": no record the task applied up to the position is after <stamp>, none up
# to position <floor> after <floor stamp> (0: the task applied none: where it took the channel up)
STAMP_PREFIX = "cdc/stamp/"
Stamp = tuple[int, int, int]

RUNNING, PAUSED, FAILED = "running", "paused", "failed"
STARTS = ("now", "earliest", "copy")


class TaskFailed(Exception):
    """The task cannot go on by itself (the source's log lost what it needs, two source collections
    map to one target name): it stops as failed, with the reason and how to re-sync."""


@dataclass
class TaskSpec:
    """``source``: the source deployment's storage settings (``vecdb.config.StorageSettings`` keys: log,
    meta, namespace, and the s3_* keys; its log and metadata store must be reachable from the CDC
    service: NATS and etcd). ``target``: ``{"uri": ..., "token": ...}``, any Milvus API endpoint.
    ``collections``: ``["*"]`` or names (``name`` or ``db.name``); ``rename``: source name -> target
    name. ``start``: ``now`` (each collection's channels from their current end; collections created
    later from their beginning), ``earliest`` (from the oldest record the log kept), ``copy`` (as
    ``now``, after a base copy of each existing collection's rows read through the source's Milvus API:
    ``source`` then also needs ``uri`` and, with authentication, ``token``; ``vecdb.cdc.base_copy``) or a
    hybrid timestamp (records at or after it)."""

    source: dict[str, Any]
    target: dict[str, Any]
    collections: list[str] = field(default_factory=lambda: ["*"])
    rename: dict[str, str] = field(default_factory=dict)
    start: str | int = "now"

    def validate(self) -> None:
        if not isinstance(self.source, dict) or not self.source.get("meta") or not self.source.get("log"):
            raise errors.InvalidParameter("cdc task: source needs its 'log' and 'meta' store URLs (and 'namespace')")
        if self.source["meta"] == "local" or self.source["log"] == "wal":
            raise errors.InvalidParameter(
                "cdc task: the source's log and metadata store must be shared servers (nats://, etcd://): the "
                "embedded ones are opened by one process at a time")
        if not isinstance(self.target, dict) or not self.target.get("uri"):
            raise errors.InvalidParameter("cdc task: target needs a 'uri'")
        if not isinstance(self.collections, list) or not self.collections \
                or not all(isinstance(c, str) and c for c in self.collections):
            raise errors.InvalidParameter("cdc task: collections must be a non-empty list of names or ['*']")
        if not isinstance(self.rename, dict):
            raise errors.InvalidParameter("cdc task: rename must map source names to target names")
        if isinstance(self.start, bool) or not (self.start in STARTS or isinstance(self.start, int)):
            raise errors.InvalidParameter(f"cdc task: start must be one of {STARTS} or a timestamp, not {self.start!r}")
        if self.start == "copy" and not (isinstance(self.source.get("uri"), str) and self.source["uri"]):
            raise errors.InvalidParameter(
                "cdc task: start 'copy' reads the source's existing rows through its Milvus API: source needs "
                "a 'uri' (and a 'token' where the source has authentication), e.g. \"uri\": \"http://dc1:19530\"")
        if not isinstance(self.source.get("token", ""), str):
            raise errors.InvalidParameter("cdc task: source 'token' must be a string (\"user:password\")")

    def wants(self, db: str, name: str) -> bool:
        return "*" in self.collections or name in self.collections or f"{db}.{name}" in self.collections

    def target_name(self, db: str, name: str) -> str:
        return self.rename.get(f"{db}.{name}", self.rename.get(name, name))


@dataclass
class Task:
    id: str
    spec: TaskSpec
    state: str = RUNNING
    reason: str = ""  # why it is paused or failed (never empty then)
    created: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Task:
        d = json.loads(raw)
        d["spec"] = TaskSpec(**d["spec"])
        return cls(**d)


def new_task_id() -> str:
    return "t" + uuid.uuid4().hex[:12]


def check_task_id(task_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", task_id):
        raise errors.InvalidParameter(f"invalid cdc task id {task_id!r}")
    return task_id


class TaskStore:
    """The tasks, positions and replicated collections in the service's metadata store."""

    def __init__(self, meta: MetaStore):
        self.meta = meta

    def put(self, task: Task) -> None:
        self.meta.put(TASK_PREFIX + task.id, task.to_json())

    def get(self, task_id: str) -> Task | None:
        raw = self.meta.get(TASK_PREFIX + check_task_id(task_id))
        return None if raw is None else Task.from_json(raw)

    def all(self) -> list[Task]:
        return [Task.from_json(raw) for _, raw in self.meta.scan(TASK_PREFIX)]

    def delete(self, task_id: str) -> None:
        self.meta.txn(deletes=[TASK_PREFIX + task_id],
                      delete_prefixes=[f"{p}{task_id}/" for p in (POS_PREFIX, COLLS_PREFIX, DBS_PREFIX, COPY_PREFIX,
                                                                     STAMP_PREFIX)])

    # --- positions --------------------------------------------------------------------------
    def positions(self, task_id: str) -> dict[str, int]:
        p = f"{POS_PREFIX}{task_id}/"
        return {k[len(p):]: int(v.split()[0]) for k, v in self.meta.scan(p)}  # (a stamp after it: early 12-06 builds)

    def stamps(self, task_id: str) -> dict[str, Stamp]:
        """The stamp of each channel's position, where one was recorded (``STAMP_PREFIX``)."""
        p = f"{STAMP_PREFIX}{task_id}/"
        out: dict[str, Stamp] = {}
        for k, v in self.meta.scan(p):
            a, b, c = (int(x) for x in v.split())
            out[k[len(p):]] = (a, b, c)
        return out

    def commit_position(self, task_id: str, channel: str, position: int, stamp: Stamp | None = None) -> None:
        if stamp is None:
            self.meta.put(f"{POS_PREFIX}{task_id}/{channel}", str(position).encode())
        else:
            self.meta.txn(puts=_positions(task_id, {channel: position}, {channel: stamp}))

    # --- replicated databases ---------------------------------------------------------------
    def databases(self, task_id: str) -> set[str]:
        p = f"{DBS_PREFIX}{task_id}/"
        return {k[len(p):] for k, _ in self.meta.scan(p)}

    def add_database(self, task_id: str, db: str) -> None:
        self.meta.put(f"{DBS_PREFIX}{task_id}/{db}", b"1")

    def remove_database(self, task_id: str, db: str) -> None:
        self.meta.delete(f"{DBS_PREFIX}{task_id}/{db}")

    # --- replicated collections ----------------------------------------------------------------
    def collections(self, task_id: str) -> dict[int, dict[str, Any]]:
        p = f"{COLLS_PREFIX}{task_id}/"
        return {int(k[len(p):]): json.loads(v) for k, v in self.meta.scan(p)}

    def add_collection(self, task_id: str, cid: int, entry: dict[str, Any], positions: dict[str, int],
                       copy: bool = False, stamps: dict[str, Stamp] | None = None) -> None:
        """Record a replicated collection's entry and positions of its channels (a new one's start,
        or where a change sends them back: ``vecdb.cdc.log_order``) in one step (with ``copy``: and
        that its base copy is still to do)."""
        puts = {f"{COLLS_PREFIX}{task_id}/{cid}": json.dumps(entry).encode()}
        puts.update(_positions(task_id, positions, stamps or {}))
        unstamped = [f"{STAMP_PREFIX}{task_id}/{ch}" for ch in positions if ch not in (stamps or {})]
        if copy:
            puts[f"{COPY_PREFIX}{task_id}/{cid}"] = b"pending"
        self.meta.txn(puts=puts, deletes=unstamped)

    def remove_collection(self, task_id: str, cid: int, channels: list[str]) -> None:
        self.meta.txn(deletes=[f"{COLLS_PREFIX}{task_id}/{cid}", f"{COPY_PREFIX}{task_id}/{cid}"]
                      + [f"{p}{task_id}/{ch}" for ch in channels for p in (POS_PREFIX, STAMP_PREFIX)])

    # --- base copies (start "copy") ----------------------------------------------------------
    def copies(self, task_id: str) -> set[int]:
        """The collections whose base copy is still to do."""
        p = f"{COPY_PREFIX}{task_id}/"
        return {int(k[len(p):]) for k, _ in self.meta.scan(p)}

    def copy_done(self, task_id: str, cid: int) -> None:
        self.meta.delete(f"{COPY_PREFIX}{task_id}/{cid}")


def _positions(task_id: str, positions: dict[str, int], stamps: dict[str, Stamp]) -> dict[str, bytes]:
    """The keys of channels' positions and of those of their stamps given."""
    puts = {f"{POS_PREFIX}{task_id}/{ch}": str(p).encode() for ch, p in positions.items()}
    puts.update({f"{STAMP_PREFIX}{task_id}/{ch}": " ".join(map(str, stamps[ch])).encode()
                 for ch in positions if ch in stamps})
    return puts

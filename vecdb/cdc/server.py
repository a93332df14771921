"""``vecdb cdc``: the CDC service, its tasks and their HTTP API (docs/cdc.md, docs/openapi/cdc.json).

The service keeps its tasks in a metadata store of its own (``--meta-store``: ``local`` under
``--data-dir``, or etcd with ``--namespace``; ``vecdb.cdc.task``) and runs a ``Replicator`` for each
task in state ``running``. A restarted service resumes every running task from its committed
positions; a paused task stays paused with the reason it was given (``pause`` takes one; the
default says it was paused through the API), a failed one with the reason it failed.

HTTP API (JSON in and out; errors are ``{"error": message, "code": Milvus status code}`` with 400,
404 or 500):

    POST   /v1/tasks                 create: {"source": {...}, "target": {...}, "collections", "rename",
                                     "start"} -> the task
    GET    /v1/tasks                 {"tasks": [task, ...]}
    GET    /v1/tasks/<id>            the task: spec, state, reason, last_error, lag, positions
    POST   /v1/tasks/<id>/pause      {"reason": "..."} (optional)
    POST   /v1/tasks/<id>/resume
    DELETE /v1/tasks/<id>            stops it, forgets it, takes its follower positions off the source
    GET    /healthz, /metrics        vecdb_cdc_task_state, _lag_records, _lag_seconds, _applied_rows_total,
                                     vecdb_cdc_error (1 while the last pass failed)
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from vecdb import errors
from vecdb.cdc.redact import redact
from vecdb.cdc.replicator import Replicator, unpublish
from vecdb.cdc.task import FAILED, PAUSED, RUNNING, Task, TaskSpec, TaskStore, check_task_id, new_task_id
from vecdb.http import BACKLOG
from vecdb.metrics import exposition
from vecdb.storage.base import MetaStore

log = logging.getLogger(__name__)

_STATES = (RUNNING, PAUSED, FAILED)
TASK_STATE = Gauge("vecdb_cdc_task_state", "1 for the state each CDC task is in", ["task", "state"])
LAG_RECORDS = Gauge("vecdb_cdc_lag_records", "source log records not yet applied to the target", ["task"])
LAG_SECONDS = Gauge("vecdb_cdc_lag_seconds", "age of the oldest change not yet applied to the target", ["task"])
APPLIED_ROWS = Gauge("vecdb_cdc_applied_rows_total", "rows upserted on the target by this run of the task "
                     "(from 0 again when it is resumed or the service restarts)",
                     ["task"])
ERRORS = Gauge("vecdb_cdc_error", "1 while the task's last pass failed (retried with backoff)", ["task"])


class CdcService:
    def __init__(self, meta: MetaStore):
        self.store = TaskStore(meta)
        self._lock = threading.Lock()
        self._running: dict[str, Replicator] = {}
        for task in self.store.all():
            if task.state == RUNNING:
                self._start(task)

    def _start(self, task: Task) -> None:
        self._running[task.id] = Replicator(task, self.store).start()

    # --- the API's operations ---------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.InvalidParameter("cdc task: a JSON object expected")
        known = {"source", "target", "collections", "rename", "start", "id"}
        if set(body) - known:
            raise errors.InvalidParameter(f"cdc task: unknown keys {sorted(set(body) - known)}")
        try:
            spec = TaskSpec(**{k: v for k, v in body.items() if k != "id"})
        except TypeError as e:
            raise errors.InvalidParameter(f"cdc task: {e}") from None
        spec.validate()
        task = Task(check_task_id(str(body.get("id") or new_task_id())), spec)
        with self._lock:
            if self.store.get(task.id) is not None:
                raise errors.InvalidParameter(f"cdc task {task.id} already exists")
            self.store.put(task)
            self._start(task)
        return self.describe(task.id)

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(t.id) for t in self.store.all()]

    def _task(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None:
            raise errors.InvalidParameter(f"cdc task not found: {task_id}")
        return task

    def describe(self, task_id: str) -> dict[str, Any]:
        task = self._task(task_id)
        rep = self._running.get(task_id)
        out: dict[str, Any] = {"id": task.id, "spec": redact(asdict(task.spec)),  # (tokens as ***: cdc.redact)
                               "state": task.state, "reason": task.reason, "created": task.created,
                               "positions": self.store.positions(task.id)}
        if rep is not None:
            p = rep.progress.to_dict()
            if p["state"] == FAILED:
                out["state"], out["reason"] = FAILED, p["reason"]
            out.update({k: p[k] for k in ("last_error", "last_error_at", "lag_records", "lag_seconds",
                                          "applied_records", "applied_rows", "channels", "copying", "copy_pending",
                                          "copied_rows")})
        return out

    def pause(self, task_id: str, reason: str = "") -> dict[str, Any]:
        with self._lock:
            task = self._task(task_id)
            rep = self._running.pop(task_id, None)
            if rep is not None:
                rep.stop()
            task.state, task.reason = PAUSED, reason or "paused through the API (POST /v1/tasks/<id>/pause)"
            self.store.put(task)
        return self.describe(task_id)

    def resume(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            task = self._task(task_id)
            old = self._running.pop(task_id, None)
            if old is not None:
                old.stop()
            task.state, task.reason = RUNNING, ""
            self.store.put(task)
            self._start(task)
        return self.describe(task_id)

    def delete(self, task_id: str) -> None:
        with self._lock:  # the series go with the task, under the lock update_metrics takes
            task = self._task(task_id)
            rep = self._running.pop(task_id, None)
            if rep is not None:
                rep.stop()
            self.store.delete(task_id)
            # every series of the task (its states too: else a deleted task showed its last state for good)
            for g, labels in [*((g, (task_id,)) for g in (LAG_RECORDS, LAG_SECONDS, APPLIED_ROWS, ERRORS)),
                              *((TASK_STATE, (task_id, s)) for s in _STATES)]:
                _remove(g, *labels)
        try:
            unpublish(task.spec.source, task_id)
        except Exception as e:  # noqa: BLE001 (the source is unreachable: its positions stay; logged)
            log.warning("cdc task %s deleted, but its follower positions stay on the source: %s", task_id, e)

    def update_metrics(self) -> None:
        """Each task's series; a task deleted meanwhile is skipped (its series stay removed)."""
        for t in self.store.all():
            with self._lock:
                if self.store.get(t.id) is None:
                    continue
                d = self.describe(t.id)
                for s in _STATES:
                    TASK_STATE.labels(t.id, s).set(1 if d["state"] == s else 0)
                for gauge, key in ((LAG_RECORDS, "lag_records"), (LAG_SECONDS, "lag_seconds")):
                    if key in d:
                        gauge.labels(t.id).set(d[key])
                    else:  # a task not running (paused, failed) measures no lag: no series, rather than a 0
                        _remove(gauge, t.id)
                APPLIED_ROWS.labels(t.id).set(d.get("applied_rows", 0))
                ERRORS.labels(t.id).set(1 if d.get("last_error") else 0)

    def stop(self) -> None:
        with self._lock:
            for rep in self._running.values():
                rep.stop()
            self._running.clear()


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG  # (socketserver's 5 resets connections under a burst of clients)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # (none yet)
        pass


def serve(service: CdcService, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP API on ``host:port`` in a daemon thread (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def _json(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            if not n:
                return {}
            try:
                return json.loads(self.rfile.read(n))
            except ValueError as e:
                raise errors.InvalidParameter(f"the request body is not JSON: {e}") from None

        def _route(self, method: str) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            try:
                if method == "GET" and parts == ["healthz"]:
                    raw = b"OK"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                if method == "GET" and parts == ["metrics"]:
                    service.update_metrics()
                    raw = exposition()
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                if parts[:2] != ["v1", "tasks"] or len(parts) > 4:
                    self._json(404, {"error": f"no such endpoint: {method} {self.path}", "code": 404})
                    return
                if len(parts) == 2 and method == "POST":
                    self._json(200, service.create(self._body()))
                elif len(parts) == 2 and method == "GET":
                    self._json(200, {"tasks": service.list()})
                elif len(parts) == 3 and method == "GET":
                    self._json(200, service.describe(parts[2]))
                elif len(parts) == 3 and method == "DELETE":
                    service.delete(parts[2])
                    self._json(200, {"deleted": parts[2]})
                elif len(parts) == 4 and method == "POST" and parts[3] == "pause":
                    body = self._body()
                    reason = body.get("reason", "") if isinstance(body, dict) else ""
                    self._json(200, service.pause(parts[2], str(reason)))
                elif len(parts) == 4 and method == "POST" and parts[3] == "resume":
                    self._json(200, service.resume(parts[2]))
                else:
                    self._json(404, {"error": f"no such endpoint: {method} {self.path}", "code": 404})
            except errors.VecdbError as e:
                code = 404 if "not found" in str(e) else 400
                self._json(code, {"error": str(e), "code": e.code})
            except Exception as e:  # noqa: BLE001 (reported to the caller, logged)
                log.exception("cdc API %s %s", method, self.path)
                self._json(500, {"error": f"{type(e).__name__}: {e}", "code": 1})

        def do_GET(self):  # noqa: N802 - http.server API
            self._route("GET")

        def do_POST(self):  # noqa: N802 - http.server API
            self._route("POST")

        def do_DELETE(self):  # noqa: N802 - http.server API
            self._route("DELETE")

        def log_message(self, *args):
            pass

    httpd = _Server((host, port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="cdc http", daemon=True).start()
    return httpd

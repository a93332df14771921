"""``vecdb cdc``: serve the CDC API (default), ``vecdb cdc task ...`` (a client of that API) and
``vecdb cdc verify`` (compare two endpoints). Registered on the main command line by ``add_parser``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8444


def add_parser(sub) -> None:
    p = sub.add_parser("cdc", help="replicate one vecdb into another (the CDC service, its tasks, verify)",
                       description="With no action: serve the CDC HTTP API (docs/cdc.md) on --host:--port, tasks kept "
                                   "in --meta-store. 'task' calls that API; 'verify' compares two Milvus endpoints.")
    p.add_argument("--data-dir", default="./cdc-data", help="for a 'local' metadata store (default ./cdc-data)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP API port (default {DEFAULT_PORT})")
    p.add_argument("--meta-store", default="local", metavar="URL",
                   help="where the tasks and their positions are kept: 'local' (files in --data-dir) or etcd://host:port")
    p.add_argument("--namespace", default="vecdb-cdc", help="etcd key prefix of this service (default vecdb-cdc)")
    p.set_defaults(func=_serve)
    actions = p.add_subparsers(dest="action")
    t = actions.add_parser("task", help="create, list, get, pause, resume or delete tasks through the API")
    t.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="the CDC service's API")
    t.add_argument("op", choices=("create", "list", "get", "pause", "resume", "delete"))
    t.add_argument("arg", nargs="?", default=None,
                   help="create: the task as JSON (or @file); get/pause/resume/delete: the task id")
    t.add_argument("--reason", default="", help="pause: why (shown in the task's state)")
    t.set_defaults(func=_task)
    v = actions.add_parser("verify", help="compare the collections of two Milvus endpoints")
    v.add_argument("--source", required=True, metavar="URI")
    v.add_argument("--target", required=True, metavar="URI")
    v.add_argument("--collection", default=None, help="one collection (default: every one of every database)")
    v.add_argument("--source-token", default="")
    v.add_argument("--target-token", default="")
    v.set_defaults(func=_verify)


def _serve(args) -> int:
    from vecdb import signals
    from vecdb.cdc.server import CdcService, serve
    from vecdb.config import StorageSettings
    from vecdb.storage.backends import open_meta

    meta = open_meta(StorageSettings(data_dir=args.data_dir, meta=args.meta_store, namespace=args.namespace))
    service = CdcService(meta)
    httpd = serve(service, args.host, args.port)
    stopped = signals.stop_event()
    print(f"vecdb cdc ready on {args.host}:{httpd.server_address[1]} (tasks in {args.meta_store})", flush=True)
    stopped.wait()
    httpd.shutdown()
    service.stop()
    meta.close()
    return 0


def call(url: str, method: str, path: str, body=None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _task(args) -> int:
    op, arg = args.op, args.arg
    if op != "list" and not arg:
        print(f"vecdb cdc task {op}: needs {'the task JSON' if op == 'create' else 'a task id'}", file=sys.stderr)
        return 2
    if op == "create":
        assert arg is not None
        raw = open(arg[1:]).read() if arg.startswith("@") and os.path.exists(arg[1:]) else arg
        code, out = call(args.url, "POST", "/v1/tasks", json.loads(raw))
    elif op == "list":
        code, out = call(args.url, "GET", "/v1/tasks")
    elif op == "get":
        code, out = call(args.url, "GET", f"/v1/tasks/{arg}")
    elif op == "delete":
        code, out = call(args.url, "DELETE", f"/v1/tasks/{arg}")
    else:
        code, out = call(args.url, "POST", f"/v1/tasks/{arg}/{op}", {"reason": args.reason} if op == "pause" else {})
    print(json.dumps(out, indent=2))
    return 0 if code == 200 else 1


def _verify(args) -> int:
    from vecdb.cdc.verify import print_report, verify

    report = verify(args.source, args.target, args.collection, args.source_token, args.target_token)
    return 0 if print_report(report) else 1


def main(argv: list[str]) -> int:  # for `python -m vecdb.cdc.cli ...` in a pinch
    parser = argparse.ArgumentParser(prog="vecdb")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

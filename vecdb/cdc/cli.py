"""``vecdb cdc``: serve the CDC API (default), ``vecdb cdc task ...`` (a client of that API) and
``vecdb cdc verify`` (compare two endpoints). Registered on the main command line by ``add_parser``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from vecdb.cdc.redact import REDACTED

DEFAULT_PORT = 8444
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def add_parser(sub) -> None:
    p = sub.add_parser("cdc", help="replicate one vecdb into another (the CDC service, its tasks, verify)",
                       description="With no action: serve the CDC HTTP API (docs/cdc.md) on --host:--port, tasks kept "
                                   "in --meta-store. 'task' calls that API; 'verify' compares two Milvus endpoints.")
    p.add_argument("--data-dir", default="./cdc-data", help="for a 'local' metadata store (default ./cdc-data)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    from vecdb.cli import port_flag  # 0-65535, else a usage error (not an OverflowError at bind)

    p.add_argument("--port", type=port_flag, default=DEFAULT_PORT, help=f"HTTP API port (default {DEFAULT_PORT})")
    p.add_argument("--meta-store", default="local", metavar="URL",
                   help="where the tasks and their positions are kept: 'local' (files in --data-dir) or etcd://host:port")
    p.add_argument("--namespace", default="vecdb-cdc", help="etcd key prefix of this service (default vecdb-cdc)")
    p.set_defaults(func=_serve)
    actions = p.add_subparsers(dest="action")
    # --url in a parent parser: accepted before the operation and after it (task --url U create J,
    # task create --url U J, task create J --url U). The operations' copy has no default (SUPPRESS), so
    # a --url given before the operation is not overwritten by the default of the operation's parser.
    url_help = f"the CDC service's API (default {DEFAULT_URL})"
    url_parent = argparse.ArgumentParser(add_help=False)
    url_parent.add_argument("--url", default=argparse.SUPPRESS, metavar="URL", help=url_help)
    t = actions.add_parser("task", help="create, list, get, pause, resume or delete tasks through the API",
                           description="Calls the CDC service's API (docs/cdc.md). Exit status: 0 done, 1 the "
                                       "service refused (its answer printed), 2 the service could not be reached.")
    t.add_argument("--url", default=DEFAULT_URL, metavar="URL", help=url_help)
    ops = t.add_subparsers(dest="op", required=True, metavar="{create,list,get,pause,resume,delete}")
    ops.add_parser("create", parents=[url_parent], help="create a task").add_argument(
        "arg", metavar="JSON", help="the task as JSON, or @file")
    ops.add_parser("list", parents=[url_parent], help="every task")
    for op, what in (("get", "a task"), ("pause", "pause a task"), ("resume", "resume a paused or failed task"),
                     ("delete", "stop and forget a task")):
        o = ops.add_parser(op, parents=[url_parent], help=what)
        o.add_argument("arg", metavar="ID", help="the task id")
        if op == "pause":
            o.add_argument("--reason", default="", help="why (shown in the task's state)")
    t.set_defaults(func=_task)
    v = actions.add_parser("verify", parents=[url_parent], help="compare the collections of two Milvus endpoints",
                           description="Compares the collections of two Milvus API endpoints (docs/cdc.md). Exit "
                                       "status: 0 EQUAL, 1 DIFFERENT, 2 could not compare (an endpoint or the CDC "
                                       "service unreachable, a token refused, bad arguments).")
    v.add_argument("--source", default=None, metavar="URI", help="the source's Milvus API (with --task: default "
                                                                   "the task's source.uri)")
    v.add_argument("--target", default=None, metavar="URI", help="the target's (with --task: default the task's)")
    v.add_argument("--collection", default=None, help="one collection (default: every one of every database)")
    v.add_argument("--rename", action="append", default=[], metavar="SOURCE=TARGET",
                   help="a task's rename: compare source collection SOURCE (name or db.name) with target collection "
                        "TARGET of the same database (repeatable)")
    v.add_argument("--task", default=None, metavar="ID",
                   help="take the source and target URIs, collections and rename of this task from the CDC service "
                        "at --url (tokens are not shown by the API: give --source-token / --target-token)")
    v.add_argument("--source-token", default=None)
    v.add_argument("--target-token", default=None)
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


class ServiceUnreachable(Exception):
    """The CDC service's API could not be reached (nothing listening, unknown host, timeout)."""


def call(url: str, method: str, path: str, body=None) -> tuple[int, dict]:
    """``(HTTP status, JSON answer)`` of the CDC service's API; ServiceUnreachable when it cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"error": f"HTTP {e.code} {e.reason} (not the CDC service's API?)"}
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        text = getattr(reason, "strerror", None) or str(reason)
        raise ServiceUnreachable(f"cannot reach the CDC service at {url}: {str(text).lower()}") from None


def _task(args) -> int:
    op, arg = args.op, getattr(args, "arg", None)
    try:
        if op == "create":
            assert arg is not None
            try:
                raw = open(arg[1:]).read() if arg.startswith("@") and os.path.exists(arg[1:]) else arg
                body = json.loads(raw)
            except ValueError as e:
                print(f"vecdb cdc task create: the task is not JSON: {e}", file=sys.stderr)
                return 2
            code, out = call(args.url, "POST", "/v1/tasks", body)
        elif op == "list":
            code, out = call(args.url, "GET", "/v1/tasks")
        elif op == "get":
            code, out = call(args.url, "GET", f"/v1/tasks/{arg}")
        elif op == "delete":
            code, out = call(args.url, "DELETE", f"/v1/tasks/{arg}")
        else:
            code, out = call(args.url, "POST", f"/v1/tasks/{arg}/{op}",
                             {"reason": args.reason} if op == "pause" else {})
    except ServiceUnreachable as e:
        print(f"vecdb cdc: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0 if code == 200 else 1


def _verify_params(args) -> dict:
    """verify()'s arguments from the command line (with --task: the task's, the flags taking precedence);
    ValueError with the one line to print when they do not add up."""
    from vecdb import errors
    from vecdb.cdc.verify import parse_rename

    try:
        rename = parse_rename(args.rename)
    except errors.InvalidParameter as e:
        raise ValueError(str(e)) from None
    p: dict = {"source_uri": args.source, "target_uri": args.target, "collection": args.collection,
               "source_token": args.source_token, "target_token": args.target_token, "rename": rename,
               "collections": None}
    if args.task:
        url = getattr(args, "url", DEFAULT_URL)
        code, out = call(url, "GET", f"/v1/tasks/{args.task}")
        if code != 200:
            raise ValueError(f"task {args.task}: {out.get('error', out)}")
        spec = out["spec"]
        src, dst = spec.get("source") or {}, spec.get("target") or {}
        p["source_uri"] = p["source_uri"] or src.get("uri")
        p["target_uri"] = p["target_uri"] or dst.get("uri")
        if not p["source_uri"]:
            raise ValueError(f"task {args.task} has no source.uri (the source's Milvus API): give --source URI")
        for side, given in (("source", src), ("target", dst)):
            if p[f"{side}_token"] is None and given.get("token") not in (None, "", REDACTED):
                p[f"{side}_token"] = given["token"]
            p[f"{side}_redacted"] = given.get("token") == REDACTED
        p["rename"] = {**(spec.get("rename") or {}), **rename}
        p["collections"] = spec.get("collections")
    if not p["source_uri"] or not p["target_uri"]:
        raise ValueError("needs --source and --target (or --task ID)")
    return p


def _verify(args) -> int:
    from pymilvus.exceptions import MilvusException  # type: ignore[import-untyped]

    from vecdb.cdc.verify import Unreachable, print_report, verify

    try:
        p = _verify_params(args)
    except (ValueError, ServiceUnreachable) as e:
        print(f"vecdb cdc verify: {e}", file=sys.stderr)
        return 2
    hints = {side: p.pop(f"{side}_redacted", False) and p[f"{side}_token"] is None for side in ("source", "target")}
    try:
        report = verify(**{**p, "source_token": p["source_token"] or "", "target_token": p["target_token"] or ""})
    except Unreachable as e:
        side = "source" if " the source " in str(e) else "target"
        hint = f" (the task's {side} token is not shown by the API: give --{side}-token)" if hints[side] else ""
        print(f"vecdb cdc verify: {e}{hint}", file=sys.stderr)
        return 2
    except MilvusException as e:  # (a collection dropped while it was read, a read refused...)
        print(f"vecdb cdc verify: could not compare: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0 if print_report(report) else 1


def main(argv: list[str]) -> int:  # for `python -m vecdb.cdc.cli ...` in a pinch
    parser = argparse.ArgumentParser(prog="vecdb")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

"""``vecdb cdc task`` and ``vecdb cdc verify`` on the command line: ``--url`` before or after the
operation; nothing listening (the CDC service, a Milvus endpoint) is one line on stderr and exit 2
(0 EQUAL, 1 DIFFERENT, 2 could not compare); task specs' credentials shown as ``***`` by the API
(vecdb.cdc.redact) while the store keeps them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import free_port
from vecdb.cdc.cli import call
from vecdb.cdc.redact import redact
from vecdb.cdc.server import CdcService, serve
from vecdb.cdc.task import TaskStore
from vecdb.storage.memory import MemoryMetaStore

UNREACHABLE = {"log": f"nats://127.0.0.1:{free_port()}", "meta": f"etcd://127.0.0.1:{free_port()}", "namespace": "x"}


def _cdc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecdb", "cdc", *args], capture_output=True, text=True, timeout=60)


def test_nothing_listening_is_one_line_and_exit_2():
    closed = f"http://127.0.0.1:{free_port()}"
    for args, line in ((("task", "list", "--url", closed), f"vecdb cdc: cannot reach the CDC service at {closed}: "
                                                           "connection refused"),
                       (("task", "--url", closed, "get", "t1"), "vecdb cdc: cannot reach the CDC service"),
                       (("verify", "--source", closed, "--target", closed),
                        f"vecdb cdc verify: cannot connect to the source {closed}: "),
                       (("verify", "--task", "t1", "--url", closed), "vecdb cdc verify: cannot reach the CDC service"),
                       (("verify", "--source", closed), "vecdb cdc verify: needs --source and --target")):
        r = _cdc(*args)
        assert r.returncode == 2 and r.stderr.startswith(line) and r.stderr.count("\n") == 1 and not r.stdout, \
            (args, r.stdout, r.stderr)
    r = _cdc("verify", "--help")
    assert "0 EQUAL, 1 DIFFERENT, 2 could not compare" in " ".join(r.stdout.split())


def test_url_anywhere_and_tokens_redacted():
    meta = MemoryMetaStore()
    service = CdcService(meta)
    httpd = serve(service, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    source = {**UNREACHABLE, "uri": "http://dc1:19530", "token": "root:Secret1", "s3_secret_key": "abc"}
    try:
        for i, args in enumerate((("task", "--url", url, "create"), ("task", "create", "--url", url),
                                  ("task", "create"))):
            body = json.dumps({"id": f"t{i}", "source": source, "target": {"uri": "http://dc2:1", "token": "root:M"}})
            r = _cdc(*args, body, *(("--url", url) if len(args) == 2 else ()))
            assert r.returncode == 0, (args, r.stdout + r.stderr)
            spec = json.loads(r.stdout)["spec"]
            assert spec["target"] == {"uri": "http://dc2:1", "token": "***"}
            assert spec["source"]["token"] == spec["source"]["s3_secret_key"] == "***"
            assert spec["source"]["meta"] == UNREACHABLE["meta"]
        for path in ("/v1/tasks", "/v1/tasks/t1"):
            code, out = call(url, "GET", path)
            assert code == 200 and "root:" not in json.dumps(out) and "abc" not in json.dumps(out), out
        code, out = call(url, "POST", "/v1/tasks/t1/pause", {"reason": "x"})
        assert code == 200 and out["spec"]["target"]["token"] == "***"
        # kept whole for the task's own use
        task = TaskStore(meta).get("t1")
        assert task is not None and task.spec.target["token"] == "root:M"
        assert task.spec.source["token"] == "root:Secret1"
        r = _cdc("task", "get", "nope", "--url", url)  # the service's refusal: exit 1, its answer printed
        assert r.returncode == 1 and json.loads(r.stdout)["code"] == 1100
    finally:
        httpd.shutdown()
        service.stop()


def test_redact_urls_and_nested():
    assert redact({"log": "nats://u:pw@h:4222", "meta": "etcd://h:2379", "token": "", "x": [{"password": "p"}]}) == \
        {"log": "nats://u:***@h:4222", "meta": "etcd://h:2379", "token": "", "x": [{"password": "***"}]}

"""The CDC service's HTTP API (vecdb.cdc.server) and `vecdb cdc task` (vecdb.cdc.cli): bad input is
refused with 400 and Milvus's code 1100 (InvalidParameter) naming what is wrong, an unknown task is
404, tasks persist in the service's store (a new service on the same store lists them, a paused one
still paused with its reason), and the CLI calls the same API. The task's source is unreachable here:
it stays running and says so in last_error (the retry path), never paused without a reason."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import free_port, wait_until
from vecdb.cdc.cli import call
from vecdb.cdc.server import CdcService, serve
from vecdb.storage.memory import MemoryMetaStore

UNREACHABLE = {"log": f"nats://127.0.0.1:{free_port()}", "meta": f"etcd://127.0.0.1:{free_port()}", "namespace": "x"}


def test_api_refuses_bad_input_and_keeps_tasks():
    meta = MemoryMetaStore()
    service = CdcService(meta)
    httpd = serve(service, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        for body, words in (({"target": {"uri": "http://x:1"}}, "missing 1 required positional argument: 'source'"),
                            ({"source": {"log": "wal", "meta": "local"}, "target": {"uri": "http://x:1"}},
                             "embedded ones are opened by one process"),
                            ({"source": UNREACHABLE, "target": {}}, "target needs a 'uri'"),
                            ({"source": UNREACHABLE, "target": {"uri": "u"}, "start": "yesterday"}, "start must be"),
                            ({"source": UNREACHABLE, "target": {"uri": "u"}, "colour": 1}, "unknown keys"),
                            ({"source": UNREACHABLE, "target": {"uri": "u"}, "id": "a/b"}, "invalid cdc task id")):
            code, out = call(url, "POST", "/v1/tasks", body)
            assert code == 400 and out["code"] == 1100 and words in out["error"], (body, out)
        code, out = call(url, "GET", "/v1/tasks/nope")
        assert code == 404 and out["code"] == 1100
        code, out = call(url, "GET", "/v1/nothing")
        assert code == 404
        code, out = call(url, "POST", "/v1/tasks", {"id": "t1", "source": UNREACHABLE, "target": {"uri": "http://u:1"}})
        assert code == 200 and out["state"] == "running", out
        wait_until(lambda: call(url, "GET", "/v1/tasks/t1")[1].get("last_error"), 30, "no last_error")
        code, out = call(url, "POST", "/v1/tasks", {"id": "t1", "source": UNREACHABLE, "target": {"uri": "u"}})
        assert code == 400 and "already exists" in out["error"]
        # the CLI: the same API
        r = subprocess.run([sys.executable, "-m", "vecdb", "cdc", "task", "pause", "t1", "--reason", "upgrade",
                            "--url", url], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout)["reason"] == "upgrade", r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-m", "vecdb", "cdc", "task", "list", "--url", url],
                           capture_output=True, text=True, timeout=60)
        assert [t["id"] for t in json.loads(r.stdout)["tasks"]] == ["t1"]
    finally:
        httpd.shutdown()
        service.stop()
    # a new service on the same store: the task is there, still paused, saying why
    again = CdcService(meta)
    try:
        (t,) = again.list()
        assert t["state"] == "paused" and t["reason"] == "upgrade"
        assert again.resume("t1")["state"] == "running"
        again.delete("t1")  # its source is unreachable: the task goes anyway (logged)
        assert again.list() == []
    finally:
        again.stop()

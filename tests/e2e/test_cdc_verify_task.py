"""``vecdb cdc verify`` of a task that renames (docs/cdc.md's quick start): a source standalone on
NATS/etcd/S3 replicated by the CDC service process into a standalone on the embedded backends with
``"rename": {"docs": "docs_copy"}``; once caught up, ``verify --task ID`` (source, target, rename and
collections read from the service) and ``verify --rename docs=docs_copy`` (also db-qualified, and with
``--collection docs``) say EQUAL, exit 0; without the rename it is DIFFERENT (exit 1). The task's
target token is shown as ``***`` by every API answer (create, list, get) and the CLI, while the task
still uses it."""

from __future__ import annotations

import json
import subprocess
import sys

from pymilvus import MilvusClient

from tests.conftest import free_port, start_standalone, start_vecdb, stop_processes, wait_until
from tests.e2e.test_cdc import _rows
from vecdb.cdc.cli import call
from vecdb.cdc.task import new_task_id
from vecdb.cdc.verify import verify


def _cdc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecdb", "cdc", *args], capture_output=True, text=True, timeout=120)


def test_verify_renamed_task(tmp_path, remote_storage):
    storage = remote_storage("cdcvt" + new_task_id())
    source = start_standalone(str(tmp_path / "src"), storage=storage)
    target = start_standalone(str(tmp_path / "dst"))
    su, tu = f"http://127.0.0.1:{source.port}", f"http://127.0.0.1:{target.port}"
    url = f"http://127.0.0.1:{free_port()}"
    procs = []
    try:
        procs.append(start_vecdb("cdc", "--port", url.rsplit(":", 1)[1], "--data-dir", str(tmp_path / "cdc")))
        spec = {"source": {**storage, "uri": su}, "target": {"uri": tu, "token": "root:Milvus"},
                "collections": ["*"], "rename": {"docs": "docs_copy"}, "start": "now"}
        # --url after the operation, before the JSON (argparse refused this form before)
        r = _cdc("task", "create", "--url", url, json.dumps({"id": "qs", **spec}))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["spec"]["target"] == {"uri": tu, "token": "***"}, r.stdout
        c = MilvusClient(uri=su)
        c.create_collection("docs", dimension=8, auto_id=False)
        c.insert("docs", _rows(range(300), extra=False))
        c.create_collection("plain", dimension=8)
        c.insert("plain", _rows(range(50), seed=3, extra=False))
        c.delete("docs", ids=[5, 6])
        seen: list = []

        def caught_up() -> bool:
            code, t = call(url, "GET", "/v1/tasks/qs")
            seen[:] = [t, {k: v for k, v in verify(su, tu, rename={"docs": "docs_copy"}).items() if v}]
            return code == 200 and t.get("lag_records") == 0 and not seen[1]

        try:
            wait_until(caught_up, 120, "target never equal")
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}") from None
        assert MilvusClient(uri=tu).has_collection("docs_copy")  # the task used the token it keeps
        for args in (("--task", "qs", "--url", url),  # everything from the service
                     ("--source", su, "--target", tu, "--rename", "docs=docs_copy"),
                     ("--source", su, "--target", tu, "--rename", "default.docs=docs_copy"),
                     ("--source", su, "--target", tu, "--rename", "docs=docs_copy", "--collection", "docs")):
            r = _cdc("verify", *args)
            assert r.returncode == 0 and r.stdout.strip().endswith("EQUAL"), (args, r.stdout + r.stderr)
            assert "default.docs: equal" in r.stdout, r.stdout
        r = _cdc("verify", "--source", su, "--target", tu)
        assert r.returncode == 1 and "default.docs: collection docs missing on the target" in r.stdout, r.stdout
        assert "default.docs_copy: collection docs_copy only on the target" in r.stdout, r.stdout
        r = _cdc("verify", "--source", su, "--target", tu, "--rename", "docs")
        assert r.returncode == 2 and "expected SOURCE=TARGET" in r.stderr and not r.stdout, r.stdout + r.stderr
        # the token stays out of every answer: list, get (the CLI prints the API's JSON)
        for args in (("task", "list", "--url", url), ("task", "--url", url, "get", "qs")):
            r = _cdc(*args)
            assert r.returncode == 0 and "root:Milvus" not in r.stdout and '"token": "***"' in r.stdout, r.stdout
        # a difference is still found through the task
        MilvusClient(uri=tu).delete("docs_copy", ids=[7])
        r = _cdc("verify", "--task", "qs", "--url", url)
        assert r.returncode == 1 and "default.docs: 1 primary keys missing on the target, e.g. [7]" in r.stdout, \
            r.stdout
    finally:
        stop_processes(procs)
        source.stop()
        target.stop()

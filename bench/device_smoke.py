"""The lent machine's first check (bench/device_run.sh probe): a 2-worker vecdb and a Milvus 2.3.5 each
started, written to, counted and stopped, so the long run does not find a missing package first."""

from __future__ import annotations

import tempfile
import time

import numpy as np
from pymilvus import MilvusClient

from bench.servers import MilvusStandalone
from bench.standalone_workers import WorkersServer


def main() -> int:
    t = time.time()
    failed = 0
    for name in ("vecdb", "milvus"):
        server = None
        try:
            if name == "vecdb":
                server = WorkersServer(tempfile.mkdtemp() + "/data", 2).start(timeout=60)
            else:
                server = MilvusStandalone().start()
            c = MilvusClient(server.uri)
            c.create_collection("t", dimension=8)
            c.insert("t", [{"id": i, "vector": np.random.rand(8).tolist()} for i in range(100)])
            got = c.query("t", filter="", output_fields=["count(*)"], consistency_level="Strong")
            print(name, got, f"{time.time() - t:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on to the other server
            failed += 1
            print(name, "FAILED", type(e).__name__, e, server.tail() if server is not None else "", flush=True)
        finally:
            if server is not None:
                server.stop()
    return failed


if __name__ == "__main__":
    raise SystemExit(main())

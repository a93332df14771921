"""A whole vecdb node on backends another process serves (storage.meta / storage.log =
``vecdb://host:port``, what the workers of ``vecdb standalone --workers N`` use): the metadata store
and the WAL served by this test process (``backend_server.serve_backends``, as the primary serves
them), a standalone process using them through pymilvus, and everything it wrote found in the
served stores and kept across its restart."""

from __future__ import annotations

import numpy as np
from pymilvus import MilvusClient

from tests.conftest import free_port, start_vecdb, stop_processes
from vecdb.catalog_model import read_collection
from vecdb.coord.catalog_state import COLL_PREFIX
from vecdb.storage.backend_server import serve_backends
from vecdb.storage.local_meta import LocalMetaStore
from vecdb.storage.wal import WalLog


def test_a_node_on_served_backends(tmp_path):
    meta, wal = LocalMetaStore(str(tmp_path / "primary" / "meta")), WalLog(str(tmp_path / "primary" / "wal"))
    server, bport = serve_backends(meta, wal)
    url = f"vecdb://127.0.0.1:{bport}"
    port = free_port()
    storage = {"meta": url, "log": url}
    procs = []
    try:
        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "node",
                                 storage=storage))
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.create_collection("t", dimension=8, consistency_level="Strong")
        vecs = np.random.default_rng(0).random((300, 8), dtype=np.float32)
        assert c.insert("t", [{"id": i, "vector": vecs[i].tolist()} for i in range(300)])["insert_count"] == 300
        assert c.query("t", "", output_fields=["count(*)"])[0]["count(*)"] == 300
        assert c.search("t", [vecs[7].tolist()], limit=1)[0][0]["id"] == 7
        c.flush("t")
        c.delete("t", ids=[7])
        assert c.search("t", [vecs[7].tolist()], limit=1)[0][0]["id"] != 7
        c.close()
        # what the node wrote is in the served stores
        (cid,) = [int(k[len(COLL_PREFIX):]) for k, _ in meta.scan(COLL_PREFIX)]
        assert read_collection(meta, cid).name == "t"
        assert wal.channels() and sum(wal.last_position(ch) for ch in wal.channels()) >= 2  # the insert, the delete
        stop_processes(procs)
        procs.clear()
        procs.append(start_vecdb("standalone", "--port", str(port), "--http-port", "0", data_dir=tmp_path / "node",
                                 storage=storage))
        c = MilvusClient(uri=f"http://127.0.0.1:{port}")
        c.load_collection("t")
        assert c.query("t", "", output_fields=["count(*)"])[0]["count(*)"] == 299
        assert c.query("t", "id in [6, 7, 8]", output_fields=["id"]) == [{"id": 6}, {"id": 8}]
        c.close()
    finally:
        stop_processes(procs)
        server.stop(0)
        meta.close()
        wal.close()

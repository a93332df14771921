"""A query node in the cluster's shape: it shares only the backends (JetStream, etcd, S3) with
the server that takes the writes, loads a collection from them, then follows its channels in
the log and answers with every acknowledged write once ``wait_applied`` returned."""

from __future__ import annotations

import pytest
from pymilvus import MilvusClient

from tests.conftest import free_port, start_standalone
from tests.e2e._helpers import float_vectors
from vecdb.config import StorageSettings
from vecdb.coord.catalog import Catalog
from vecdb.errors import CollectionNotLoaded, ServiceUnavailable
from vecdb.querynode.executor import SearchSpec
from vecdb.querynode.node import QueryNode
from vecdb.storage.backends import open_backends

DIM = 8
MAX_TS = (1 << 63) - 1


def test_a_following_query_node_sees_sealed_data_and_every_later_write(tmp_path, remote_storage):
    storage = remote_storage()
    node = start_standalone(tmp_path / "writer", free_port(), storage)
    c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")
    backends = qn = None
    try:
        c.create_collection("docs", dimension=DIM, metric_type="L2")
        vecs = float_vectors(300, DIM, seed=1)
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100)])
        c.flush("docs")  # sealed, in S3
        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(100, 150)])  # growing, in the log

        backends = open_backends(StorageSettings(**storage, data_dir=str(tmp_path / "reader")))
        info = Catalog(backends.meta).get("default", "docs")
        qn = QueryNode(backends.log, backends.meta, backends.objects, tail=True)
        qn.load(info)
        assert qn.count(info, MAX_TS, None, None) == 150

        c.insert("docs", [{"id": i, "vector": vecs[i]} for i in range(150, 300)])
        c.delete("docs", ids=list(range(0, 20)))
        qn.wait_applied({ch: backends.log.last_position(ch) for ch in info.channels}, timeout=10)
        assert qn.count(info, MAX_TS, None, None) == 280

        field = info.schema.field("vector")
        spec = SearchSpec(field=field, queries=vecs[[250, 5, 30]], limit=1, offset=0, metric="L2", params={}, ts=MAX_TS)
        hits = qn.search(info, spec, None, [])
        assert hits.topks == [1, 1, 1]
        assert hits.pks[0] == 250 and hits.pks[2] == 30 and hits.pks[1] != 5  # 5 was deleted

        with pytest.raises(ServiceUnavailable):  # a position the log never reaches
            qn.wait_applied({info.channels[0]: 10**9}, timeout=0.3)
        qn.release(info.id)
        with pytest.raises(CollectionNotLoaded):
            qn.wait_applied({info.channels[0]: 1}, timeout=0.1)
    finally:
        if qn is not None:
            qn.close()
        if backends is not None:
            backends.close()
        c.close()
        node.stop()

"""A nullable vector field added to a loaded collection (pymilvus 3.0 ``add_collection_field``),
across a restart of every process on the same data.

Milvus adds the field to a loaded collection and the collection stays loaded, across a restart too
(its query coord recovers what was loaded; the proxy's index check runs on a load request only). A
load request checks that every vector field has an index, loaded collection or not ("there is no
vector index on field: [v2], please create index firstly"), so until the new field has one a repeat
``load_collection`` is refused, before the restart and after it alike; once it has one the load
succeeds without a release. vecdb serves the new field at once (its rows written before are null);
the restart changes none of it: what served before serves after, and a load answers the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from tests.conftest import free_port, start_cluster, start_vecdb
from tests.e2e._helpers import count

DIM = 8
NAME = "added_vec"


def _vec(i: int, salt: int = 0) -> list[float]:
    return np.random.default_rng(i * 7 + salt).standard_normal(DIM).astype(np.float32).tolist()


def _with_v2(i: int) -> bool:
    return i % 2 == 1  # rows written after the add: every other one carries v2, the rest null


def _before_restart(c: MilvusClient) -> None:
    """Collection loaded, rows sealed and growing, then v2 added and rows that carry it (or null)."""
    s = c.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    idx = c.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    c.create_collection(NAME, schema=s, index_params=idx)  # loaded
    c.insert(NAME, [{"id": i, "v": _vec(i)} for i in range(20)])
    c.flush(NAME)
    c.insert(NAME, [{"id": i, "v": _vec(i)} for i in range(20, 30)])  # growing
    c.add_collection_field(NAME, field_name="v2", data_type=DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    c.insert(NAME, [{"id": i, "v": _vec(i), "v2": _vec(i, 1) if _with_v2(i) else None} for i in range(100, 120)])
    _check_serving(c)
    _check_load_needs_v2_index(c)


def _check_serving(c: MilvusClient) -> None:
    assert c.get_load_state(NAME)["state"].name == "Loaded"
    assert count(c, NAME, consistency_level="Strong") == 50
    hit = c.search(NAME, [_vec(5)], anns_field="v", limit=1, consistency_level="Strong")[0][0]
    assert hit["id"] == 5
    # the new field: only rows that carry it (the 30 written before the add are null, so are half the rest)
    hits = c.search(NAME, [_vec(101, 1)], anns_field="v2", limit=50, consistency_level="Strong")[0]
    assert sorted(h["id"] for h in hits) == [i for i in range(100, 120) if _with_v2(i)]
    assert hits[0]["id"] == 101
    got = {r["id"]: r["v2"] for r in c.query(NAME, filter="id in [3, 25, 100, 101]", output_fields=["v2"],
                                             consistency_level="Strong")}
    assert got[3] is None and got[25] is None and got[100] is None
    assert np.allclose(got[101], _vec(101, 1))


def _check_load_needs_v2_index(c: MilvusClient) -> None:
    """A load request is refused while v2 has no index (Milvus's proxy check, loaded or not); the
    collection stays loaded and serving."""
    with pytest.raises(MilvusException) as e:
        c.load_collection(NAME)
    assert e.value.code == 700 and "there is no vector index on field: [v2]" in e.value.message
    with pytest.raises(MilvusException) as e:
        c.load_partitions(NAME, ["_default"])
    assert e.value.code == 700
    assert c.get_load_state(NAME)["state"].name == "Loaded"


def _after_restart(c: MilvusClient, restart) -> None:
    """Loaded after the restart as before it, the same answers; an index on v2 and the load succeeds
    without a release, and the collection is loaded after one more restart."""
    _check_serving(c)
    _check_load_needs_v2_index(c)
    idx = c.prepare_index_params()
    idx.add_index("v2", index_type="FLAT", metric_type="L2")
    c.create_index(NAME, idx)
    c.load_collection(NAME)  # loaded already: every vector field has its index now
    _check_serving(c)
    c = restart()
    _check_serving(c)
    c.load_collection(NAME)
    c.release_collection(NAME)
    c.load_collection(NAME)
    _check_serving(c)


def test_added_vector_field_standalone_restart(tmp_path):
    """Embedded backends (the standalone's reload at start; on remote backends it is the same code)."""
    storage = None
    port = free_port()
    args = ("standalone", "--port", str(port), "--http-port", "0")
    procs = [start_vecdb(*args, data_dir=tmp_path, storage=storage)]
    clients: list[MilvusClient] = []

    def client() -> MilvusClient:
        clients.append(MilvusClient(uri=f"http://127.0.0.1:{port}"))
        return clients[-1]

    def restart() -> MilvusClient:
        assert procs[-1].stop() == 0  # SIGTERM, a clean exit
        procs.append(start_vecdb(*args, data_dir=tmp_path, storage=storage))
        return client()

    try:
        _before_restart(client())
        _after_restart(restart(), restart)
    finally:
        for c in clients:
            c.close()
        for p in procs:
            p.stop()


def test_added_vector_field_cluster_restart(tmp_path, remote_storage):
    names = ("coord", "qn0", "dn0", "proxy")
    with start_cluster(dict(remote_storage(), session_ttl=2), tmp_path) as cluster:

        def restart() -> MilvusClient:
            cluster.stop_all()  # every process, SIGTERM in order, each exits cleanly
            for name in names:
                cluster.start(name)
            return cluster.client()

        _before_restart(cluster.client())
        _after_restart(restart(), restart)

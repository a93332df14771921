"""The seal policy counts the bytes a write actually holds (vecdb.datanode.seal.batch_bytes), through
pymilvus on every deployment: standalone on the embedded and on the distributed backends (the proxy's
policy, vecdb.coord.sealer) and a cluster of processes (the data node's, vecdb.datanode.flusher). With
``datanode.seal_bytes`` at 400 KB, 40 rows of 50 KB TEXT seal into several segments with no flush call,
where 40 short rows make one (a VARCHAR/TEXT value used to count 64 bytes, whatever its length).

The suite's shared servers run the default 128 MiB (a test of it would write GBs), so each deployment
here is started with the small setting (``VECDB_DATANODE__SEAL_BYTES`` for the cluster's processes)."""

from __future__ import annotations

import contextlib

import pytest
from pymilvus import DataType, MilvusClient

from tests.conftest import server_settings, start_cluster, wait_until

SEAL_BYTES = 400_000
ROWS, BATCH = 40, 4
LONG = 50_000  # a row's text: 8 rows (50,032 bytes each) reach SEAL_BYTES


@contextlib.contextmanager
def _deployment(kind: str, tmp_path, remote_storage):
    if kind == "cluster":
        env = {"VECDB_DATANODE__SEAL_BYTES": str(SEAL_BYTES)}
        with start_cluster(remote_storage(), tmp_path, env={"dn0": env, "proxy": env}) as cluster:
            yield cluster.client()
        return
    from vecdb.standalone import Standalone

    settings = server_settings(tmp_path, storage=remote_storage() if kind == "remote" else None)
    settings.datanode.seal_bytes = SEAL_BYTES
    srv = Standalone(settings).start()
    client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
    try:
        yield client
    finally:
        client.close()
        srv.stop()


def _create(c: MilvusClient, name: str) -> None:
    s = c.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("body", DataType.TEXT)
    idx = c.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    c.create_collection(name, schema=s, index_params=idx, consistency_level="Strong")


def _insert(c: MilvusClient, name: str, length: int, lo: int, hi: int) -> None:
    for start in range(lo, hi, BATCH):
        c.insert(name, [{"id": i, "vec": [float(i), 0, 0, 0], "body": chr(97 + i % 26) * length}
                        for i in range(start, start + BATCH)])


@pytest.mark.parametrize("kind", ["embedded", "remote", "cluster"])
def test_long_texts_seal_into_several_segments_where_short_ones_make_one(kind, tmp_path, request):
    remote = request.getfixturevalue("remote_storage") if kind != "embedded" else None
    with _deployment(kind, tmp_path, remote) as c:
        _create(c, "long")
        _create(c, "short")
        _insert(c, "short", 20, 0, ROWS)

        def persisted(name: str) -> list[int]:
            return [s.num_rows for s in c.list_persistent_segments(name)]

        # sealed by the policy, no flush: a segment every 8 long rows (written 8 at a time, each seal
        # waited for: a seal record lands after the rows written while it is under way)
        for k, lo in enumerate(range(0, ROWS, 8), start=1):
            _insert(c, "long", LONG, lo, lo + 8)
            wait_until(lambda k=k: len(persisted("long")) >= k, 60, f"the seal policy's seal {k} of the long rows")
        assert persisted("long") == [8] * (ROWS // 8)
        assert persisted("short") == []  # 40 x 60 bytes: far below seal_bytes
        c.flush("long")
        c.flush("short")
        assert persisted("long") == [8] * (ROWS // 8)
        assert persisted("short") == [ROWS]
        assert c.query("long", "id == 7", output_fields=["body"])[0]["body"] == "h" * LONG
        assert c.query("short", "", output_fields=["count(*)"])[0]["count(*)"] == ROWS

"""Upgrade in place from a recent vecdb: a data directory of commit eb7b538 is read by this one as that one read it.

The fixture ``upgrade_data/standalone-eb7b538.tar.gz`` is the data directory of a standalone server of
commit eb7b538, the last before 06da2ed changed how a Global grant is stored (on ``*`` whatever object
the call named; an older vecdb stored it on the name given), made by ``build_old_state`` and a clean
stop; ``python tests/e2e/test_upgrade_recent.py OLD_TREE OUT.tar.gz`` makes it again with the tree
exported at OLD_TREE (``git archive eb7b538 | tar -x -C OLD_TREE``), checking the older server's answers
with ``_check_reads`` before it stops. What it holds: a collection with sealed rows and rows only in the
log, deletes and upserts on both, nullable and default fields, a dynamic field, a JSON path index, an
ARRAY index, a partition and an alias; a BM25 collection; a snapshot; a second database with a
released collection; users, roles, grants, among them Global grants on named objects.

The bug this found: a Global grant an older vecdb stored on a named object (``grant_privilege(role,
"Global", "CreateCollection", "foo")``) could not be revoked after the upgrade: the same revoke deleted
the grant on ``*`` only, the old one stayed listed, and ``drop_role`` refused the role for it ("Use
REVOKE API to revoke privileges") for good. ``vecdb.security.rbac.RoleStore.operate`` deletes the grant
under the name given too.

An upgrade hunt (standalone data of b905a73, 74b2bcf, d6e9f2f, a57549a and 5c3575a, clean stop and
kill -9; a cluster of a57549a) found nothing else read otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc
import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import free_port, wait_until  # noqa: E402
from tests.upgrade_data import make_fixture, start_auth_standalone, unpack  # noqa: E402

FIXTURE = Path(__file__).parent / "upgrade_data" / "standalone-eb7b538.tar.gz"
ROOT = "root:Milvus"
WORDS = ["apple", "banana", "cherry", "dog", "egg", "fig", "grape"]


def _vec(i: int) -> list[float]:
    return [float(i % 7), float(i % 5), float(i % 3), 1.0]


def _row(i: int, **extra) -> dict:
    r = {"id": i, "v": _vec(i), "title": f"t{i}", "meta": {"x": i, "y": f"s{i % 3}"},
         "tags": [f"g{(i + k) % 4}" for k in range(i % 3)], "cat": i % 2, f"dyn{i % 2}": i}
    if i % 3 == 1:
        r |= {"n": i * 10, "d": f"d{i}"}
    elif i % 3 == 2:
        r |= {"n": None, "d": None}  # d: None takes the default
    return r | extra


def build_old_state(uri: str) -> None:
    """The fixture's state, through pymilvus only (run against the older tree's server)."""
    c = MilvusClient(uri=uri, token=ROOT)
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("title", DataType.VARCHAR, max_length=16)
    s.add_field("meta", DataType.JSON)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=8)
    s.add_field("cat", DataType.INT64)
    s.add_field("n", DataType.INT64, nullable=True)
    s.add_field("d", DataType.VARCHAR, max_length=8, nullable=True, default_value="dflt")
    idx = c.prepare_index_params()
    idx.add_index("v", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
    idx.add_index("meta", index_type="INVERTED", index_name="meta_x",
                  params={"json_cast_type": "double", "json_path": "meta['x']"})
    idx.add_index("tags", index_type="INVERTED", index_name="tags_idx")
    idx.add_index("cat", index_type="STL_SORT", index_name="cat_idx")
    c.create_collection("docs", schema=s, index_params=idx)
    c.create_partition("docs", "p1")
    c.insert("docs", [_row(i) for i in range(20)])
    c.insert("docs", [_row(i) for i in range(20, 30)], partition_name="p1")
    c.flush("docs")  # 0..29 sealed
    c.create_snapshot("s1", "docs")
    c.insert("docs", [_row(i) for i in range(30, 45)])  # only in the log from here on
    c.delete("docs", ids=[3, 33])
    c.upsert("docs", [_row(5, title="up5"), _row(35, title="up35")])
    c.create_alias("docs", "docs_alias")

    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("text", DataType.VARCHAR, max_length=100, enable_analyzer=True)
    s.add_field("sp", DataType.SPARSE_FLOAT_VECTOR)
    s.add_function(Function(name="bm", function_type=FunctionType.BM25, input_field_names=["text"],
                            output_field_names=["sp"]))
    idx = c.prepare_index_params()
    idx.add_index("sp", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    c.create_collection("text", schema=s, index_params=idx)
    docs = [{"id": i, "text": " ".join(WORDS[(i + k) % 7] for k in range(i % 3 + 1))} for i in range(14)]
    c.insert("text", docs[:10])
    c.flush("text")
    c.insert("text", docs[10:])

    c.create_database("db2")
    d = MilvusClient(uri=uri, token=ROOT, db_name="db2")
    s = MilvusClient.create_schema()
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=8)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    idx = d.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="IP")
    d.create_collection("c2", schema=s, index_params=idx)
    d.insert("c2", [{"pk": f"k{i}", "v": _vec(i)} for i in range(12)])
    d.flush("c2")
    d.delete("c2", ids=["k4"])
    d.release_collection("c2")
    d.close()

    c.create_user("alice", "password1")
    c.create_role("reader")
    c.grant_privilege("reader", "Collection", "Query", "docs")
    c.grant_privilege("reader", "Collection", "Search", "docs")
    c.grant_role("alice", "reader")
    c.create_role("ops")  # Global grants on named objects: stored on those names by this version
    c.grant_privilege("ops", "Global", "CreateCollection", "foo")
    c.grant_privilege("ops", "Global", "DescribeCollection", "bar")
    c.close()


# id -> (title, n, d, dynamic value) as the older version answered before it stopped
EXPECTED = {
    i: (f"up{i}" if i in (5, 35) else f"t{i}", i * 10 if i % 3 == 1 else None,
        f"d{i}" if i % 3 == 1 else "dflt", i)
    for i in range(45) if i not in (3, 33)
}
OPS_GRANTS = {("Global", "foo", "CreateCollection"), ("Global", "bar", "DescribeCollection")}


def _ops_grants(c: MilvusClient) -> set:
    return {(g["object_type"], g["object_name"], g["privilege"]) for g in c.describe_role("ops")["privileges"]}


def _ids(c: MilvusClient, name: str, flt: str) -> list:
    return sorted(r["id"] for r in c.query(name, filter=flt, output_fields=["id"], limit=1000,
                                           consistency_level="Strong"))


def _check_reads(c: MilvusClient, when: str) -> None:
    """What the older server answered too (the fixture builder asks it before the stop)."""
    rows = c.query("docs_alias", filter="", output_fields=["*"], limit=1000, consistency_level="Strong")
    assert {r["id"]: (r["title"], r["n"], r["d"], r.get(f"dyn{r['id'] % 2}")) for r in rows} == EXPECTED, when
    assert c.query("docs", filter="", output_fields=["count(*)"],
                   consistency_level="Strong")[0]["count(*)"] == len(EXPECTED), when
    live = sorted(EXPECTED)
    assert _ids(c, "docs", "meta['x'] > 38") == [i for i in live if i > 38], when
    assert _ids(c, "docs", "array_contains(tags, 'g1')") == [i for i in live if "g1" in _row(i)["tags"]], when
    assert _ids(c, "docs", "n is null") == [i for i in live if i % 3 != 1], when
    assert _ids(c, "docs", "cat == 1 and id < 12") == [1, 5, 7, 9, 11], when
    hit = c.search("docs", [_vec(0)], limit=1, output_fields=["title"], consistency_level="Strong")[0][0]
    assert (hit["id"], hit["distance"]) == (0, 0.0), when
    top = c.search("text", ["grape"], anns_field="sp", limit=20, consistency_level="Strong")[0]
    assert sorted(h["id"] for h in top) == [i for i in range(14) if "grape" in
                                            [WORDS[(i + k) % 7] for k in range(i % 3 + 1)]], when
    assert {ix for ix in c.list_indexes("docs")} == {"v", "meta_x", "tags_idx", "cat_idx"}, when
    assert c.describe_index("docs", "meta_x")["json_path"] == "meta['x']", when
    assert sorted(c.list_partitions("docs")) == ["_default", "p1"], when
    assert c.list_aliases("docs")["aliases"] == ["docs_alias"], when
    assert sorted(c.list_databases()) == ["db2", "default"], when
    assert str(c.get_load_state("docs")["state"]) == "Loaded", when
    assert sorted(c.list_users()) == ["alice", "root"], when
    assert _ops_grants(c) == OPS_GRANTS, when
    assert c.list_snapshots(collection_name="docs") == ["s1"], when


@pytest.fixture
def old_data(tmp_path) -> Path:
    return unpack(FIXTURE, tmp_path / "data")


def test_standalone_data_of_eb7b538_reads_as_it_did(old_data):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = start_auth_standalone(old_data, port)
    try:
        c = MilvusClient(uri=uri, token=ROOT)
        _check_reads(c, "after the upgrade")
        d = MilvusClient(uri=uri, token=ROOT, db_name="db2")
        assert str(d.get_load_state("c2")["state"]) == "NotLoad"
        d.load_collection("c2")
        pks = d.query("c2", filter="", output_fields=["pk"], limit=100, consistency_level="Strong")
        assert sorted(r["pk"] for r in pks) == sorted(f"k{i}" for i in range(12) if i != 4)
        d.close()
        job = c.restore_snapshot("s1", "docs", "restored")  # the snapshot of the 30 sealed rows
        wait_until(lambda: "ompleted" in str(c.get_restore_snapshot_state(job)), 60, "snapshot restore")
        c.load_collection("restored")
        assert c.query("restored", filter="", output_fields=["count(*)"],
                       consistency_level="Strong")[0]["count(*)"] == 30

        # the older version's Global grants on named objects: the same revoke removes them
        c.revoke_privilege("ops", "Global", "CreateCollection", "foo")
        assert _ops_grants(c) == {("Global", "bar", "DescribeCollection")}
        c.revoke_privilege("ops", "Global", "DescribeCollection", "bar")
        assert _ops_grants(c) == set()
        c.drop_role("ops")
        assert "ops" not in c.list_roles()
        alice = MilvusClient(uri=uri, token="alice:password1")
        assert len(alice.query("docs", filter="id < 3", consistency_level="Strong")) == 3
        with pytest.raises(grpc.RpcError) as refused:
            alice.insert("docs", [_row(99)])
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        alice.close()

        # writes of this version over the older data, persisted and compacted, then a restart
        c.insert("docs", [_row(i) for i in range(50, 55)])
        c.upsert("docs", [_row(6, title="new6"), _row(36, title="new36")])
        c.delete("docs", ids=[7, 37, 50])
        c.flush("docs")
        job = c.compact("docs")
        wait_until(lambda: str(c.get_compaction_state(job)).endswith("Completed"), 60, "compaction")
        c.close()
        assert proc.stop() == 0
        proc = start_auth_standalone(old_data, port)
        c = MilvusClient(uri=uri, token=ROOT)
        c.load_collection("docs")
        expected = {i: e for i, e in EXPECTED.items() if i not in (7, 37)}
        expected |= {i: (f"t{i}", i * 10 if i % 3 == 1 else None, f"d{i}" if i % 3 == 1 else "dflt", i)
                     for i in range(51, 55)}
        expected[6], expected[36] = ("new6", *EXPECTED[6][1:]), ("new36", *EXPECTED[36][1:])
        rows = c.query("docs", filter="", output_fields=["*"], limit=1000, consistency_level="Strong")
        assert {r["id"]: (r["title"], r["n"], r["d"], r.get(f"dyn{r['id'] % 2}")) for r in rows} == expected
        assert _ids(c, "docs", "meta['x'] > 38") == sorted(i for i in expected if i > 38)
        assert "ops" not in c.list_roles()
        c.close()
    finally:
        proc.stop()


def _build_and_check(uri: str) -> None:
    """``build_old_state``, then (the sealed segments' indexes built in the background, so their files are
    in the fixture) the older server's own answers checked."""
    build_old_state(uri)
    c = MilvusClient(uri=uri, token=ROOT)
    deadline = time.monotonic() + 60
    while any(c.describe_index("docs", ix).get("pending_index_rows", 0) for ix in c.list_indexes("docs")):
        assert time.monotonic() < deadline, "indexes not built"
        time.sleep(0.5)
    _check_reads(c, "the older server")
    c.close()


if __name__ == "__main__":  # python tests/e2e/test_upgrade_recent.py OLD_TREE OUT.tar.gz
    make_fixture(sys.argv[1], str(Path(sys.argv[2]).resolve()), _build_and_check)

"""Upgrade in place: a data directory written by an older vecdb is read by this one as that one read it.

The fixture ``upgrade_data/standalone-08afdcf.tar.gz`` is the data directory of a standalone server of
commit 08afdcf (the last before insert records carried field ids, before ``cred/stamp`` and
``security/applied/``), made by ``build_old_state`` and a clean stop; ``python
tests/e2e/test_upgrade_in_place.py OLD_TREE OUT.tar.gz`` makes it again with the tree exported at
OLD_TREE (``git archive 08afdcf | tar -x -C OLD_TREE``). What it holds: a collection with sealed rows, rows only in
the log (growing), deletes and an upsert on both, a nullable field with a default, a partition, dynamic
fields, a field dropped and added again under its name (same type and another type) while rows of the
dropped one were still only in the log, users, a role and grants.

The bug this found: log records of an older version carry no field ids, so their replay took a
dropped field's logged values as those of the field added under its name: rows 10..19 read score
10..19 instead of null after the upgrade (the older version read null before it stopped), and every
query failed (65535, TypeError) once "kind", an INT64 dropped and added again as a VARCHAR, got the
old integers. ``vecdb.column_defaults.older_stale`` tells them apart by the validity mask a nullable
field's records always carry (a field added to a collection is nullable) and by the column's type.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc
import pytest
from pymilvus import DataType, MilvusClient

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import free_port  # noqa: E402
from tests.upgrade_data import make_fixture, start_auth_standalone, unpack  # noqa: E402

FIXTURE = Path(__file__).parent / "upgrade_data" / "standalone-08afdcf.tar.gz"
ROOT = "root:Milvus"


def _vec(i: int) -> list[float]:
    return [float(i % 7), float(i % 5)]


def build_old_state(uri: str) -> None:
    """The fixture's state, through pymilvus only (run against the older tree's server)."""
    c = MilvusClient(uri=uri, token=ROOT)
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("score", DataType.INT64)
    s.add_field("kind", DataType.INT64)
    s.add_field("tag", DataType.VARCHAR, max_length=16, nullable=True, default_value="dflt")
    idx = c.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    c.create_collection("ops", schema=s, index_params=idx)
    c.create_partition("ops", "p1")

    def row(i: int, **extra) -> dict:
        return {"id": i, "v": _vec(i), "score": i, "kind": i * 10, "x": f"dyn{i}",
                **({"tag": f"t{i}"} if i % 2 else {}), **extra}

    c.insert("ops", [row(i) for i in range(10)])
    c.insert("ops", [row(i) for i in range(30, 34)], partition_name="p1")
    c.flush("ops")  # 0..9 and 30..33 sealed
    c.insert("ops", [row(i) for i in range(10, 20)])  # growing: only in the log from here on
    c.delete("ops", ids=[5, 15])
    c.upsert("ops", [row(11, score=111)])
    c.drop_collection_field("ops", field_name="score")
    c.add_collection_field("ops", "score", DataType.INT64, nullable=True)
    c.drop_collection_field("ops", field_name="kind")
    c.add_collection_field("ops", "kind", DataType.VARCHAR, max_length=8, nullable=True)
    c.insert("ops", [{"id": i, "v": _vec(i), "score": -i, "kind": f"k{i}", "x": f"dyn{i}"} for i in range(20, 23)])
    c.insert("ops", [{"id": 23, "v": _vec(23)}])
    c.create_user("alice", "password1")
    c.create_role("reader")
    c.grant_privilege("reader", "Collection", "Query", "ops")
    c.grant_privilege("reader", "Collection", "Search", "ops")
    c.grant_role("alice", "reader")
    c.close()


# what the older version answered before it stopped (id -> (score, kind, tag, x))
EXPECTED = {
    **{i: (None, None, f"t{i}" if i % 2 else "dflt", f"dyn{i}") for i in [*range(0, 20), *range(30, 34)]
       if i not in (5, 15)},
    **{i: (-i, f"k{i}", "dflt", f"dyn{i}") for i in range(20, 23)},
    23: (None, None, "dflt", None),
}


def _rows(c: MilvusClient) -> dict:
    rows = c.query("ops", filter="", output_fields=["*"], limit=1000, consistency_level="Strong")
    return {r["id"]: (r["score"], r["kind"], r["tag"], r.get("x")) for r in rows}


def _check(c: MilvusClient, when: str) -> None:
    assert _rows(c) == EXPECTED, when
    assert c.query("ops", filter="score is null", output_fields=["count(*)"],
                   consistency_level="Strong")[0]["count(*)"] == len(EXPECTED) - 3, when
    assert sorted(r["id"] for r in c.query("ops", filter="kind like 'k%'", output_fields=["id"],
                                           consistency_level="Strong")) == [20, 21, 22], when
    hit = c.search("ops", [[0.0, 0.0]], limit=1, output_fields=["score"], consistency_level="Strong")[0][0]
    assert (hit["id"], hit["distance"], hit["entity"]["score"]) == (0, 0.0, None), when
    fields = {f["name"]: f for f in c.describe_collection("ops")["fields"]}
    assert fields["score"]["type"] == DataType.INT64 and fields["score"]["nullable"], when
    assert fields["kind"]["type"] == DataType.VARCHAR, when
    assert sorted(c.list_partitions("ops")) == ["_default", "p1"], when


@pytest.fixture
def old_data(tmp_path) -> Path:
    return unpack(FIXTURE, tmp_path / "data")


def test_standalone_data_of_08afdcf_reads_as_it_did(old_data):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = start_auth_standalone(old_data, port)
    try:
        c = MilvusClient(uri=uri, token=ROOT)
        c.load_collection("ops")
        _check(c, "the log replayed")
        c.flush("ops")  # the older records persisted by this version's data node
        _check(c, "after a flush")
        c.insert("ops", [{"id": 40, "v": _vec(40), "score": 4, "kind": "n"}])
        assert proc.stop() == 0
        proc = start_auth_standalone(old_data, port)
        c = MilvusClient(uri=uri, token=ROOT)
        c.load_collection("ops")
        assert c.get("ops", ids=[40], output_fields=["score", "kind"])[0] | {"id": 40} == \
            {"id": 40, "score": 4, "kind": "n"}
        c.delete("ops", ids=[40])
        _check(c, "after a restart of this version")
        # users, roles and grants written without cred/stamp; a write of this version next to them
        alice = MilvusClient(uri=uri, token="alice:password1")
        assert len(alice.query("ops", filter="id < 3", consistency_level="Strong")) == 3
        with pytest.raises(grpc.RpcError) as refused:
            alice.insert("ops", [{"id": 99, "v": _vec(1)}])
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        alice.close()
        assert list(c.describe_user("alice")["roles"]) == ["reader"]
        t0 = time.monotonic()
        c.create_user("bob", "password2")
        c.grant_role("bob", "reader")
        assert time.monotonic() - t0 < 3
        bob = MilvusClient(uri=uri, token="bob:password2")
        assert len(bob.query("ops", filter="id in [20, 21]", consistency_level="Strong")) == 2
        bob.close()
        c.close()
    finally:
        proc.stop()


if __name__ == "__main__":  # python tests/e2e/test_upgrade_in_place.py OLD_TREE OUT.tar.gz
    make_fixture(sys.argv[1], str(Path(sys.argv[2]).resolve()), build_old_state)

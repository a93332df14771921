"""``vecdb inspect`` (vecdb/inspect.py), run as ``python -m vecdb inspect ... --json`` subprocesses:

- beside a running standalone, on its data directory (read without the lock: the server keeps
  working, and is not blocked): collections, segments (the ids pymilvus's list_persistent_segments
  gives), sessions (the lock-holding server process), index builds, ``keys coll/``; the text tables too;
- on a cluster's etcd: sessions of every role, the coord's assignments (replica nodes, channel
  leaders, sealed segment placement), segments;
- a bad store URL, a missing data directory, an unknown collection: a clear error and exit 2.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
from pymilvus import DataType, MilvusClient

from tests.conftest import free_port, spawn_vecdb, start_cluster, stop_processes, vecdb_command, wait_until

DIM = 8


def _inspect(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(vecdb_command("inspect", *args), capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"inspect {args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def _json(*args: str) -> dict:
    return json.loads(_inspect(*args, "--json").stdout)


def _fill(c: MilvusClient, name: str, rows: int = 120) -> None:
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    c.create_collection(name, schema=schema, num_shards=2)
    c.create_partition(name, "p1")
    rng = np.random.default_rng(0)
    c.insert(name, [{"id": i, "vec": rng.random(DIM).tolist()} for i in range(rows)])
    c.insert(name, [{"id": 10_000 + i, "vec": rng.random(DIM).tolist()} for i in range(10)], partition_name="p1")
    c.flush(name)
    ip = c.prepare_index_params()
    ip.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
    c.create_index(name, ip)
    c.load_collection(name)


def _segment_ids(seg: dict, name: str) -> set[int]:
    (coll,) = [c for c in seg["collections"] if c["collection"] == name]
    return {s["segment_id"] for ch in coll["channels"].values() for s in ch["segments"]}


def test_inspect_a_running_standalone(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    proc = spawn_vecdb({}, data, "standalone", "--port", str(port), "--http-port", "0")
    try:
        c = MilvusClient(f"http://127.0.0.1:{port}")
        _fill(c, "insp")
        c.create_collection("other", dimension=4)
        c.create_alias("insp", "insp_alias")
        where = ("--data-dir", str(data))

        colls = _json("collections", *where)
        by_name = {x["name"]: x for x in colls["collections"]}
        assert set(by_name) == {"insp", "other"}
        insp = by_name["insp"]
        assert insp["db"] == "default" and insp["shards"] == 2 and len(insp["channels"]) == 2
        assert insp["loaded"] and insp["aliases"] == ["insp_alias"]
        assert insp["partitions"] == ["_default", "p1"]
        assert [(i["field"], i["type"], i["metric"]) for i in insp["indexes"]] == [("vec", "HNSW", "L2")]
        assert insp["fields"][0].startswith("id:INT64") and "pk" in insp["fields"][0]
        assert "default" in colls["databases"]

        seg = _json("segments", "insp", *where)
        persistent = {s.segment_id for s in c.list_persistent_segments("insp")}
        assert persistent and _segment_ids(seg, "insp") == persistent
        (coll,) = seg["collections"]
        segs = [s for ch in coll["channels"].values() for s in ch["segments"]]
        assert sum(s["rows"] for s in segs) == 130
        assert {s["partition"] for s in segs} == {"_default", "p1"}
        assert all(s["prefix"].startswith(f"segments/{insp['id']}/") for s in segs)
        assert all(ch["checkpoint"] > 0 for ch in coll["channels"].values())

        sessions = _json("sessions", *where)  # the standalone's session is leased, in its memory only
        assert [h["pid"] for h in sessions["lock_holders"]] == [proc.pid]
        assert "standalone" in sessions["lock_holders"][0]["command"]

        builds = _json("index-builds", *where)
        assert {b["collection"] for b in builds["index_builds"]} == {"insp", "other"}
        assert all(b["failed"] == 0 for b in builds["index_builds"])
        assert _json("assignments", *where)["assignments"] == []

        keys = _json("keys", "coll/", *where)
        assert json.loads(_inspect(*where, "--json", "keys", "coll/").stdout) == keys  # options before the command
        assert {k["key"] for k in keys["keys"]} == {f"coll/{x['id']}" for x in colls["collections"]}
        with_values = _json("keys", "coll/", "--values", *where)
        assert all(k["value"].startswith("{") and len(k["value"]) <= 123 for k in with_values["keys"])

        for what in (["collections"], ["segments"], ["sessions"], ["assignments"], ["index-builds"],
                     ["keys", "seg/", "--values"]):
            text = _inspect(*what, *where).stdout  # the tables
            assert text.strip(), what
        # what the count is: every row the segment files hold, not count(*)
        assert "130 stored rows (deleted or replaced rows included until compaction)" in \
            _inspect("segments", "insp", *where).stdout
        assert "insp" in _inspect("collections", *where).stdout

        # the server is not disturbed: it writes on, and inspect sees the new state
        c.insert("insp", [{"id": 50_000, "vec": [0.5] * DIM}])
        c.flush("insp")
        assert c.query("insp", "id == 50000", output_fields=["id"]) == [{"id": 50_000}]
        persistent = {s.segment_id for s in c.list_persistent_segments("insp")}
        assert _segment_ids(_json("segments", "insp", *where), "insp") == persistent
        assert proc.poll() is None

        bad = _inspect("segments", "nope", *where, check=False)
        assert bad.returncode == 2 and "no collection 'nope'" in bad.stderr
        bad = _inspect("collections", "--db", "nosuch", *where, check=False)  # not an empty table
        assert bad.returncode == 2 and "no database 'nosuch'" in bad.stderr
    finally:
        stop_processes([proc])
    # stopped: no lock holder, the data is still all there
    assert _json("sessions", "--data-dir", str(data))["lock_holders"] == []
    assert _segment_ids(_json("segments", "--data-dir", str(data)), "insp") == persistent


def test_inspect_bad_stores(tmp_path):
    for args, words in ((["--meta-store", "zookeeper://x:1"], "invalid --meta-store 'zookeeper://x:1'"),
                        (["--data-dir", str(tmp_path / "none")], "no metadata store at"),
                        (["--meta-store", f"etcd://127.0.0.1:{free_port()}"], "cannot read the metadata store")):
        p = _inspect("collections", *args, check=False)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert words in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)


def test_inspect_a_cluster_etcd(tmp_path, remote_storage):
    storage = remote_storage()
    with start_cluster(storage, tmp_path) as cluster:
        c = cluster.client()
        _fill(c, "cl", rows=60)
        where = ("--meta-store", storage["meta"], "--namespace", storage["namespace"])

        roles = {s["role"] for s in _json("sessions", *where)["sessions"]}
        assert {"coord", "querynode", "datanode", "proxy"} <= roles, roles

        persistent = {s.segment_id for s in c.list_persistent_segments("cl")}

        assert _segment_ids(_json("segments", "cl", *where), "cl") == persistent
        wait_until(lambda: bool(_json("assignments", "cl", *where)["assignments"]), 30, "no assign/ record")
        (a,) = _json("assignments", "cl", *where)["assignments"]
        (replica,) = a["replicas"]
        assert replica["nodes"] == ["qn0"]
        assert set(replica["channel_leaders"]) == set(_json("collections", *where)["collections"][0]["channels"])
        assert set(replica["channel_leaders"].values()) == {"qn0"}
        assert [k["key"] for k in _json("keys", "coll/", *where)["keys"]]
        assert _json("index-builds", "cl", *where)["index_builds"][0]["failed"] == 0

"""The admin web UI (vecdb.webui) on the HTTP port: ``GET /webui/`` (HTML) and ``/webui/api/collections``
(JSON) show what pymilvus sees (describe_collection, get_collection_stats, get_load_state, list_indexes,
list_loaded_segments), every text escaped, behind the REST API's credentials when authentication is on."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.grpc_gen import schema_pb2

from tests.e2e._helpers import secured_standalone

DIM = 4
EVIL = '<script>alert("x")</script> & co'


def get(port: int, path: str, auth: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def collections(port: int, auth: str | None = None) -> dict[str, dict]:
    status, body, headers = get(port, "/webui/api/collections", auth)
    assert status == 200 and headers["Content-Type"].startswith("application/json"), body
    data = json.loads(body)
    return {c["name"]: c for db in data["databases"] if db["name"] == "default" for c in db["collections"]}


def make(client: MilvusClient, name: str, rows: int = 30, growing: int = 5, load: bool = True) -> None:
    schema = client.create_schema(auto_id=False, description=f"about {EVIL}")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("color", DataType.VARCHAR, max_length=32, is_partition_key=True, description=EVIL)
    schema.add_field("n", DataType.INT64, nullable=True)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
    client.create_collection(name, schema=schema, index_params=index if load else None, num_partitions=4)
    data = [{"id": i, "vec": [float(i)] * DIM, "color": f"<b>{i % 3}</b>", "n": None if i % 2 else i}
            for i in range(rows + growing)]
    client.insert(name, data[:rows])
    client.flush(name)
    if growing:
        client.insert(name, data[rows:])


@pytest.fixture
def deployed(server, client):
    """The shared server of the e2e suite (as tests/e2e/test_rest.py: its first HTTP port) and a client."""
    return server.http_ports[0], client


def test_page_and_json_show_what_pymilvus_sees(deployed):
    port, client = deployed
    name, cold = "webui_" + uuid.uuid4().hex[:8], "webui_cold_" + uuid.uuid4().hex[:8]
    try:
        make(client, name)
        make(client, cold, rows=3, growing=0, load=False)
        client.query(name, "id >= 0", output_fields=["count(*)"], consistency_level="Strong")  # growing rows seen

        deadline = time.time() + 30
        while True:  # the loaded segments settle (a flush's sealed segment replaces growing rows)
            expected = sorted((s.segment_id, s.num_rows, s.state_name, list(s.node_ids))
                              for s in client.list_loaded_segments(name))
            got = collections(port)[name]
            shown = sorted((s["id"], s["rows"], s["state"], s["nodes"]) for s in got["segments"])
            if shown == expected and sum(r for _, r, _, _ in shown) == 35 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert shown == expected
        partitions = client.list_partitions(name)  # the partition key's _default_0 .. _default_3
        assert {s["partition"] for s in got["segments"]} <= set(partitions) and len(partitions) == 4, got["segments"]
        states = {s["state"] for s in got["segments"]}
        assert "Growing" in states and states & {"Sealed", "Flushed"}, got["segments"]  # flushed, and growing

        d = client.describe_collection(name)
        assert got["id"] == d["collection_id"] and got["shards"] == d["num_shards"]
        assert got["description"] == d["description"] == f"about {EVIL}"
        assert [(f["name"], schema_pb2.DataType.Value(f["type"]), f["description"]) for f in got["fields"]] == \
            [(f["name"], int(f["type"]), f.get("description", "")) for f in d["fields"]]
        fields = {f["name"]: f for f in got["fields"]}
        assert fields["id"]["primary_key"] and fields["id"]["type"] == "Int64"
        assert fields["color"]["partition_key"] and fields["color"]["description"] == EVIL
        assert fields["color"]["type"] == "VarChar" and fields["color"]["params"]["max_length"] == "32"
        assert fields["n"]["nullable"] and not fields["vec"]["nullable"]
        assert fields["vec"]["type"] == "FloatVector" and fields["vec"]["params"]["dim"] == str(DIM)
        assert got["row_count"] == client.get_collection_stats(name)["row_count"] == 35
        assert got["load_state"] == str(client.get_load_state(name)["state"]) == "Loaded"
        assert got["load_progress"] == 100
        [index] = got["indexes"]
        described = client.describe_index(name, client.list_indexes(name)[0])
        assert (index["field"], index["index_type"], index["metric_type"]) == ("vec", "HNSW", "L2")
        assert (index["indexed_rows"], index["total_rows"]) == \
            (described["indexed_rows"], described["total_rows"])

        c = collections(port)[cold]
        assert c["load_state"] == "NotLoad" and c["segments"] == [] and c["indexes"] == []
        assert c["row_count"] == client.get_collection_stats(cold)["row_count"] == 3

        for path in ("/webui/", "/webui"):
            status, body, headers = get(port, path)
            assert status == 200 and headers["Content-Type"].startswith("text/html"), body
            page = body.decode()
            assert page.startswith("<!DOCTYPE html>") and '<meta http-equiv="refresh" content="10">' in page
            assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
            assert f"<td>{name}</td><td>{got['id']}</td><td>{got['shards']}</td><td>35</td><td>Loaded</td>" \
                in page
            assert f"<td>{cold}</td><td>{c['id']}</td><td>{c['shards']}</td><td>3</td><td>NotLoad</td>" in page
            assert "<td>HNSW</td><td>L2</td>" in page and "<td>primary</td>" in page and "<td>partition</td>" in page
            assert "<th>role</th>" in page and "<th>uptime</th>" in page
            for seg in got["segments"]:  # its partition by name, as `vecdb inspect segments` shows it
                assert f"<td>{seg['id']}</td><td>{seg['partition']}</td>" in page
        assert get(port, "/webui/nothing")[0] == 404
    finally:
        for n in (name, cold):
            if client.has_collection(n):
                client.drop_collection(n)


def test_server_section(deployed):
    port, _ = deployed
    status, body, _ = get(port, "/webui/api/collections")
    assert status == 200
    srv = json.loads(body)["server"]
    from importlib.metadata import version

    assert srv["version"] == version("vecdb") and srv["role"] in ("standalone", "proxy", "node")
    assert srv["uptime_seconds"] >= 0 and isinstance(srv["node_id"], int)
    assert "default" in [d["name"] for d in json.loads(body)["databases"]]


# --- authentication on -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    srv = secured_standalone(tmp_path_factory.mktemp("webui-auth"))
    root = MilvusClient(uri=f"http://127.0.0.1:{srv.port}", user="root", password="Milvus")
    yield srv, srv.http_port, root
    root.close()
    srv.stop()


def test_auth_asks_for_credentials_and_shows_what_the_user_may_see(secured):
    srv, port, root = secured
    make(root, "webui_open", rows=4, growing=1)
    make(root, "webui_hidden", rows=2, growing=0, load=False)
    for auth in (None, basic("root", "wrong"), "Bearer nobody:nothing", "Basic !!notbase64"):
        for path in ("/webui/", "/webui/api/collections"):
            status, body, headers = get(port, path, auth)
            assert status == 401, (auth, path, body)
            assert headers["WWW-Authenticate"].startswith("Basic")
            assert b"webui_open" not in body

    everything = collections(port, basic("root", "Milvus"))
    assert {"webui_open", "webui_hidden"} <= set(everything)
    assert set(collections(port, "Bearer root:Milvus")) == set(everything)
    assert everything["webui_open"]["row_count"] == 5 and everything["webui_hidden"]["row_count"] == 2

    root.create_user("webui_viewer", "viewer-pass-1")
    root.create_role("webui_viewers")
    root.grant_role("webui_viewer", "webui_viewers")
    root.grant_privilege_v2("webui_viewers", "DatabaseReadOnly", "*", db_name="default")
    root.grant_privilege_v2("webui_viewers", "CollectionReadOnly", "webui_open", db_name="default")
    seen = collections(port, basic("webui_viewer", "viewer-pass-1"))
    assert set(seen) == {"webui_open"}
    assert seen["webui_open"]["row_count"] == 5 and "error" not in seen["webui_open"], seen
    status, body, _ = get(port, "/webui/", basic("webui_viewer", "viewer-pass-1"))
    assert status == 200 and b"webui_open" in body and b"webui_hidden" not in body


def test_workers_primary_port_passes_the_webui_on(tmp_path):
    """``vecdb standalone --workers 2``: the primary's HTTP port answers /webui/ from a worker."""
    from tests.conftest import WorkersStandalone

    srv = WorkersStandalone(tmp_path, 2)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{srv.port}")
        make(client, "webui_workers", rows=6, growing=2)
        client.close()
        primary = srv.http_ports[0] - 1
        got = collections(primary)["webui_workers"]
        assert got["row_count"] == 8 and got["load_state"] == "Loaded"
        status, body, headers = get(primary, "/webui/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"webui_workers" in body
        assert get(primary, "/webui/nothing")[0] == 404
    finally:
        srv.stop()

"""What a resource-leak churn of a cluster (coord, two proxies, query nodes, a data node on NATS, etcd and
S3; collections created, written through both proxies, read at every consistency level, flushed and
dropped through either proxy, query nodes restarted under new ids) found kept for good, each kept here as
a bound on the structure that grew (not on timings):

- only the proxy that handled a drop forgot the collection's channels: every other proxy kept its writer's
  lock, last position and recent read timestamps, the seal policy's counts and its router's recent log
  ends (Bounded reads) and parsed assignment of each dropped collection it had written to or read from
  (+1 to +2 entries per channel over 300 rounds); now every proxy forgets them when its catalog sees the
  drop (``Catalog.on_drop``), and so does the coord's flush writer;
- the router kept the address, read count and parsed reports of every query node that ever left (a
  restarted node comes back under a new id); the read counts of the last 64 stay;
- the data node process kept its persist lock, its truncation mark and its seal writer's state of every
  channel it had persisted (``DataNode.drop_collection`` runs in the proxy that handles the drop);
- the coord's assignment manager kept when it last changed the assignment of every collection ever loaded;
- each process's JetStream log remembered every stream it had created or used (now a bounded cache).
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.conftest import server_settings, wait_until
from vecdb.proxy import router as router_module
from vecdb.storage import jetstream_log

DIM = 4
ROUNDS = 10
KNOWN_MAX = 8


def _rows(n: int, start: int, seed: int) -> list[dict]:
    vectors = np.random.default_rng(seed).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "vector": vectors[i].tolist()} for i in range(n)]


@pytest.fixture
def roles(tmp_path, remote_storage, monkeypatch):
    """coord, data node "dn-<x>" (its seal policy at 50 rows), query node "qn-<x>" and proxies px0, px1 in
    this process; yields (coord, data node, query node, [proxies], settings maker)."""
    from vecdb.coord.server import Coord
    from vecdb.datanode.process import DataNodeProcess
    from vecdb.proxy.process import ProxyProcess
    from vecdb.querynode.process import QueryNodeProcess
    from vecdb.storage.backends import open_log, open_meta

    monkeypatch.setattr(jetstream_log, "_KNOWN_MAX", KNOWN_MAX)
    monkeypatch.setattr(router_module, "GONE_COUNTS_KEPT", 1)
    storage = dict(remote_storage(), session_ttl=4)
    tag = uuid.uuid4().hex[:6]

    def settings(name: str):
        s = server_settings(tmp_path / name, storage=storage)
        s.datanode.seal_rows = 50  # the data node's seal writer appends to the channels it persists
        return s

    cs = settings("coord").storage
    meta, wal = open_meta(cs), open_log(cs)
    coord = Coord(meta, session_ttl=4, wal=wal)
    made: list = []
    try:
        made.append(DataNodeProcess(settings("dn"), node_id=f"dn-{tag}"))
        made.append(QueryNodeProcess(settings("qn"), node_id=f"qn-{tag}"))
        proxies = [ProxyProcess(settings(f"px{i}"), node_id=f"px{i}-{tag}") for i in range(2)]
        made += proxies
        yield coord, made[0], made[1], proxies, settings
    finally:
        for p in reversed(made):
            p.stop()
        coord.stop()
        wal.close()
        meta.close()


def test_a_churn_of_collections_and_query_nodes_leaves_no_state_behind(roles):
    from vecdb.coord.assignment import AssignmentManager
    from vecdb.querynode.process import QueryNodeProcess

    coord, datanode, querynode, proxies, settings = roles
    clients = [MilvusClient(uri=f"http://127.0.0.1:{p.port}") for p in proxies]
    try:
        clients[0].create_collection("kept", dimension=DIM, num_shards=2)  # loaded
        clients[0].insert("kept", _rows(20, 0, 0))
        kept = proxies[0].roles.catalog.get("default", "kept")
        channels = set(kept.channels)

        for i in range(ROUNDS):
            one, other = clients[i % 2], clients[1 - i % 2]
            name = f"churn_{i}"
            one.create_collection(name, dimension=DIM, num_shards=2)
            one.insert(name, _rows(60, 0, i))  # over the data node's seal policy: it appends a seal record
            other.insert(name, _rows(60, 100, i))  # both proxies write both channels
            assert len(other.search(name, [[0.1] * DIM], limit=3, consistency_level="Bounded")[0]) == 3
            assert one.query(name, "", output_fields=["count(*)"],
                             consistency_level="Strong")[0]["count(*)"] == 120
            for c in clients:
                c.search("kept", [[0.2] * DIM], limit=2, consistency_level="Bounded")
            if i % 3 == 0:
                other.flush(name)  # the coord's flush writer appends seal records
            clients[(i // 2) % 2].drop_collection(name)  # each proxy drops some, and sees the others' drops

        for _ in range(2):  # query nodes that come and go under ids of their own
            extra = QueryNodeProcess(settings("qx"), node_id="qx-" + uuid.uuid4().hex[:8])
            qx = extra.node_id
            wait_until(lambda qx=qx: all(qx in p.router.node_ids() for p in proxies), 30, "the proxies see qx")
            for c in clients:  # reads spread over the nodes of the replica (one reaches qx's channel, if any)
                assert c.query("kept", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 20
            extra.stop()
            wait_until(lambda qx=qx: all(qx not in p.router.node_ids() for p in proxies), 30, "qx is gone")

        for p in proxies:
            writer, router, unsealed = p.roles.writer, p.router, p.roles.sealer.unsealed
            assert set(writer._locks) <= channels and set(writer._last) <= channels, (p.node_id, dict(writer._last))
            assert all(set(k) <= channels for k in writer._recent_read_ts), (p.node_id, writer._recent_read_ts)
            assert set(unsealed._rows) <= channels and set(unsealed._bytes) <= channels, (p.node_id, unsealed._rows)
            assert set(router._ends_seen) <= channels, (p.node_id, router._ends_seen)
            live = set(router._nodes)
            assert live == {querynode.node_id}, live
            assert set(router._addresses) == live, router._addresses
            assert len(set(router._served_count) - live) <= 1, router._served_count  # GONE_COUNTS_KEPT
            parsed = set(router._parsed)
            assert parsed <= {f"a{kept.id}", *(f"s{n}" for n in live), *(f"f{n}" for n in live)}, parsed
            # the bounded stream cache: every JetStream log of the process (a proxy's, the nodes', the coord's)
            assert len(p.backends.log._known) <= KNOWN_MAX, p.backends.log._known

        term = coord._term
        assert term is not None and term.flush is not None
        assert set(term.flush.writer._last) <= channels and set(term.flush.writer._locks) <= channels
        manager = next(a for a in term.assigners if isinstance(a, AssignmentManager))
        wait_until(lambda: set(manager._changed_at) <= {kept.id}, 10, "the coord's record of dropped collections")

        def datanode_state() -> dict[str, set[str]]:
            return {"locks": set(datanode.node._locks), "truncated": set(datanode.flusher._truncated),
                    "seal writer": set(datanode._sealer._locks) | set(datanode._sealer._last)}
        # the follower threads of the dropped channels end asynchronously, then forget them
        wait_until(lambda: all(s <= channels for s in datanode_state().values()), 20,
                   "the data node forgets the dropped collections' channels")

        for c in clients:  # everything still answers after the caches were emptied
            assert c.query("kept", "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"] == 20
            assert len(c.search("kept", [[0.3] * DIM], limit=3, consistency_level="Bounded")[0]) == 3
        clients[1].insert("kept", _rows(5, 1000, 99))
        assert clients[0].query("kept", "", output_fields=["count(*)"],
                                consistency_level="Strong")[0]["count(*)"] == 25
    finally:
        for c in clients:
            c.close()

"""Helpers shared by the end-to-end tests: data, a numpy reference search, raw gRPC access.

Reference distances follow Milvus: L2 is the *squared* euclidean distance (smaller is
closer), IP the inner product and COSINE the cosine similarity (larger is closer),
HAMMING the number of differing bits (smaller is closer).
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid

import grpc
import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, connections, utility
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

SIMILARITY = {"IP", "COSINE"}


def float_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def binary_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim // 8) uint8: the packed bits of a BINARY_VECTOR field of ``dim`` bits."""
    return np.random.default_rng(seed).integers(0, 256, (n, dim // 8), dtype=np.uint8)


def distances(data: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) distances in Milvus's convention for float (f32/f16) or packed binary vectors."""
    if metric == "HAMMING":
        x = np.bitwise_xor(queries[:, None, :], data[None, :, :])
        return np.unpackbits(x, axis=2).sum(axis=2).astype(np.float64)
    d = data.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "L2":
        return (q * q).sum(1)[:, None] + (d * d).sum(1)[None, :] - 2 * q @ d.T
    if metric == "IP":
        return q @ d.T
    if metric == "COSINE":
        dn = d / np.linalg.norm(d, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        return qn @ dn.T
    raise ValueError(metric)


def reference_topk(data: np.ndarray, queries: np.ndarray, metric: str, k: int):
    """Exact top-k: (positions (nq, k), distances (nq, k)), best first."""
    dist = distances(data, queries, metric)
    order = np.argsort(-dist if metric in SIMILARITY else dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


def assert_search_matches(hits, ids: np.ndarray, data: np.ndarray, queries: np.ndarray, metric: str,
                          k: int, atol: float = 1e-3) -> None:
    """``hits`` (pymilvus search result) equals exact top-k over ``data`` whose primary keys are ``ids``.

    Distances must match to ``atol`` (relative for large values); ids must match except where
    two candidates tie within ``atol`` at the same rank.
    """
    pos, ref = reference_topk(data, queries, metric, k)
    assert len(hits) == len(queries)
    all_dist = distances(data, queries, metric)
    id_to_pos = {int(p) if not isinstance(p, str) else p: i for i, p in enumerate(ids.tolist())}
    for qi, row in enumerate(hits):
        got_ids = [h.id for h in row]
        got = np.array([h["distance"] for h in row], np.float64)
        assert len(row) == k, f"query {qi}: {len(row)} hits, want {k}"
        np.testing.assert_allclose(got, ref[qi], rtol=1e-4, atol=atol)
        for rank, pk in enumerate(got_ids):
            # the returned id's true distance equals the reported one (no id/distance mix-up)
            true_d = all_dist[qi, id_to_pos[pk]]
            assert abs(true_d - got[rank]) <= atol + 1e-4 * abs(true_d), (qi, rank, pk, true_d, got[rank])
        assert len(set(got_ids)) == k
        if metric == "HAMMING":
            continue  # integer distances tie a lot: membership up to ties is what the checks above show
        want_ids = [ids[p].item() for p in pos[qi]]
        mismatched = [r for r in range(k) if got_ids[r] != want_ids[r] and abs(got[r] - ref[qi][r]) > atol]
        assert not mismatched, f"query {qi}: ids {got_ids} != {want_ids}"


def float_schema(dim: int, *, pk: DataType = DataType.INT64, auto_id: bool = False, dynamic: bool = False,
                 extra: tuple = ()):
    schema = MilvusClient.create_schema(auto_id=auto_id, enable_dynamic_field=dynamic)
    if pk == DataType.VARCHAR:
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    else:
        schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    for name, dtype, kwargs in extra:
        schema.add_field(name, dtype, **kwargs)
    return schema


def make_collection(client: MilvusClient, name: str, schema, *, metric: str = "L2", field: str = "vec",
                    index_type: str = "FLAT", load: bool = True, **kwargs) -> None:
    """Create ``name`` with an index on ``field``; loaded unless ``load=False``.

    ``sync=False`` on create_index skips pymilvus's fixed 0.5 s sleep before it polls the index state.
    """
    idx = client.prepare_index_params()
    idx.add_index(field_name=field, index_type=index_type, metric_type=metric)
    client.create_collection(name, schema=schema, **kwargs)
    client.create_index(name, idx, sync=False)
    if load:
        client.load_collection(name)


def count(client: MilvusClient, name: str, **kwargs) -> int:
    return client.query(name, output_fields=["count(*)"], **kwargs)[0]["count(*)"]


def compact(client: MilvusClient, name: str) -> None:
    """A manual compaction of ``name``, waited for."""
    from tests.conftest import wait_until

    cid = client.compact(name)
    wait_until(lambda: client.get_compaction_state(cid) == "Completed", 60, "compaction completed")


def check_compacted_and_reloaded(client: MilvusClient, name: str, check) -> None:
    """``check()`` after a compaction, and again after a release and a load."""
    compact(client, name)
    check()
    client.release_collection(name)
    client.load_collection(name)
    check()


def reader_view(c: MilvusClient, name: str, vecs: np.ndarray, queries: int = 5, limit: int = 10) -> tuple:
    """What a reader sees of a collection with id, tag and vector fields, read Strong: count(*), every
    live row (id -> tag and rounded vector; none twice), and the nearest neighbours (id, distance, tag)
    of the first ``queries`` of ``vecs``. Equal before and after a change that must not change answers."""
    n = c.query(name, "", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    rows = c.query(name, "id >= 0", output_fields=["id", "tag", "vector"], limit=16384, consistency_level="Strong")
    live = {r["id"]: (r["tag"], tuple(np.round(r["vector"], 5))) for r in rows}
    assert len(live) == len(rows) == n  # none twice
    hits = c.search(name, vecs[:queries].tolist(), limit=limit, output_fields=["tag"], consistency_level="Strong")
    return n, live, [[(h["id"], round(h["distance"], 4), h["entity"]["tag"]) for h in q] for q in hits]


def bm25_collection(client: MilvusClient, name: str, docs: list[str], analyzer_params, *, match: bool = False,
                    max_length: int = 1000) -> None:
    """A loaded collection of ``docs`` (ids 0, 1, ...): a VARCHAR ``text`` analyzed with ``analyzer_params``
    (``enable_match`` with ``match``), a BM25 function into ``sparse`` (SPARSE_INVERTED_INDEX, BM25)."""
    from pymilvus import Function, FunctionType

    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=max_length, enable_analyzer=True, enable_match=match,
                     analyzer_params=analyzer_params)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function("bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_index(name, idx)
    client.load_collection(name)
    client.insert(name, [{"id": i, "text": t} for i, t in enumerate(docs)])


def bm25_reference(analyzer_params, docs: list[str], query: str, k1: float = 1.2,
                   b: float = 0.75) -> list[tuple[int, float]]:
    """Milvus's BM25 ranking of ``docs`` for ``query`` over the analyzer's tokens (idf ln(1 + (N - df + 0.5) /
    (df + 0.5))): (id, score) best first, ties by id, zero scores left out."""
    from vecdb.analyzer import parse_params

    a = parse_params(analyzer_params)
    toks = [a.tokens(t) for t in docs]
    dl = np.array([len(t) for t in toks], float)
    q = a.tokens(query)
    scores = np.zeros(len(docs))
    for term in set(q):
        tf = np.array([t.count(term) for t in toks], float)
        df = np.count_nonzero(tf)
        idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        scores += q.count(term) * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / dl.mean()))
    order = [i for i in np.lexsort((np.arange(len(docs)), -scores)) if scores[i] > 0]
    return [(int(i), float(scores[i])) for i in order]


def bm25_hits(client: MilvusClient, name: str, query: str, limit: int = 10) -> list:
    """The hits (ids and distances) of a Strong BM25 search of ``query`` on ``sparse``."""
    return client.search(name, [query], anns_field="sparse", limit=limit, search_params={"metric_type": "BM25"},
                         consistency_level="Strong")[0]


def check_bm25_ranking(client: MilvusClient, name: str, analyzer_params, docs: list[str], queries) -> None:
    """Each query's BM25 hits on a ``bm25_collection`` of ``docs`` are ``bm25_reference``'s, ids in order and
    scores to 1e-4."""
    for query in queries:
        hits = bm25_hits(client, name, query)
        want = bm25_reference(analyzer_params, docs, query)
        assert [h["id"] for h in hits] == [pk for pk, _ in want], query
        np.testing.assert_allclose([h["distance"] for h in hits], [s for _, s in want], rtol=1e-4)


def matching_ids(client: MilvusClient, name: str, expr: str) -> list[int]:
    """The sorted ids a Strong query with filter ``expr`` returns."""
    return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"], consistency_level="Strong"))


def host_port(uri: str) -> str:
    return uri.split("://", 1)[-1]


def secured_standalone(data_dir):
    """An in-process standalone server on ``data_dir`` with authentication on (root: ``Milvus``) and an
    HTTP port of its own (``.http_port``), started; the caller stops it."""
    from tests.conftest import free_port, server_settings
    from vecdb.standalone import Standalone

    settings = server_settings(data_dir)
    settings.security.authorization_enabled = True
    settings.http.port = free_port()
    node = Standalone(settings).start()
    node.http_port = settings.http.port  # type: ignore[attr-defined]
    return node


@contextlib.contextmanager
def serving(data_dir, port: int | None = None):
    """A standalone server of its own on ``data_dir`` (a restart when the directory was used before)
    and a client of it: ``(uri, client)``; both closed at the end."""
    from tests.conftest import start_standalone

    server = start_standalone(str(data_dir), port)
    uri = f"http://127.0.0.1:{server.port}"
    client = MilvusClient(uri=uri)
    try:
        yield uri, client
    finally:
        client.close()
        server.stop()


@contextlib.contextmanager
def raw_stub(uri: str):
    """The Milvus gRPC stub on a plain channel: requests the pymilvus client would refuse to send."""
    channel = grpc.insecure_channel(host_port(uri))
    try:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)
    finally:
        channel.close()


def create_namespaces(uri: str, collection: str, names) -> None:
    """Namespaces of a ``namespace.mode`` partition collection, created through the raw stub (pymilvus
    3.0.2 has no method for CreateNamespace)."""
    with raw_stub(uri) as stub:
        for ns in names:
            r = stub.CreateNamespace(milvus_pb2.CreateNamespaceRequest(collection_name=collection, namespace_name=ns))
            assert r.status.code == 0, r.status.reason


def namespace_collection(c, uri: str, name: str, index_params, dim: int, rows: dict[str, list[dict]]) -> None:
    """A ``namespace.mode`` partition collection (``id``, ``vector`` of ``dim``, ``tag``) with the
    namespaces of ``rows`` ({namespace: rows}), each given its rows."""
    from pymilvus import MilvusClient

    schema = MilvusClient.create_schema(enable_namespace=True)
    schema.add_field("id", datatype=5, is_primary=True)
    schema.add_field("vector", datatype=101, dim=dim)
    schema.add_field("tag", datatype=21, max_length=16)
    c.create_collection(name, schema=schema, index_params=index_params, properties={"namespace.mode": "partition"})
    create_namespaces(uri, name, list(rows))
    for ns, part in rows.items():
        c.insert(name, part, namespace=ns)


@pytest.fixture
def orm(uri):
    """A fresh ORM connection alias to the session server."""
    alias = "orm_" + uuid.uuid4().hex[:8]
    connections.connect(alias=alias, uri=uri)
    yield alias
    connections.disconnect(alias)
    connections.remove_connection(alias)


@pytest.fixture
def cname(orm):
    """A fresh collection name for ORM tests, dropped afterwards."""
    n = "orm_" + uuid.uuid4().hex[:10]
    yield n
    if utility.has_collection(n, using=orm):
        utility.drop_collection(n, using=orm)


class AckedWriter:
    """Inserts one row at a time into ``collection`` through a connection of its own to ``port``
    until the server stops answering (a kill under writes); ``acked`` lists the ids acknowledged, in
    order, which the server must keep. ``row(i)`` makes row ``i``."""

    def __init__(self, port: int, collection: str, ids: range, row):
        self.acked: list[int] = []
        self.failed = threading.Event()
        self._args = (port, collection, ids, row)
        self._thread = threading.Thread(target=self._write, daemon=True)

    def _write(self) -> None:
        port, collection, ids, row = self._args
        c = MilvusClient(uri=f"http://127.0.0.1:{port}", dedicated=True, timeout=5)
        try:
            for i in ids:
                c.insert(collection, [row(i)])
                self.acked.append(i)
        except Exception:  # noqa: BLE001 - the server is gone: what was acknowledged is what counts
            self.failed.set()
        finally:
            c.close()

    def start(self, acknowledged: int = 20) -> AckedWriter:
        """Start writing; return once ``acknowledged`` inserts were."""
        from tests.conftest import wait_until

        self._thread.start()
        wait_until(lambda: len(self.acked) >= acknowledged, 30, "the writer got no acknowledgements")
        return self

    def join(self) -> None:
        """Wait (60 s at most) for the writer to have failed on the server's end."""
        self._thread.join(60)
        assert self.failed.is_set() and not self._thread.is_alive(), "the writer did not fail on the kill"


def worker_pid(parent: int, index: int) -> int | None:
    """The pid of the parent's worker ``index`` (the child whose command line has --worker-index)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"--worker-index" in args and args[args.index(b"--worker-index") + 1] == str(
                index).encode():
            return int(entry)
    return None

"""Hostile filters (issue 9): each is refused with InvalidParameter (code 1100) or answered
quickly, nothing is written, and a second client meanwhile is served in its normal time.

One embedded standalone server for the module; one collection of long strings, so the LIKE
pattern that used to backtrack exponentially has work to do. The hostile requests run from one
thread while a second thread keeps timing ``has_collection`` and a simple query.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2

from tests.e2e._helpers import count, float_schema, make_collection, raw_stub, serving

DIM = 4
ROWS = 3_000
TEXT = "a" * 4_000
HOSTILE_LIKE = 's like "%a%a%a%a%a%a%b"'  # n**7 steps for a backtracking regex on TEXT


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("hostile_filters")) as (uri, _):
        yield uri


@pytest.fixture(scope="module")
def coll(uri):
    client = MilvusClient(uri=uri)
    name = "hostile"
    text_field = ("s", DataType.VARCHAR, {"max_length": 8192})
    make_collection(client, name, float_schema(DIM, dynamic=True, extra=(text_field,)))
    vecs = np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32)
    for start in range(0, ROWS, 500):
        client.insert(name, [{"id": i, "vec": vecs[i].tolist(), "s": TEXT + ("b" if i == 7 else "")}
                             for i in range(start, start + 500)])
    yield client, name
    client.close()


def nest(n: int, open_: str, inner: str, close: str) -> str:
    return open_ * n + inner + close * n


def deep(n: int):
    return [deep(n - 1)] if n else [1]


HOSTILE_FILTERS = [
    ("id > 3 ** 10000000", "integer result of 3 ** 10000000 is out of int64 range at column 6"),
    ("id > 9 ** 9 ** 9", "integer result of 9 ** 387420489 is out of int64 range at column 6"),
    ("id > 2 ** 20000", "integer result of 2 ** 20000 is out of int64 range at column 6"),
    ("id > " + "9" * 100_000, "out of int64 range at column 6"),
    (nest(100_000, "(", "id > 1", ")"), "nested too deeply (more than 64 levels) at column 65"),
    ("id in " + nest(5_000, "[", "1", "]"), "nested too deeply (more than 64 levels) at column 71"),
    ("not " * 50_000 + "id > 1", "nested too deeply (more than 64 levels) at column 257"),
    (" + ".join(["id"] * 20_000) + " > 0", "nested too deeply (its syntax tree is more than 256 levels deep)"),
    ("id in [" + ",".join(["1"] * 600_000) + "]", "more than the limit of 1048576"),
]


def refused(fn, *args, **kwargs) -> str:
    start = time.perf_counter()
    with pytest.raises(MilvusException) as ei:
        fn(*args, **kwargs)
    assert time.perf_counter() - start < 10.0, "refusing took too long"  # a blow-up would take hours
    assert ei.value.code == 1100, ei.value
    return ei.value.message


def hostile_requests(client: MilvusClient, name: str, uri: str) -> list[str]:
    """Every hostile request once; the messages of the refusals."""
    msgs = []
    start = time.perf_counter()
    assert client.query(name, filter=HOSTILE_LIKE, output_fields=["id"]) == [{"id": 7}]
    assert client.query(name, filter='s like "%a_a%a%a%a%a%a%c%"', output_fields=["id"]) == []
    assert time.perf_counter() - start < 10.0
    for expr, detail in HOSTILE_FILTERS:
        msg = refused(client.query, name, filter=expr, output_fields=["id"])
        assert detail in msg and msg.startswith("cannot parse expression: ") and len(msg) < 1300, msg
        msgs.append(msg)
        msgs.append(refused(client.search, name, [[0.0] * DIM], filter=expr, limit=3))
        msgs.append(refused(client.delete, name, filter=expr))
    # template values: JSON nested past the limit (a mixed list travels as one JSON text per
    # element; nested arrays can't: protobuf stops at 100 levels), and (raw stub) JSON that isn't
    msgs.append(refused(client.query, name, filter="id in {v}", filter_params={"v": [1, deep(100)]}))
    msgs.append(refused(client.query, name, filter="$meta['k'] in {v}",
                        filter_params={"v": [1, {"a": deep(100)}]}))
    msgs.append(refused(client.delete, name, filter="id in [99999999999999999999]"))
    msgs.append(refused(client.delete, name, filter="id == 99999999999999999999"))
    with raw_stub(uri) as stub:
        for raw in (b"{bad", b"\xff\xfe", b"[" * 100_000):
            req = milvus_pb2.QueryRequest(collection_name=name, expr="$meta['k'] in {v}", output_fields=["id"])
            req.expr_template_values["v"].array_val.json_data.data.extend([b"1", raw])
            st = stub.Query(req).status
            assert st.code == 1100 and "invalid value of expression template variable v: json_data" in st.reason
            msgs.append(st.reason)
    return msgs


def test_hostile_filters_are_refused_fast_and_others_keep_being_served(coll, uri):
    client, name = coll
    before = count(client, name)
    assert before == ROWS
    latencies: list[float] = []
    done = threading.Event()
    failures: list[BaseException] = []
    other = MilvusClient(uri=uri)

    def bystander():
        try:
            while not done.is_set():
                t0 = time.perf_counter()
                assert other.has_collection(name)
                assert other.query(name, filter="id == 1", output_fields=["id"]) == [{"id": 1}]
                latencies.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    results: list[str] = []

    def attacker():
        try:
            results.extend(hostile_requests(client, name, uri))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    hostile = threading.Thread(target=attacker)
    watcher = threading.Thread(target=bystander)
    watcher.start()
    hostile.start()
    hostile.join(timeout=120)
    done.set()
    watcher.join(timeout=30)
    other.close()
    assert not hostile.is_alive()
    if failures:
        raise failures[0]
    assert len(results) == 3 * len(HOSTILE_FILTERS) + 4 + 3, "a hostile request failed its checks"
    # the bystander is served all along: a hostile filter that held the server (catastrophic backtracking, a
    # huge allocation) would stall it for minutes; a machine busy with other work stalls it for a second or two
    assert len(latencies) >= 5 and float(np.median(latencies)) < 0.5 and max(latencies) < 10.0, \
        sorted(latencies)[-5:]
    assert count(client, name) == before  # nothing written (or deleted)
    assert client.query(name, filter="id in [7]", output_fields=["s"])[0]["s"] == TEXT + "b"


def test_delete_by_ids_reads_literals_as_the_filter_language_does(coll):
    """Delete's fast path (``pk in [...]`` without a scan) takes only plain literals; other
    spellings are for the filter language to judge: it refuses Python's 1_000."""
    client, name = coll
    for expr in ("id in [1_000]", "id == 1_000"):
        with pytest.raises(MilvusException) as err:
            client.delete(name, filter=expr)
        assert err.value.code == 1100, expr
    assert client.delete(name, filter="id in [987654321, -5]")["delete_count"] == 2
    assert count(client, name) == ROWS  # neither key existed

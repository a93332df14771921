"""Every public Milvus RPC fuzzed with random protobuf requests (issue 14's fuzz item).

Each unary method of ``MilvusService`` gets requests whose every field is absent or random
(``proto_message`` of test_fuzz_api: wrong types for the fields' meaning, huge and negative
numbers, NaN, long and odd strings, names of real and missing collections), and random bytes
that parse as the request. The oracle: each reply is a status (success or a Milvus error), never
code 65535 nor a gRPC INTERNAL/UNKNOWN; the server stays healthy; its memory stays bounded; a
bystander collection in a database no request names keeps its checksum (its rows byte for byte).

A fixed, derandomized run is in ``make test`` (a few examples per method). For a long run:
``python -m tests.e2e.test_fuzz_every_rpc --cases 10000`` prints the outcome counts per method.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from tests.conftest import start_standalone
from tests.e2e._helpers import float_vectors
from tests.e2e.test_fuzz_api import UNEXPECTED, parsed_bytes, proto_message
from vecdb.proxy.quota import resident_bytes

KEEP_DB, KEEP = "fzkeep", "fz_keep"
SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
METHODS = sorted(m.name for m in SERVICE.methods if not (m.client_streaming or m.server_streaming))
REQUEST_CLASS = {m.name: message_factory.GetMessageClass(m.input_type) for m in SERVICE.methods}
EXAMPLES_PER_METHOD = 8
MEMORY_GROWTH_LIMIT = 512 << 20


class Target:
    """A standalone server with a bystander collection in its own database, and a raw stub."""

    def __init__(self, data_dir) -> None:
        self.server = start_standalone(data_dir)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = milvus_pb2_grpc.MilvusServiceStub(self.channel)
        self.client = MilvusClient(uri=f"http://127.0.0.1:{self.server.port}")
        self.client.create_database(KEEP_DB)
        (getattr(self.client, "use_database", None) or self.client.using_database)(KEEP_DB)
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        schema.add_field("s", DataType.VARCHAR, max_length=32)
        schema.add_field("j", DataType.JSON)
        self.client.create_collection(KEEP, schema=schema)
        vecs = float_vectors(100, 4, seed=11)
        self.client.insert(KEEP, [{"id": i, "vec": vecs[i].tolist(), "s": f"row{i}", "j": {"k": [i, "x"]}}
                                  for i in range(100)])
        index = self.client.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        self.client.create_index(KEEP, index)
        self.client.load_collection(KEEP)
        self.checksum = self.rows()
        self.outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def rows(self) -> list:
        return self.client.query(KEEP, "id >= 0", output_fields=["*"], consistency_level="Strong")

    def call(self, method: str, request) -> None:
        """One request; its outcome counted; fails the oracle as the module docstring says."""
        try:
            reply = getattr(self.stub, method)(request, timeout=60)
        except grpc.RpcError as err:
            code = err.code()
            self.outcomes[method][f"grpc {code.name}"] += 1
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.DEADLINE_EXCEEDED), (method, err, request)
        else:
            status = reply if isinstance(reply, common_pb2.Status) else getattr(reply, "status", None)
            code = status.code if status is not None else 0
            self.outcomes[method]["ok" if code == 0 else f"code {code}"] += 1
            assert code != UNEXPECTED, (method, status.reason, request)
        health = self.stub.CheckHealth(milvus_pb2.CheckHealthRequest(), timeout=30)
        assert health.status.code == 0 and health.isHealthy, method

    def close(self) -> None:
        self.client.close()
        self.channel.close()
        self.server.stop()


def _aimed(msg):
    """Keep requests out of the bystander's database (a random name reaching it is the test's business
    only through the names it samples, which never include it)."""
    if getattr(msg, "db_name", "") == KEEP_DB:
        msg.db_name = ""
    return msg


def requests_for(method: str):
    cls = REQUEST_CLASS[method]
    return st.one_of(proto_message(cls.DESCRIPTOR), parsed_bytes(cls)).map(_aimed)


def fuzz(target: Target, method: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests_for(method))
    def run(request):
        target.call(method, request)

    run()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = Target(tmp_path_factory.mktemp("fuzz_every"))
    t.rss_before = resident_bytes()
    yield t
    t.close()


@pytest.mark.parametrize("method", METHODS)
def test_every_rpc_answers_garbage_with_a_status(target, method):
    fuzz(target, method, EXAMPLES_PER_METHOD)


def test_after_all_of_it_the_bystander_is_intact_and_memory_bounded(target):
    assert target.rows() == target.checksum
    growth = resident_bytes() - target.rss_before
    calls = sum(sum(c.values()) for c in target.outcomes.values())
    print(f"\nresident memory grew {growth / 2**20:.0f} MiB over {calls} fuzzed calls")
    assert growth < MEMORY_GROWTH_LIMIT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="requests in all, spread over every method")
    args = parser.parse_args(argv)
    per_method = max(1, args.cases // len(METHODS))
    with tempfile.TemporaryDirectory() as tmp:
        target = Target(tmp)
        rss = resident_bytes()
        start = time.monotonic()
        try:
            for i, method in enumerate(METHODS):
                fuzz(target, method, per_method)
                if i % 20 == 19:
                    print(f"{i + 1}/{len(METHODS)} methods, {time.monotonic() - start:.0f} s, resident "
                          f"{resident_bytes() / 2**20:.0f} MiB", flush=True)
            intact = target.rows() == target.checksum
        finally:
            target.close()
    total = collections.Counter()
    for method in METHODS:
        counts = target.outcomes[method]
        total.update(counts)
        print(f"{method:32s} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print(f"\n{sum(total.values())} calls in {time.monotonic() - start:.0f} s: "
          + ", ".join(f"{k}: {v}" for k, v in total.most_common()))
    print(f"bystander intact: {intact}; resident memory {rss / 2**20:.0f} -> {resident_bytes() / 2**20:.0f} MiB")
    return 0 if intact else 1


if __name__ == "__main__":
    sys.exit(main())

"""A server process loads pymilvus's gRPC stubs without its client package (``vecdb.pymilvus_stubs``):
the client pulls in pandas and pyarrow, ~80 MiB resident that a server never uses. The standalone
server imported the CDC (whose modules read ``pymilvus.grpc_gen``) before the proxy package that
loaded the stubs alone, and started at 176 MiB instead of 91."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", ["vecdb.standalone, vecdb.cli", "vecdb.cdc.replicate_manager",
                                     "vecdb.node, vecdb.querynode.process, vecdb.coord.server"])
def test_a_server_imports_no_pandas_or_pyarrow(modules):
    code = (f"import sys; import {modules}; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'pymilvus.orm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_client_still_imports_after_the_stubs():
    code = ("import vecdb.standalone; from pymilvus import MilvusClient, DataType; "
            "from pymilvus.grpc_gen import milvus_pb2; "
            "print(DataType.FLOAT_VECTOR.value, bool(milvus_pb2.SearchRequest))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "101 True", out.stdout + out.stderr

"""The proxy's gRPC server: a sync grpc.server with a small thread pool.

A sync server whose handler threads call numpy/FAISS inline measured fastest
here (see PERFORMANCE.md): FAISS and numpy release the GIL, so two searches run
on two cores, and there is no event-loop hand-off per request.
"""

from __future__ import annotations

import os
from concurrent import futures

import grpc
from pymilvus.grpc_gen import milvus_pb2_grpc

from vecdb.proxy.base import Roles
from vecdb.proxy.service import MilvusService

MAX_MESSAGE_BYTES = 512 << 20


def handler_threads(workers: int) -> int:
    """``workers`` if set, else twice the CPU cores this process may use, at least 4."""
    if workers > 0:
        return workers
    return max(4, 2 * len(os.sched_getaffinity(0)))


def start_server(roles: Roles, host: str, port: int, workers: int = 0) -> tuple[grpc.Server, int]:
    workers = handler_threads(workers)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            # pymilvus sends keepalive pings every 10 s, also between calls: accept them
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusService(roles), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (address in use?)")
    server.start()
    return server, bound

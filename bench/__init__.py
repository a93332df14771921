"""Benchmark harness: vecdb vs Milvus 2.3.5 vs a bare FAISS servicer vs FAISS in-process.

Run ``python -m bench.run --help``. Every server is driven only through pymilvus
(``MilvusClient``) from client processes of their own; see docs/benchmarks.md.

- ``run``: the CLI (orchestration, one table, ratios, PASS/FAIL, JSON, docs)
- ``datasets``: GloVe-50d / synthetic data, held-out queries, exact ground truth
- ``indexes``: index types with Milvus params and their FAISS twins
- ``servers``: start/stop vecdb, the bare servicer and Milvus 2.3.5; RSS and CPU
- ``client``: the pymilvus loads (build, search, count), each in its own process
- ``faiss_local``: the same loads on FAISS in-process
- ``bare_server``: the transport ceiling (FAISS behind pymilvus's stubs)
- ``report``: tables, targets, markdown, plot; ``profile``: py-spy summaries
- ``handler_cost``: vecdb's vs the bare Search handler CPU per call, no gRPC
"""

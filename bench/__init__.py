"""Benchmark harness: vecdb vs Milvus 2.3.5 vs a bare FAISS servicer vs FAISS in-process.

Run ``python -m bench.run --help``. Every server is driven only through pymilvus
(``MilvusClient``) from client processes of their own; see docs/benchmarks.md.
"""

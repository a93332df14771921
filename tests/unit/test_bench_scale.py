"""The scale benchmark's pieces (bench/scale.py, bench/datasets.py's scale sets), without servers:
blocked exact ground truth against a full sort, the seeded generator, the process-tree memory
sampler on real child processes, and the tables from a hand-made results document."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from bench import datasets, scale


def test_blocked_exact_topk_equals_a_full_float64_sort():
    base = np.concatenate([datasets.clustered_block(1, b, 3000, dim=16) for b in range(3)])
    q = datasets.clustered_block(2, 0, 50, dim=16)
    d = ((q.astype(np.float64)[:, None, :] - base.astype(np.float64)[None]) ** 2).sum(2)
    expect = np.argsort(d, axis=1, kind="stable")[:, :10]
    for block in (1000, 4096, 100_000):  # blocks smaller than, not dividing, and larger than the base
        assert np.array_equal(datasets.exact_topk_l2_blocked(base, q, 10, block=block), expect)


def test_clustered_blocks_are_seeded_and_independent_of_each_other():
    a = datasets.clustered_block(1, 3, 100, dim=32)
    assert np.array_equal(a, datasets.clustered_block(1, 3, 100, dim=32))
    assert a.dtype == np.float32 and a.shape == (100, 32)
    assert not np.array_equal(a, datasets.clustered_block(1, 4, 100, dim=32))  # another block
    assert not np.array_equal(a, datasets.clustered_block(2, 3, 100, dim=32))  # the query stream


def test_tree_sampler_counts_every_process_of_the_tree():
    # a parent holding ~10 MB that starts a child holding ~60 MB: the tree's peak has both
    code = ("import subprocess, sys, time; x = bytearray(10 << 20); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; x = bytearray(60 << 20); time.sleep(30)']); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = scale.TreeSampler(parent.pid, period=0.05)
        sampler.start()
        deadline = time.time() + 20
        while time.time() < deadline and (len(scale.process_tree(parent.pid)) < 2 or sampler.peak_kib < 70 << 10):
            time.sleep(0.1)
        mem = sampler.stop()
        assert len(scale.process_tree(parent.pid)) == 2
        assert mem["processes"] == 2
        assert mem["peak_rss_mb"] >= 70  # both bytearrays, plus two interpreters
        assert mem["sum_vmhwm_mb"] >= mem["peak_rss_mb"] * 0.9
        assert scale.tree_cpu_seconds(parent.pid) > 0
    finally:
        for pid in scale.process_tree(parent.pid)[1:]:
            subprocess.run(["kill", str(pid)], check=False)
        parent.kill()
        parent.wait()


def test_markdown_has_a_row_per_system_the_projection_and_the_failures():
    build = {"insert_rows_s": 50_000.0, "index_build_s": 100.0, "searchable_s": 120.0, "insert_s": 20.0,
             "server_cpu_s": 150.0}
    run = {"recall": 0.9, "qps": 1000.0, "server_cpu_ms_per_query": 0.5}
    ok = {"system": "vecdb", "index": "HNSW", "error": None, "build": build, "rss_after_start_mb": 100.0,
          "rss": {"peak_rss_mb": 1100.0, "peak_anon_mb": 900.0, "sum_vmhwm_mb": 1100.0, "processes": 1},
          "runs": {"nq1_t8": run, "nq100": run, "nq1_t8_ef128": dict(run, recall=0.95)},
          "loadavg": [1.0, 2.0], "loadavg_mean": 1.5}
    ok["projection_10m"] = scale.projection(ok, 1_000_000, "HNSW")
    bad = {"system": "milvus", "index": "HNSW", "error": "RuntimeError: no", "runs": {}, "loadavg": [2.0, 2.0]}
    doc = {"meta": {"dataset": "d", "n": 1_000_000, "dim": 128, "nq": 1000, "big_nq": 100, "started": "t",
                    "git_head": "abc"}, "results": [ok, bad]}
    md = scale.markdown(doc)
    assert "| HNSW ef=64 | vecdb | 50,000 | 100.0 | 120.0 | 150 | 1,100 |" in md
    assert "| HNSW ef=64 | milvus | failed: RuntimeError: no |" in md
    assert "| HNSW | vecdb | ef128 | 0.950 | 1,000 | 0.500 |" in md
    # 1,000 MiB over 1M rows -> 1,049 bytes a row; 10M rows: 100 MiB + 10x that = 9.9 GiB
    assert ok["projection_10m"]["bytes_per_row"] == 1000 * 2**20 / 1_000_000
    assert abs(ok["projection_10m"]["peak_rss_gib"] - (100 + 10_000) / 1024) < 1e-9
    assert "**an estimate**" in md

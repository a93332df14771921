"""bench.standalone_workers: the medians and issue 16's targets it prints and writes (scaling against 1
worker up to 8 workers, the best vecdb setting against Milvus), errors left out of the medians."""

from bench.standalone_workers import _summary, _targets


def _load(qps: float) -> dict:
    return {"qps": qps, "server_cpu_ms_per_query": 0.5, "server_cpu_cores": qps / 2000.0,
            "client_cpu_ms_per_query": 0.4, "recall": 0.99, "pss_mib": 100.0}


def test_medians_skip_errors_and_keep_an_error_only_setting():
    results = {"1": [_load(1000), {"error": "boom"}, _load(1200), _load(1100)],
               "milvus": [{"error": "start: RuntimeError: no milvus"}]}
    summary = _summary(results)
    assert summary["1"]["qps"] == 1100 and summary["1"]["loads"] == 3
    assert summary["milvus"] == {"error": "start: RuntimeError: no milvus"}
    targets = _targets(summary)
    assert targets["best_vecdb"] == "1" and "best_vs_milvus" not in targets


def test_scaling_and_milvus_targets():
    results = {"1": [_load(1000)], "2": [_load(1500)], "8": [_load(6000)], "16": [_load(9000)],
               "milvus": [_load(5000)]}
    targets = _targets(_summary(results))
    sc = targets["scaling"]
    assert sc["1"]["pass"] is None and sc["16"]["pass"] is None  # the target is up to 8 workers
    assert sc["2"]["of_linear"] == 0.75 and sc["2"]["pass"] is True
    assert sc["8"]["of_linear"] == 0.75 and sc["8"]["pass"] is True
    assert targets["best_vecdb"] == "16"
    assert targets["best_vs_milvus"] == 1.8 and targets["best_vs_milvus_pass"] is True
    targets = _targets(_summary({**results, "2": [_load(1300)], "16": [_load(6000)], "8": [_load(7000)]}))
    assert targets["scaling"]["2"]["pass"] is False
    assert targets["best_vecdb"] == "8" and targets["best_vs_milvus_pass"] is False

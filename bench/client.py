"""Client-side workloads, each run in a fresh process of its own (``isolated``).

Every function here talks to a server only through ``pymilvus.MilvusClient`` and
returns a plain dict of measurements. They run in a spawned child process so
the client's CPU (pymilvus costs ~0.45 ms per nq=1 request) is never counted in
the server process, and each load starts with a clean interpreter. This module
must not import FAISS: the client processes need only pymilvus and numpy.

Throughput rules (the same for every system):
- a run is at least ``duration`` seconds *and* at least one full pass over the
  queries; QPS = queries answered / wall time of the run (after a warm-up);
- recall@10 comes from the first answer to each query of that run;
- latency percentiles are per request, measured in the client (pymilvus result
  object included).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time

import numpy as np

PK, VEC = "id", "vec"


def _child(conn, fn, args, kwargs) -> None:
    try:
        try:
            answer = ("ok", fn(*args, **kwargs))
        except BaseException as e:  # sent as text: not every exception unpickles
            answer = ("err", f"{type(e).__name__}: {e}")
        conn.send(answer)
    except OSError:  # the parent gave up (timeout) and closed the pipe
        pass
    finally:
        conn.close()


def isolated(fn, *args, timeout: float | None = 3600.0, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a new spawned process; return its result.

    The child's exception comes back as RuntimeError("Type: message"); a child
    that dies without answering raises RuntimeError too. One still running after
    ``timeout`` seconds is killed and raises TimeoutError, so a hung server fails
    one measurement, not the whole run.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            proc.kill()
            raise TimeoutError(f"{fn.__name__} did not finish in {timeout:.0f} s (killed)")
        try:
            kind, value = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"{fn.__name__}: client process died (exit code {proc.exitcode})") from None
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if kind == "err":
        raise RuntimeError(value)
    return value


def _client(uri: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri)


def _hit_ids(hits) -> list:
    ids = getattr(hits, "ids", None)
    return list(ids) if ids is not None else [h["id"] for h in hits]


def build(uri: str, data_dir: str, collection: str, index_params: dict, batch: int = 5000,
          replicas: int = 1, properties: dict | None = None) -> dict:
    """Create the collection, insert ``batch``-row batches, flush, create the index
    (pymilvus waits until DescribeIndex says Finished), load ``replicas`` replicas (waits for 100%),
    then wait until DescribeIndex counts all rows as indexed (``index_wait_s``). ``properties``: the
    collection's (e.g. ``{"mmap.enabled": "true"}``), given at create.

    Returns phase times in seconds and ``insert_rows_s`` (rows / time inside the
    insert calls; the row dicts are built before the clock starts).
    """
    from pymilvus import DataType, MilvusClient

    base = np.load(os.path.join(data_dir, "base.npy"))
    client = _client(uri)
    if client.has_collection(collection):
        client.drop_collection(collection)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PK, DataType.INT64, is_primary=True)
    schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=int(base.shape[1]))
    client.create_collection(collection, schema=schema, consistency_level="Bounded",
                             **({"properties": properties} if properties else {}))

    batches = []
    for s in range(0, len(base), batch):
        rows = base[s:s + batch]
        batches.append([{PK: s + i, VEC: rows[i]} for i in range(len(rows))])
    t0 = time.perf_counter()
    insert_time = 0.0
    for rows in batches:
        t = time.perf_counter()
        res = client.insert(collection, rows)
        insert_time += time.perf_counter() - t
        if res["insert_count"] != len(rows):
            raise RuntimeError(f"insert acknowledged {res['insert_count']} of {len(rows)} rows")
    t1 = time.perf_counter()
    client.flush(collection)
    t2 = time.perf_counter()
    ip = client.prepare_index_params()
    ip.add_index(field_name=VEC, index_type=index_params["index_type"],
                 metric_type=index_params["metric_type"], params=index_params["params"])
    client.create_index(collection, ip)
    t3 = time.perf_counter()
    client.load_collection(collection, replica_number=replicas)
    t4 = time.perf_counter()
    _wait_indexed(client, collection, len(base))
    t5 = time.perf_counter()
    client.close()
    return {"rows": int(len(base)), "insert_s": t1 - t0, "insert_rows_s": len(base) / insert_time,
            "flush_s": t2 - t1, "index_s": t3 - t2, "load_s": t4 - t3, "index_wait_s": t5 - t4,
            "build_s": t5 - t0}


def _wait_indexed(client, collection: str, rows: int, timeout: float = 3600.0, poll: float = 0.1) -> None:
    """After load, wait until DescribeIndex counts every row as indexed.

    pymilvus's create_index already waited for state Finished, but a server may
    report Finished before it has built anything (vecdb builds when the
    collection is loaded), so the build time would stop too early and the first
    loads would search a half-built index.
    """
    deadline = time.perf_counter() + timeout
    while True:
        info = client.describe_index(collection, VEC) or {}
        if info.get("state") == "Finished" and int(info.get("indexed_rows", 0)) >= rows:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"index not finished after {timeout:.0f} s: {info}")
        time.sleep(poll)


def search_load(uri: str, data_dir: str, collection: str, search_params: dict, *,
                threads: int = 1, nq: int = 1, duration: float = 5.0, warmup: float = 0.5,
                k: int = 10, barrier=None) -> dict:
    """Closed-loop search load: ``threads`` threads sharing one MilvusClient, each
    sending ``nq`` queries per request back to back.

    Returns qps (queries/s), rps (requests/s), p50/p99/mean latency (ms, per
    request), recall@k, the counts (``warmup_requests`` too, so a caller can
    divide the server's CPU time by every request it saw) and the client
    process's own CPU per query. ``barrier`` (a multiprocessing Barrier): the warm-up starts once
    it is passed, not at once (several client processes loading together).
    """
    from bench.datasets import recall_at_k

    queries = np.load(os.path.join(data_dir, "queries.npy"))
    gt = np.load(os.path.join(data_dir, "gt.npy"))
    nbatch = max(1, len(queries) // nq)
    batches = [queries[i * nq:(i + 1) * nq] for i in range(nbatch)]
    client = _client(uri)
    if barrier is not None:
        barrier.wait(300)

    def one(j: int):
        return client.search(collection, data=batches[j % nbatch], limit=k,
                             search_params=search_params, anns_field=VEC)

    stop_warm = time.perf_counter() + warmup
    warm = 0
    while time.perf_counter() < stop_warm:
        one(warm)
        warm += 1

    found = np.full((nbatch * nq, k), -1, dtype=np.int64)
    counter = itertools.count()
    lat: list[list[float]] = [[] for _ in range(threads)]
    ends = [0.0] * threads
    errors: list[BaseException] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + duration

    def worker(w: int):
        mine = lat[w]
        try:
            while True:
                j = next(counter)
                if j >= nbatch and time.perf_counter() >= deadline:
                    break
                t = time.perf_counter()
                res = one(j)
                mine.append(time.perf_counter() - t)
                if j < nbatch:
                    for r, hits in enumerate(res):
                        ids = _hit_ids(hits)[:k]
                        found[j * nq + r, :len(ids)] = ids
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)
        ends[w] = time.perf_counter()

    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    client_cpu = time.process_time() - cpu0
    if errors:
        raise errors[0]
    elapsed = max(ends) - start
    all_lat = np.concatenate([np.asarray(x) for x in lat]) * 1000.0
    client.close()
    return {
        "threads": threads, "nq": nq, "requests": len(all_lat), "warmup_requests": warm, "seconds": elapsed,
        "client_cpu_ms_per_query": client_cpu * 1000.0 / (len(all_lat) * nq),
        "qps": len(all_lat) * nq / elapsed, "rps": len(all_lat) / elapsed,
        "p50_ms": float(np.percentile(all_lat, 50)), "p99_ms": float(np.percentile(all_lat, 99)),
        "mean_ms": float(all_lat.mean()),
        "recall": recall_at_k(found, gt[:nbatch * nq], k),
    }


def count_latency(uri: str, collection: str, reps: int = 20, consistency: str = "Strong") -> dict:
    """Latency of ``count(*)`` (no filter) at the given consistency level."""
    client = _client(uri)
    times, count = [], None
    for _ in range(reps + 1):
        t = time.perf_counter()
        res = client.query(collection, filter="", output_fields=["count(*)"], consistency_level=consistency)
        times.append(time.perf_counter() - t)
        count = int(res[0]["count(*)"])
    client.close()
    ms = np.asarray(times[1:]) * 1000.0  # the first call is a warm-up
    return {"count": count, "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "consistency": consistency}


def drop(uri: str, collection: str) -> None:
    client = _client(uri)
    if client.has_collection(collection):
        client.drop_collection(collection)
    client.close()


def spread_load(uris: list[str], threads: int, data_dir: str, collection: str, search_params: dict, *,
                duration: float, sample):
    """nq=1 searches from ``len(uris)`` client processes (client i on ``uris[i]``), ``threads`` threads in all,
    loading together once each has connected (a barrier). ``sample()`` (the server's CPU) is read at the end of
    the 0.5 s warm-up and ``duration`` s later, while the clients still load. Returns the loads summed (qps,
    requests in the window, recall, client CPU per query, each client's qps, ``clients_ready_s``: seconds from
    the call until every client had connected and passed the barrier), the two samples and the seconds between
    them."""
    started = time.monotonic()
    n = len(uris)
    barrier = multiprocessing.get_context("spawn").Barrier(n + 1)
    split = [threads // n + (1 if i < threads % n else 0) for i in range(n)]
    loads: list = [None] * n
    errors: list = []

    def run(i: int) -> None:
        try:
            loads[i] = isolated(search_load, uris[i], data_dir, collection, search_params, threads=split[i], nq=1,
                                duration=duration, warmup=0.5, barrier=barrier, timeout=duration + 300)
        except BaseException as e:  # noqa: BLE001 - raised below
            errors.append(e)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    barrier.wait(300)
    ready_s = time.monotonic() - started
    time.sleep(0.5)
    s0, t0 = sample(), time.monotonic()
    time.sleep(duration)
    s1, t1 = sample(), time.monotonic()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    requests = sum(x["requests"] for x in loads)
    return ({"qps": sum(x["qps"] for x in loads), "requests": requests,
             "recall": sum(x["recall"] * x["requests"] for x in loads) / requests,
             "client_cpu_ms_per_query": sum(x["client_cpu_ms_per_query"] * x["requests"] for x in loads) / requests,
             "per_client_qps": [x["qps"] for x in loads], "clients_ready_s": ready_s}, s0, s1, t1 - t0)

"""Soak run: inserts, upserts and deletes through pymilvus, continuously, with compaction on, and
checks that the log, the segments and the object store stay bounded and that the results equal a
reference kept by this script.

    .venv/bin/python -m bench.soak                      # standalone, embedded backends (WAL, files)
    .venv/bin/python -m bench.soak --storage remote     # standalone on NATS, etcd and S3 (started here)
    .venv/bin/python -m bench.soak --cluster            # coord, 2 query nodes, a data node, 2 proxies

The workload is fixed by ``--rows`` (rows inserted in all), ``--batch``, ``--live`` and ``--seed``:
each round inserts ``batch`` new primary keys, upserts a quarter of a batch of live keys (new
vector, new ``val``) and, once ``live`` keys are alive, deletes as many live keys as it inserted, so
the live set stays near ``live`` while every row is eventually replaced. Every ``--flush-every``
rounds it flushes (a sealed segment per channel and partition); every ``--compact-every`` rounds it
asks for a compaction (``client.compact``) besides the server's automatic one. The reference is
the same operations applied to numpy arrays indexed by primary key.

At ``--samples`` evenly spaced rounds it prints the log's size per channel (records between the channel's
first and last position), the number of segments (``seg/`` keys) and the object store's object
count, read from the backends themselves. At the end it checks count(*), every row (primary key,
``val`` and vector, with a checksum) and a few searches on the exact FLAT index against the
reference, prints a summary table and exits non-zero when a result differs or a series keeps
growing (``bounded``: the last third's floor and peak against the earlier ones).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

GROWTH = 1.25  # growth: the last third's floor and peak both pass the earlier ones by this factor, plus ...
SLACK = 4  # ... this many (records, segments, objects) or a tenth of the run's peak, whichever is larger
DIM = 16
NAME = "soak"
SHARDS = 2


# --- the reference -------------------------------------------------------------
@dataclass
class Reference:
    """What the collection must hold: per primary key whether it is alive, its vector and ``val``."""

    size: int
    dim: int
    alive: np.ndarray = field(init=False)
    vec: np.ndarray = field(init=False)
    val: np.ndarray = field(init=False)

    def __post_init__(self):
        self.alive = np.zeros(self.size, bool)
        self.vec = np.zeros((self.size, self.dim), np.float32)
        self.val = np.zeros(self.size, np.int64)

    def write(self, pks: np.ndarray, vec: np.ndarray, val: np.ndarray) -> None:
        self.alive[pks], self.vec[pks], self.val[pks] = True, vec, val

    def delete(self, pks: np.ndarray) -> None:
        self.alive[pks] = False

    def live_pks(self) -> np.ndarray:
        return np.flatnonzero(self.alive)

    def checksum(self) -> int:
        pks = self.live_pks()
        return checksum(pks, self.val[pks], self.vec[pks])


def checksum(pks: np.ndarray, val: np.ndarray, vec: np.ndarray) -> int:
    """crc32 over the rows in primary key order (pk, val, vector bytes)."""
    order = np.argsort(pks, kind="stable")
    crc = zlib.crc32(np.ascontiguousarray(pks[order], np.int64).tobytes())
    crc = zlib.crc32(np.ascontiguousarray(val[order], np.int64).tobytes(), crc)
    return zlib.crc32(np.ascontiguousarray(vec[order], np.float32).tobytes(), crc)


# --- the deployments -----------------------------------------------------------
class Standalone:
    """A standalone server in this process (its backends are read directly to observe them)."""

    def __init__(self, workdir: str, storage: str, tuning: dict):
        from vecdb.config import Settings
        from vecdb.standalone import Standalone as Server

        settings = Settings()
        settings.storage.data_dir = os.path.join(workdir, "data")
        settings.storage.wal_segment_bytes = 1 << 20  # the WAL truncates whole files: small ones show it
        settings.http.port = 0
        settings.proxy.port = _free_port()
        self.backend_servers: list = []
        if storage == "remote":
            for key, value in _start_backends(workdir, self.backend_servers).items():
                setattr(settings.storage, key, value)
        _tune(settings, tuning)
        self.server = Server(settings).start()
        self.uri = f"http://127.0.0.1:{self.server.port}"
        self.log, self.meta, self.objects = self.server.wal, self.server.meta, self.server.objects
        self.name = f"standalone ({storage} backends)"

    def stop(self) -> None:
        self.server.stop()
        for b in reversed(self.backend_servers):
            b.stop()


class Cluster:
    """coord, two query nodes, a data node and two proxies, each ``python -m vecdb <role>``, on NATS,
    etcd and S3 started here; writes go through one proxy, reads alternate between both."""

    def __init__(self, workdir: str, tuning: dict):
        import subprocess

        from vecdb.config import Settings
        from vecdb.storage.backends import open_backends

        self.workdir, self.procs = workdir, []
        self.backend_servers: list = []
        storage = _start_backends(workdir, self.backend_servers)
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        env.update({f"VECDB_STORAGE__{k.upper()}": str(v) for k, v in storage.items()})
        env.update({f"VECDB_{section.upper()}__{k.upper()}": str(v) for section, kv in tuning.items()
                    for k, v in kv.items() if _has_setting(section, k)})
        env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
        if _has_setting("security", "cluster_secret"):  # internal RPC authenticated, as deployed
            env["VECDB_SECURITY__CLUSTER_SECRET"] = os.urandom(16).hex()
        self.ports = [_free_port(), _free_port()]
        roles = [("coord", ["coord", "--port", "0"]), ("querynode0", ["querynode", "--port", "0"]),
                 ("querynode1", ["querynode", "--port", "0"]), ("datanode0", ["datanode", "--port", "0"])]
        roles += [(f"proxy{i}", ["proxy", "--port", str(p)]) for i, p in enumerate(self.ports)]
        try:
            for name, argv in roles:
                log_path = os.path.join(workdir, f"{name}.log")
                with open(log_path, "w") as out:
                    proc = subprocess.Popen([sys.executable, "-m", "vecdb", "--log-level", "WARNING", *argv,
                                             "--data-dir", os.path.join(workdir, name)],
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=_REPO)
                self.procs.append((name, proc, log_path))
                if name == "coord":
                    self._wait_ready(["coord"])
            self._wait_ready([n for n, _, _ in self.procs])
        except BaseException:
            self.stop()
            raise
        settings = Settings()
        settings.storage.data_dir = os.path.join(workdir, "observer")
        for key, value in storage.items():
            setattr(settings.storage, key, value)
        self.backends = open_backends(settings.storage)
        self.log, self.meta, self.objects = self.backends.log, self.backends.meta, self.backends.objects
        self.uri = f"http://127.0.0.1:{self.ports[0]}"
        self.uris = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.name = "cluster (coord, 2 query nodes, a data node, 2 proxies)"

    def _wait_ready(self, names: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for name, proc, log_path in self.procs:
            if name not in names:
                continue
            while True:
                with open(log_path) as f:
                    text = f.read()
                if " ready on " in text:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{text[-3000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        if getattr(self, "backends", None) is not None:
            self.backends.close()
        for group in ("proxy", "querynode", "datanode", "coord"):
            procs = [p for n, p, _ in self.procs if n.startswith(group)]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except Exception:  # noqa: BLE001
                    p.kill()
                    p.wait(5)
        for b in reversed(self.backend_servers):
            b.stop()


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    from vecdb.storage.servers import free_port

    return free_port()


def _start_backends(workdir: str, started: list) -> dict:
    """NATS, etcd and an S3 server (moto) on loopback; the storage settings that name them."""
    from vecdb.storage import servers

    for kind in ("nats", "etcd", "s3"):
        started.append(getattr(servers, f"start_{kind}")(os.path.join(workdir, kind)))
    nats, etcd, s3 = (b.url for b in started)
    return {"log": nats, "meta": "etcd://" + etcd.split("://", 1)[1], "objects": "s3://vecdb-soak",
            "namespace": "soak", "s3_endpoint": s3, "s3_access_key": "test", "s3_secret_key": "test"}


def _has_setting(section: str, key: str) -> bool:
    from vecdb.config import Settings

    return hasattr(getattr(Settings(), section, None), key)


def _tune(settings, tuning: dict) -> None:
    """Apply ``tuning`` (section -> key -> value) where this version of vecdb has the setting."""
    for section, kv in tuning.items():
        for key, value in kv.items():
            if _has_setting(section, key):
                setattr(getattr(settings, section), key, value)


def tuning(args) -> dict:
    """Compaction checks and garbage collection sped up to fit a run of minutes."""
    return {"compaction": {"enabled": not args.no_compaction, "interval": 2.0, "gc_grace": args.grace},
            "gc": {"interval": 2.0, "grace": args.grace}}


# --- observation ---------------------------------------------------------------
def log_span(wal, channel: str) -> int:
    """Records kept between the channel's first and last position."""
    last = wal.last_position(channel)
    if last == 0:
        return 0
    info = getattr(wal, "_info", None)
    if info is not None:  # JetStream: the stream's state, without reading a record
        state = wal._run(info(wal._stream(channel)), "stream info")
        return 0 if state is None else int(state["state"].get("messages", 0))
    records = wal.read(channel, 1, last)
    first = next(iter(records), None)
    getattr(records, "close", lambda: None)()
    return 0 if first is None else last - first[0] + 1


def observe(dep) -> dict:
    channels = dep.log.channels()
    return {"log": {ch: log_span(dep.log, ch) for ch in channels},
            "segments": len(dep.meta.scan("seg/")),
            "objects": len(dep.objects.list(""))}


def bounded(series: list[int]) -> bool:
    """Whether a series stopped growing: not when both its floor (the last third's lowest value
    against the middle third's: what is left once truncation, compaction and collection caught up)
    and its peak (the last third's highest against the highest before it) rose by more than
    ``GROWTH`` times, plus the larger of ``SLACK`` and a tenth of the run's peak. A series that grows
    in proportion to the work done doubles its floor and raises its peak by half; a bounded one
    moves one of them at most, by where an observation falls between two collections and by the
    write rate (garbage waits a fixed time, so the objects awaiting it follow the rate). Fewer than
    6 observations cannot tell: not bounded."""
    third = len(series) // 3
    if third < 2:
        return False
    slack = max(SLACK, 0.1 * max(series))
    last = series[2 * third:]
    floor_rose = min(last) > GROWTH * min(series[third:2 * third]) + slack
    peak_rose = max(last) > GROWTH * max(series[:2 * third]) + slack
    return not (floor_rose and peak_rose)


# --- the run -------------------------------------------------------------------
def _rows(pks: np.ndarray, vec: np.ndarray, val: np.ndarray) -> list[dict]:
    return [{"id": p, "vec": v, "val": x} for p, v, x in zip(pks.tolist(), vec, val.tolist())]


def _create(client) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("val", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_collection(NAME, schema=schema, num_shards=SHARDS, consistency_level="Strong")
    client.create_index(NAME, idx, sync=False)
    client.load_collection(NAME)


def _compact(client, state: dict) -> None:
    if state["unsupported"]:
        return
    quiet = logging.getLogger("pymilvus")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # pymilvus logs a traceback per failed call
    try:
        state["jobs"].append(client.compact(NAME))
    except Exception as e:  # noqa: BLE001 (a server without ManualCompaction: said once, the run goes on)
        detail = e.details() if callable(getattr(e, "details", None)) else getattr(e, "message", str(e))
        print(f"  client.compact failed: {str(detail)[:160]} (no more compaction requests)")
        state["unsupported"] = True
    finally:
        quiet.setLevel(level)


def _read_all(client, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row (id, val, vec), by primary key ranges that stay under the query window."""
    pks, vals, vecs = [], [], []
    step = 10_000
    for lo in range(0, size, step):
        rows = client.query(NAME, filter=f"id >= {lo} and id < {lo + step}", output_fields=["id", "val", "vec"],
                            limit=16_384)
        pks.append(np.array([r["id"] for r in rows], np.int64))
        vals.append(np.array([r["val"] for r in rows], np.int64))
        vecs.append(np.array([r["vec"] for r in rows], np.float32).reshape(-1, DIM))
    return np.concatenate(pks), np.concatenate(vals), np.concatenate(vecs)


def verify(client, ref: Reference, rng: np.random.Generator, searches: int = 5, k: int = 10) -> dict:
    """count(*), every row and a few exact searches against the reference: what differs."""
    out: dict = {"problems": []}
    live = ref.live_pks()
    n = client.query(NAME, output_fields=["count(*)"])[0]["count(*)"]
    out["count"], out["expected_count"] = n, len(live)
    if n != len(live):
        out["problems"].append(f"count(*) {n} != {len(live)}")
    pks, vals, vecs = _read_all(client, ref.size)
    out["checksum"], out["expected_checksum"] = checksum(pks, vals, vecs), ref.checksum()
    if len(pks) != len(np.unique(pks)):
        out["problems"].append(f"{len(pks) - len(np.unique(pks))} primary keys returned twice")
    if not np.array_equal(np.sort(pks), live):
        missing, extra = np.setdiff1d(live, pks), np.setdiff1d(pks, live)
        out["problems"].append(f"rows differ: {len(missing)} missing (e.g. {missing[:5].tolist()}), "
                               f"{len(extra)} not expected (e.g. {extra[:5].tolist()})")
    elif out["checksum"] != out["expected_checksum"]:
        order = np.argsort(pks)
        bad = np.flatnonzero((vals[order] != ref.val[live]) | (vecs[order] != ref.vec[live]).any(axis=1))
        out["problems"].append(f"{len(bad)} rows with another val or vector (e.g. pk {live[bad[:5]].tolist()})")
    queries = rng.standard_normal((searches, DIM)).astype(np.float32)
    hits = client.search(NAME, queries.tolist(), limit=k, search_params={"metric_type": "L2"})
    data = ref.vec[live].astype(np.float64)
    q = queries.astype(np.float64)
    dist = (q * q).sum(1)[:, None] + (data * data).sum(1)[None, :] - 2 * q @ data.T
    want = live[np.argsort(dist, axis=1, kind="stable")[:, :k]]
    wrong = sum(1 for i in range(searches) if [h["id"] for h in hits[i]] != want[i].tolist())
    out["searches"], out["searches_wrong"] = searches, wrong
    if wrong:
        out["problems"].append(f"{wrong} of {searches} searches differ from the exact top-{k}")
    out["row_count"] = client.get_collection_stats(NAME)["row_count"]
    return out


def run(args) -> dict:
    from pymilvus import MilvusClient

    rng = np.random.default_rng(args.seed)
    workdir = tempfile.mkdtemp(prefix="vecdb-soak-")
    dep = Cluster(workdir, tuning(args)) if args.cluster else Standalone(workdir, args.storage, tuning(args))
    print(f"soak: {dep.name}, {args.rows:,} rows in batches of {args.batch:,}, live set {args.live:,}, seed "
          f"{args.seed}, flush every {args.flush_every} rounds, compact every {args.compact_every} rounds")
    clients = [MilvusClient(uri=u) for u in getattr(dep, "uris", [dep.uri])]
    client = clients[0]
    try:
        _create(client)
        ref = Reference(args.rows, DIM)
        samples: list[dict] = []
        compaction = {"jobs": [], "unsupported": False}
        ops = {"inserted": 0, "upserted": 0, "deleted": 0, "flushes": 0}
        rounds = args.rows // args.batch
        start = time.monotonic()
        every = max(1, rounds // args.samples)

        def sample(r: int) -> None:
            s = observe(dep)
            s["t"], s["round"] = time.monotonic() - start, r
            samples.append(s)
            logs = " ".join(f"{ch.rsplit('_', 1)[-1]}:{n}" for ch, n in s["log"].items())
            print(f"  t={s['t']:6.1f}s round {r:4d}/{rounds} live {int(ref.alive.sum()):6,}  log records [{logs}]  "
                  f"segments {s['segments']:4d}  objects {s['objects']:5d}", flush=True)

        sample(0)
        for r in range(1, rounds + 1):
            new = np.arange((r - 1) * args.batch, r * args.batch)
            vec = rng.standard_normal((len(new), DIM)).astype(np.float32)
            val = rng.integers(0, 1 << 40, len(new))
            client.insert(NAME, _rows(new, vec, val))
            ref.write(new, vec, val)
            ops["inserted"] += len(new)
            live = ref.live_pks()
            up = rng.choice(live, min(len(live), args.batch // 4), replace=False)
            vec, val = rng.standard_normal((len(up), DIM)).astype(np.float32), rng.integers(0, 1 << 40, len(up))
            client.upsert(NAME, _rows(up, vec, val))
            ref.write(up, vec, val)
            ops["upserted"] += len(up)
            excess = len(live) - args.live
            if excess > 0:
                gone = rng.choice(live, excess, replace=False)
                client.delete(NAME, ids=gone.tolist())
                ref.delete(gone)
                ops["deleted"] += len(gone)
            if r % args.flush_every == 0:
                client.flush(NAME)
                ops["flushes"] += 1
            if not args.no_compaction and r % args.compact_every == 0:
                _compact(client, compaction)
            if r % every == 0 or r == rounds:
                sample(r)
        elapsed = time.monotonic() - start
        time.sleep(args.settle)  # idle: truncation, compaction and collection catch up
        idle = observe(dep)
        reader = clients[-1]  # on the cluster, the other proxy
        result = verify(reader, ref, rng)
        series = {"log records (largest channel)": [max(s["log"].values(), default=0) for s in samples],
                  "segments": [s["segments"] for s in samples], "objects": [s["objects"] for s in samples]}
        growth = {name: bounded(v) for name, v in series.items()}
        settled = {"log records (largest channel)": max(idle["log"].values(), default=0),
                   "segments": idle["segments"], "objects": idle["objects"]}
        summary = {"deployment": dep.name, "rows": args.rows, "seed": args.seed, "rounds": rounds,
                   "seconds": round(elapsed, 1), "ops": ops, "compactions_requested": len(compaction["jobs"]),
                   "compaction_unsupported": compaction["unsupported"], "series": series, "bounded": growth,
                   "settle_seconds": args.settle, "settled": settled,
                   "verify": result}
        summary["ok"] = not result["problems"] and (args.no_bound_check or all(growth.values()))
        print_summary(summary)
        return summary
    finally:
        for c in clients:
            c.close()
        dep.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def print_summary(s: dict) -> None:
    ops, v = s["ops"], s["verify"]
    print(f"\nsoak summary: {s['deployment']}, seed {s['seed']}, {s['rounds']} rounds in {s['seconds']} s "
          f"({ops['inserted']:,} inserted, {ops['upserted']:,} upserted, {ops['deleted']:,} deleted, "
          f"{ops['flushes']} flushes, {s['compactions_requested']} compactions requested"
          f"{', ManualCompaction unsupported' if s['compaction_unsupported'] else ''})")
    print(f"| series | 1st third min-max | 2nd third min-max | last third min-max | end | {s['settle_seconds']:g} s "
          f"idle later | bounded |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, values in s["series"].items():
        t = max(len(values) // 3, 1)
        thirds = [values[:t], values[t:2 * t] or values[-1:], values[2 * t:] or values[-1:]]
        spans = " | ".join(f"{min(v)}-{max(v)}" for v in thirds)
        print(f"| {name} | {spans} | {values[-1]} | {s['settled'][name]} | "
              f"{'yes' if s['bounded'][name] else 'NO: keeps growing'} |")
    print(f"| count(*) | | | | | {v['count']:,} (reference {v['expected_count']:,}) | "
          f"{'equal' if v['count'] == v['expected_count'] else 'DIFFERS'} |")
    print(f"| all rows, crc32 of (pk, val, vector) | | | | | {v['checksum']:#010x} (reference "
          f"{v['expected_checksum']:#010x}) | {'equal' if v['checksum'] == v['expected_checksum'] else 'DIFFERS'} |")
    print(f"| exact FLAT searches, top-10 | | | | | {v['searches'] - v['searches_wrong']} of {v['searches']} equal | "
          f"{'equal' if not v['searches_wrong'] else 'DIFFERS'} |")
    print(f"| get_collection_stats row_count | | | | | {v['row_count']:,} | "
          "(Milvus's: deleted rows until compaction) |")
    for p in v["problems"]:
        print(f"PROBLEM: {p}")
    print("soak: OK" if s["ok"] else "soak: FAILED")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows inserted in all (fixes the run's length)")
    p.add_argument("--batch", type=int, default=2_000, help="rows inserted per round")
    p.add_argument("--live", type=int, default=20_000, help="live rows the deletes keep the collection at")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--flush-every", type=int, default=10, help="rounds between flushes")
    p.add_argument("--compact-every", type=int, default=30, help="rounds between client.compact calls")
    p.add_argument("--no-compaction", action="store_true", help="neither automatic compaction nor client.compact")
    p.add_argument("--grace", type=float, default=3.0, help="seconds before compacted-away files are collected")
    p.add_argument("--samples", type=int, default=30, help="observations, at evenly spaced rounds")
    p.add_argument("--storage", choices=["embedded", "remote"], default="embedded", help="standalone's backends")
    p.add_argument("--cluster", action="store_true", help="a cluster of processes instead of standalone")
    p.add_argument("--no-bound-check", action="store_true", help="only the results decide (smoke runs)")
    p.add_argument("--settle", type=float, default=10.0, help="idle seconds before the last observation")
    p.add_argument("--json", help="write the summary there")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Tables, ratios, target checks, JSON, docs/benchmarks.md and the QPS/recall plot.

The input is the results document built by ``bench.run``::

    {"meta": {...}, "results": [{"system", "index", "build", "runs", "count",
                                 "peak_rss_mb", "error"}, ...]}

where each run is ``{"value": knob, "nq1_t8": load, "nq1_t1": load, "nq100": load}``
(the last two only at the headline knob value) and a load is the dict from
``client.search_load``. Targets compare vecdb with Milvus 2.3.5 and the bare
servicer on the headline index and knob, and, where the run had it, the vecdb
cluster (``vecdb-cluster``) with vecdb standalone; a target whose inputs are
missing is reported as SKIP, never as PASS.
"""

from __future__ import annotations

import os
import re

SYSTEM_ORDER = ["faiss", "bare", "milvus", "vecdb", "vecdb-cluster"]
SYSTEM_LABEL = {"faiss": "FAISS in-process", "bare": "bare servicer (FAISS)",
                "milvus": "Milvus 2.3.5", "vecdb": "vecdb", "vecdb-cluster": "vecdb cluster"}
CLUSTER_RATIO = 0.7  # cluster >= 0.7x standalone's QPS and insert rate (issue 10, on 2 cores)
CLUSTER_COUNT_MS = 20.0
NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"


def _median_tree(items: list):
    """Median of numbers leaf by leaf over same-shaped dicts/lists; other leaves from the first."""
    first = items[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        vals = sorted(x for x in items if isinstance(x, (int, float)))
        mid = len(vals) // 2
        if len(vals) % 2 or all(isinstance(x, int) for x in vals):
            return vals[mid] if len(vals) % 2 else vals[mid - 1]  # ints (knobs, counts) stay ints
        return (vals[mid - 1] + vals[mid]) / 2
    if isinstance(first, dict):
        return {k: _median_tree([it[k] for it in items if isinstance(it, dict) and k in it]) for k in first}
    if isinstance(first, list) and all(isinstance(it, list) and len(it) == len(first) for it in items):
        return [_median_tree([it[i] for it in items]) for i in range(len(first))]
    return first


def median_results(per_rep: list[list[dict]]) -> list[dict]:
    """Combine repeated runs: per (system, index), the median of every number over
    the repeats that did not fail; ``repeats`` says how many counted."""
    if len(per_rep) == 1:
        return per_rep[0]
    out = []
    for first in per_rep[0]:
        key = (first["system"], first["index"])
        same = [r for rep in per_rep for r in rep if (r["system"], r["index"]) == key]
        ok = [r for r in same if not r.get("error")]
        if not ok:
            out.append(same[-1])
            continue
        merged = _median_tree(ok)
        merged["repeats"] = len(ok)
        merged["errors"] = [r["error"] for r in same if r.get("error")]
        out.append(merged)
    return out


def merge_docs(docs: list[dict]) -> dict:
    """Several results documents as one: meta from the first, index lists and
    specs united, results concatenated (a later document's (system, index)
    result replaces an earlier one's), each document's run settings noted."""
    if len(docs) == 1:
        return docs[0]
    meta = dict(docs[0]["meta"])
    meta["indexes"] = list(meta["indexes"])
    meta["index_specs"] = dict(meta["index_specs"])
    meta["systems"] = list(meta.get("systems") or [])
    by_key: dict = {}
    for d in docs:
        meta["systems"] += [s for s in d["meta"].get("systems") or [] if s not in meta["systems"]]
        if "querynodes" in d["meta"]:
            meta.setdefault("querynodes", d["meta"]["querynodes"])
        for name in d["meta"]["indexes"]:
            if name not in meta["indexes"]:
                meta["indexes"].append(name)
            meta["index_specs"].setdefault(name, d["meta"]["index_specs"][name])
        for r in d["results"]:
            by_key[(r["system"], r["index"])] = r
    meta["merged_runs"] = [{"indexes": d["meta"]["indexes"], "started": d["meta"].get("started"),
                            "repeat": d["meta"].get("repeat", 1), "duration": d["meta"].get("duration")}
                           for d in docs]
    return {"meta": meta, "results": list(by_key.values())}


def _find(results: list, system: str, index: str) -> dict | None:
    for r in results:
        if r["system"] == system and r["index"] == index and not r.get("error"):
            return r
    return None


def headline_run(res: dict | None, headline) -> dict | None:
    if res is None:
        return None
    for run in res.get("runs", []):
        if run["value"] == headline:
            return run
    return None


def metrics(res: dict | None, headline, big_nq: int = 100) -> dict:
    """The headline numbers of one system/index result (None where not measured)."""
    run = headline_run(res, headline) or {}
    t1, t8, big = run.get("nq1_t1"), run.get("nq1_t8"), run.get(f"nq{big_nq}")
    build = (res or {}).get("build") or {}
    count = (res or {}).get("count") or {}
    return {
        "build_s": build.get("build_s"), "insert_rows_s": build.get("insert_rows_s"),
        "recall": (t1 or t8 or {}).get("recall"),
        "qps1": (t1 or {}).get("qps"), "qps8": (t8 or {}).get("qps"), "qps_big": (big or {}).get("qps"),
        "p50_ms": (t1 or {}).get("p50_ms"), "p99_ms": (t1 or {}).get("p99_ms"),
        "count_ms": count.get("p50_ms"), "rss_mb": (res or {}).get("peak_rss_mb"),
        "cpu8": (t8 or {}).get("server_cpu_ms_per_query"), "cpu_big": (big or {}).get("server_cpu_ms_per_query"),
        "client_cpu8": (t8 or {}).get("client_cpu_ms_per_query"),
    }


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def targets(results: list, index: str, headline, big_nq: int = 100) -> list[dict]:
    """The PASS/FAIL list for one index type (the headline one is HNSW)."""
    v = metrics(_find(results, "vecdb", index), headline, big_nq)
    m = metrics(_find(results, "milvus", index), headline, big_nq)
    b = metrics(_find(results, "bare", index), headline, big_nq)
    f = metrics(_find(results, "faiss", index), headline, big_nq)
    checks = [
        ("QPS nq=1 8 threads >= 1.3x Milvus", _ratio(v["qps8"], m["qps8"]), 1.3, ">="),
        ("QPS nq=1 8 threads >= 1.5x Milvus (issue 16)", _ratio(v["qps8"], m["qps8"]), 1.5, ">="),
        (f"nq={big_nq} queries/s >= 1.2x Milvus (issue 16)", _ratio(v["qps_big"], m["qps_big"]), 1.2, ">="),
        ("recall@10 >= Milvus's - 0.01 (equal recall)",
         None if v["recall"] is None or m["recall"] is None else v["recall"] - m["recall"], -0.01, ">="),
        ("QPS nq=1 8 threads >= 0.8x bare", _ratio(v["qps8"], b["qps8"]), 0.8, ">="),
        (f"nq={big_nq} queries/s >= 1.0x Milvus", _ratio(v["qps_big"], m["qps_big"]), 1.0, ">="),
        (f"nq={big_nq} queries/s >= 0.8x bare", _ratio(v["qps_big"], b["qps_big"]), 0.8, ">="),
        ("insert rows/s >= 1.0x Milvus", _ratio(v["insert_rows_s"], m["insert_rows_s"]), 1.0, ">="),
        ("Strong count(*) < 5 ms", v["count_ms"], 5.0, "<"),
        ("peak RSS <= 1.5x FAISS in-process", _ratio(v["rss_mb"], f["rss_mb"]), 1.5, "<="),
    ]
    out = []
    for name, value, limit, op in checks:
        if value is None:
            verdict = "SKIP"
        else:
            ok = value >= limit if op == ">=" else (value < limit if op == "<" else value <= limit)
            verdict = "PASS" if ok else "FAIL"
        out.append({"target": name, "value": value, "limit": limit, "op": op, "verdict": verdict})
    if any(r["system"] == "vecdb-cluster" and r["index"] == index for r in results):
        out += cluster_targets(results, index, headline, big_nq)
    return out


def cluster_targets(results: list, index: str, headline, big_nq: int = 100) -> list[dict]:
    """The cluster (1 proxy, N query nodes) against vecdb standalone on the same run."""
    c = metrics(_find(results, "vecdb-cluster", index), headline, big_nq)
    v = metrics(_find(results, "vecdb", index), headline, big_nq)
    r = CLUSTER_RATIO
    checks = [
        (f"cluster QPS nq=1 8 threads >= {r}x standalone", _ratio(c["qps8"], v["qps8"]), r, ">="),
        (f"cluster nq={big_nq} queries/s >= {r}x standalone", _ratio(c["qps_big"], v["qps_big"]), r, ">="),
        (f"cluster insert rows/s >= {r}x standalone", _ratio(c["insert_rows_s"], v["insert_rows_s"]), r, ">="),
        (f"cluster Strong count(*) < {CLUSTER_COUNT_MS:g} ms", c["count_ms"], CLUSTER_COUNT_MS, "<"),
    ]
    out = []
    for name, value, limit, op in checks:
        verdict = "SKIP" if value is None else (
            "PASS" if (value >= limit if op == ">=" else value < limit) else "FAIL")
        out.append({"target": name, "value": value, "limit": limit, "op": op, "verdict": verdict})
    return out


def cluster_ratios(results: list, index: str, headline, big_nq: int = 100) -> dict | None:
    """cluster / standalone, or None when the run had no cluster result."""
    c = _find(results, "vecdb-cluster", index)
    if c is None:
        return None
    cm, v = metrics(c, headline, big_nq), metrics(_find(results, "vecdb", index), headline, big_nq)
    return {"qps8": _ratio(cm["qps8"], v["qps8"]), "qps_big": _ratio(cm["qps_big"], v["qps_big"]),
            "insert_rows_s": _ratio(cm["insert_rows_s"], v["insert_rows_s"])}


def cluster_breakdown(results: list, index: str, headline, big_nq: int = 100) -> list[str]:
    """Lines: the cluster's CPU per query and peak RSS per process (vecdb roles and backends)."""
    c = _find(results, "vecdb-cluster", index)
    run = headline_run(c, headline) or {}
    lines = []
    for key, what in (("nq1_t8", "nq=1, 8 threads"), (f"nq{big_nq}", f"nq={big_nq}")):
        by = (run.get(key) or {}).get("cpu_ms_per_query_by_process")
        if by:
            lines.append(f"CPU ms per query by process at {what}: "
                         + ", ".join(f"{k} {v:.3f}" for k, v in by.items()))
    rss = (c or {}).get("peak_rss_by_process_mb")
    if rss:
        lines.append("peak RSS MiB by process: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items() if v is not None))
    return lines


def ratios(results: list, index: str, headline, big_nq: int = 100) -> dict:
    v = metrics(_find(results, "vecdb", index), headline, big_nq)
    out = {}
    for other in ("milvus", "bare"):
        o = metrics(_find(results, other, index), headline, big_nq)
        out[other] = {"qps8": _ratio(v["qps8"], o["qps8"]), "qps_big": _ratio(v["qps_big"], o["qps_big"]),
                      "insert_rows_s": _ratio(v["insert_rows_s"], o["insert_rows_s"])}
    return out


def _fmt(x, digits: int = 0, suffix: str = "") -> str:
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}{suffix}"
    return f"{x:,.{digits}f}{suffix}"


def main_table(results: list, index: str, headline, big_nq: int = 100) -> list[list[str]]:
    header = ["system", "build s", "insert rows/s", "recall@10", "QPS nq=1 1t", "QPS nq=1 8t",
              f"nq={big_nq} q/s", "p50 ms", "p99 ms", "Strong count(*) ms", "peak RSS MiB",
              "server CPU ms/q nq=1", f"server CPU ms/q nq={big_nq}"]
    rows = [header]
    for system in SYSTEM_ORDER:
        res = next((r for r in results if r["system"] == system and r["index"] == index), None)
        if res is None:
            continue
        if res.get("error"):
            rows.append([SYSTEM_LABEL[system], "failed (see below)"] + ["-"] * (len(header) - 2))
            continue
        m = metrics(res, headline, big_nq)
        rows.append([SYSTEM_LABEL[system], _fmt(m["build_s"], 1), _fmt(m["insert_rows_s"]),
                     _fmt(m["recall"], 3), _fmt(m["qps1"]), _fmt(m["qps8"]), _fmt(m["qps_big"]),
                     _fmt(m["p50_ms"], 2), _fmt(m["p99_ms"], 2), _fmt(m["count_ms"], 1), _fmt(m["rss_mb"]),
                     _fmt(m["cpu8"], 3), _fmt(m["cpu_big"], 3)])
    return rows


def sweep_table(results: list, index: str) -> list[list[str]]:
    rows = [["system", "knob", "recall@10", "QPS nq=1 8t"]]
    for system in SYSTEM_ORDER:
        res = _find(results, system, index)
        for run in (res or {}).get("runs", []):
            t8 = run.get("nq1_t8") or {}
            rows.append([SYSTEM_LABEL[system], str(run["value"]), _fmt(t8.get("recall"), 3), _fmt(t8.get("qps"))])
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def console(doc: dict) -> str:
    meta, results = doc["meta"], doc["results"]
    big = meta["big_nq"]
    out = []
    for index in meta["indexes"]:
        spec = meta["index_specs"][index]
        knob = f"{spec['search_key']}={spec['headline']}" if spec["search_key"] else "exact"
        out.append(f"\n== {index} {spec['build_params']} at {knob}; {meta['n']:,} x {meta['dim']} "
                   f"{meta['dataset']} ({meta['metric']}), {meta['nq']} queries ==")
        out.append(text_table(main_table(results, index, spec["headline"], big)))
        if spec["search_key"]:
            out.append("\nsweep (" + spec["search_key"] + "):")
            out.append(text_table(sweep_table(results, index)))
        cl = [f"{SYSTEM_LABEL[r['system']]} {metrics(r, spec['headline'], big)['client_cpu8']:.3f}"
              for r in results if r["index"] == index and not r.get("error")
              and metrics(r, spec["headline"], big)["client_cpu8"] is not None]
        if cl:
            out.append("\npymilvus client CPU ms/query at nq=1, 8 threads: " + ", ".join(cl))
        rat = ratios(results, index, spec["headline"], big)
        out.append("\nratios vecdb/Milvus: " + _ratios_line(rat["milvus"], big))
        out.append("ratios vecdb/bare:   " + _ratios_line(rat["bare"], big))
        crat = cluster_ratios(results, index, spec["headline"], big)
        if crat:
            out.append("ratios cluster/standalone: " + _ratios_line(crat, big))
            out += ["cluster " + line for line in cluster_breakdown(results, index, spec["headline"], big)]
        out.append("targets:")
        out += [f"  {t['verdict']:4}  {t['target']}  ({_target_value(t)})"
                for t in targets(results, index, spec["headline"], big)]
    for r in results:
        if r.get("error"):
            out.append(f"\n{r['system']} {r['index']} failed: {r['error']}")
        for err in r.get("errors") or []:
            out.append(f"\n{r['system']} {r['index']} failed in one repeat: {err}")
    return "\n".join(out)


def _ratios_line(r: dict, big: int) -> str:
    return (f"QPS nq=1 8t {_fmt(r['qps8'], 2, 'x')}, nq={big} q/s {_fmt(r['qps_big'], 2, 'x')}, "
            f"insert rows/s {_fmt(r['insert_rows_s'], 2, 'x')}")


def _target_value(t: dict) -> str:
    if t["value"] is None:
        return "not measured"
    if "recall" in t["target"]:
        return f"{t['value']:+.3f} {t['op']} {t['limit']:+.3f}"
    unit = " ms" if "ms" in t["target"] else "x"
    return f"{t['value']:.2f}{unit} {t['op']} {t['limit']}{unit.strip() if unit == 'x' else ' ms'}"


def plot(doc: dict, index: str, path: str) -> bool:
    """QPS at nq=1 8 threads vs recall@10, one line per system; False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = doc["meta"]["index_specs"][index]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    drawn = False
    for system in SYSTEM_ORDER:
        res = _find(doc["results"], system, index)
        pts = [(run["nq1_t8"]["recall"], run["nq1_t8"]["qps"], run["value"])
               for run in (res or {}).get("runs", []) if run.get("nq1_t8")]
        if not pts:
            continue
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=SYSTEM_LABEL[system])
        if not drawn:  # the systems share each knob's recall: label the first line only
            for x, y, v in pts:
                if v is not None:
                    ax.annotate(f"{spec['search_key']}={v}", (x, y), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    meta = doc["meta"]
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries/s, nq=1, 8 client threads (log)")
    ax.set_title(f"{index} {spec['build_params']}, {meta['n']:,} {meta['dataset']}, "
                 f"{meta['cpus']} cores", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_name(index: str) -> str:
    return "qps_recall.png" if index == "HNSW" else f"qps_recall_{index.lower().replace('/', '_')}.png"


def markdown(doc: dict, plots: dict, old_text: str = "") -> str:
    """docs/benchmarks.md; a hand-written block between the notes markers survives."""
    meta, results = doc["meta"], doc["results"]
    big = meta["big_nq"]
    notes = ""
    m = re.search(re.escape(NOTES_START) + r"(.*?)" + re.escape(NOTES_END), old_text, re.S)
    if m:
        notes = m.group(1).strip("\n")
    lines = [
        "# Benchmarks: vecdb vs Milvus 2.3.5 vs a bare servicer vs FAISS",
        "",
        f"Generated by `python -m bench.run` on {meta['date']} (harness mode: {meta['mode']}). "
        "Re-run it to refresh this page; the block between the notes markers is kept.",
        "",
        "## Setup",
        "",
        f"- Machine: {meta['cpus']} cores ({meta['cpu_model']}), {meta['mem_gib']:.0f} GiB RAM, "
        f"{meta['os']}; client and server share the cores.",
        f"- Software: Python {meta['python']}, pymilvus {meta['pymilvus']}, faiss {meta['faiss']}, "
        f"numpy {meta['numpy']}, grpcio {meta['grpcio']}, Milvus {meta['milvus']} (PyPI `milvus`, "
        "standalone: embedded etcd, local storage, rocksmq).",
        f"- Data: {meta['n']:,} x {meta['dim']} {meta['dataset']} base vectors, {meta['nq']:,} held-out "
        f"queries (seeded split), metric {meta['metric']} (L2 squared; COSINE over the normalised vectors), "
        "exact top-10 ground truth by brute force for each metric.",
        "- Systems: **FAISS in-process** (same index, no server; its own process); **bare servicer** "
        "(`bench/bare_server.py`: FAISS inline in the handlers of a sync `grpc.server` with 4 threads on "
        "pymilvus's stubs, no storage: the transport ceiling); **Milvus 2.3.5** standalone; **vecdb** "
        "standalone (`python -m vecdb standalone`)"
        + ("; **vecdb cluster**: `vecdb coord`, " + str(meta.get("querynodes", 2)) + " `vecdb querynode` and one "
           "`vecdb proxy` (the client's endpoint), each a process, on NATS JetStream, etcd and moto's S3 server "
           "on loopback, finding each other through their sessions; its server CPU and peak RSS are sums over "
           "the vecdb processes (backends listed apart)" if "vecdb-cluster" in (meta.get("systems") or []) else "")
        + ". Servers run with `OMP_WAIT_POLICY=PASSIVE`.",
        "- Client: pymilvus `MilvusClient` only, every load in a fresh process of its own. "
        f"Insert: {meta['batch']:,}-row batches of row dicts (rows/s = rows / time inside `insert`). "
        "Build = insert + flush + create_index (pymilvus waits for index state Finished) + load (100%) "
        "+ wait until DescribeIndex counts every row as indexed.",
        "- Server CPU ms/q: user+system CPU of the server process (all threads, /proc/<pid>/stat) over a load "
        "divided by the queries it answered (warm-up included), at nq=1 with "
        f"{meta['threads']} threads and at nq={big}; FAISS in-process: its own process CPU. With client and "
        "server on the same 2 cores, QPS is bounded by client + server CPU together; this column is the "
        "server's share and is less sensitive to other load on the machine.",
        f"- Loads: closed loop, >= {meta['duration']:g} s and >= one pass over the queries after a "
        f"{meta['warmup']:g} s warm-up; nq=1 with 1 and {meta['threads']} threads sharing one client; "
        f"nq={big} with {meta['big_threads']} client threads (FAISS in-process: one caller, OpenMP inside). "
        "Latency p50/p99 per request at nq=1, 1 thread, measured in the client. recall@10 from the first "
        f"answer to each query. Strong count(*): median of {meta['count_reps']} calls. "
        "Consistency: the collection is created Bounded (pymilvus's default) and searches use the "
        "collection's level, as a user's do; count(*) asks for Strong. "
        "Peak RSS: VmHWM of the server process (FAISS: of the process that builds and searches).",
        (f"- Repeats: {meta.get('repeat', 1)} (interleaved; every number is the median over the repeats). "
         if "merged_runs" not in meta else
         "- Runs merged into this page: " + "; ".join(
             f"{'/'.join(m['indexes'])} started {m['started']}, {m['repeat']} repeat(s)"
             for m in meta["merged_runs"]) + " (with repeats, every number is the median over them). ") +
        "Runs vary by up to about ±20% between repetitions on this machine, more when other work shares "
        "the 2 cores: the 1-minute load average before/after each system is listed at the end.",
        "",
        "## Notes",
        "",
        NOTES_START,
        notes,
        NOTES_END,
        "",
    ]
    for index in meta["indexes"]:
        spec = meta["index_specs"][index]
        knob = f"{spec['search_key']}={spec['headline']}" if spec["search_key"] else "exact search"
        lines += [f"## {index} {spec['build_params']}, {knob}", "",
                  md_table(main_table(results, index, spec["headline"], big)), ""]
        cl = [f"{SYSTEM_LABEL[r['system']]} {metrics(r, spec['headline'], big)['client_cpu8']:.3f} ms"
              for r in results if r["index"] == index and not r.get("error")
              and metrics(r, spec["headline"], big)["client_cpu8"] is not None]
        if cl:
            lines += ["pymilvus client CPU per query at nq=1, 8 threads (the other share of the same 2 cores): "
                      + ", ".join(cl) + ".", ""]
        rat = ratios(results, index, spec["headline"], big)
        lines += ["Ratios (vecdb / other):", "",
                  md_table([["vs", "QPS nq=1 8t", f"nq={big} q/s", "insert rows/s"]] +
                           [[SYSTEM_LABEL[o], _fmt(r["qps8"], 2, "x"), _fmt(r["qps_big"], 2, "x"),
                             _fmt(r["insert_rows_s"], 2, "x")] for o, r in rat.items()]), ""]
        crat = cluster_ratios(results, index, spec["headline"], big)
        if crat:
            lines += ["Cluster / standalone (same run):", "",
                      md_table([["", "QPS nq=1 8t", f"nq={big} q/s", "insert rows/s"],
                                ["vecdb cluster / vecdb", _fmt(crat["qps8"], 2, "x"), _fmt(crat["qps_big"], 2, "x"),
                                 _fmt(crat["insert_rows_s"], 2, "x")]]), ""]
            lines += [f"- Cluster {line}" for line in cluster_breakdown(results, index, spec["headline"], big)]
            lines.append("")
        lines += ["Targets:", ""]
        lines += [f"- **{t['verdict']}** {t['target']} ({_target_value(t)})"
                  for t in targets(results, index, spec["headline"], big)]
        lines.append("")
        if spec["search_key"]:
            lines += [f"Sweep of {spec['search_key']} (QPS at nq=1, {meta['threads']} threads):", "",
                      md_table(sweep_table(results, index)), ""]
        if plots.get(index):
            lines += [f"![QPS vs recall, {index}]({plots[index]})", ""]
    errs = [(r, r["error"], "") for r in results if r.get("error")]
    errs += [(r, e, f" (one repeat; the numbers are from the other {r['repeats']})")
             for r in results for e in r.get("errors") or []]
    if errs:
        lines += ["## Failures", ""] + [f"- {r['system']} / {r['index']}: `{e}`{why}" for r, e, why in errs] + [""]
    for system, prof in (meta.get("profile") or {}).items():
        summ = prof.get("all")
        if not summ:
            continue
        lines += [f"## Profile: {SYSTEM_LABEL[system]} server under nq=1, {meta['threads']}-thread load", "",
                  (f"py-spy, {prof['seconds']:g} s at {prof['rate']} Hz during an extra load not counted above; "
                   f"{summ['samples']:,} busy samples over all threads (blocked waits left out, see "
                   "`bench/profile.py`; native FAISS and gRPC C-core time shows on the calling line). "
                   "Top frames by self time, then by inclusive time."), "",
                  md_table([["% self", "frame"]] +
                           [[f"{r['pct']:.1f}", f"`{r['frame']}`"] for r in summ["self"][:15]]), "",
                  md_table([["% incl.", "frame"]] +
                           [[f"{r['pct']:.1f}", f"`{r['frame']}`"] for r in summ["inclusive"][:15]]), ""]
        if summ.get("project"):
            lines += ["Deepest frame of project code on each busy stack (the project line running, or calling "
                      "the library code that was):", "",
                      md_table([["% busy", "frame"]] +
                               [[f"{r['pct']:.1f}", f"`{r['frame']}`"] for r in summ["project"][:15]]), ""]
    loads = [[SYSTEM_LABEL[r["system"]], r["index"], f"{r['loadavg'][0]:.2f} / {r['loadavg'][1]:.2f}"]
             for r in results if r.get("loadavg")]
    if loads:
        lines += ["## Machine load", "", "1-minute load average before / after each system's measurements "
                  "(the harness itself keeps up to ~2 busy; more means other work shared the cores).", "",
                  md_table([["system", "index", "load avg before / after"]] + loads), ""]
    return "\n".join(lines)

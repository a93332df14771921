"""Tables, ratios, target checks, JSON, docs/benchmarks.md and the QPS/recall plot.

The input is the results document built by ``bench.run``::

    {"meta": {...}, "results": [{"system", "index", "build", "runs", "count",
                                 "peak_rss_mb", "error"}, ...]}

where each run is ``{"value": knob, "nq1_t8": load, "nq1_t1": load, "nq100": load}``
(the last two only at the headline knob value) and a load is the dict from
``client.search_load``. Targets compare vecdb with Milvus 2.3.5 and the bare
servicer on the headline index and knob; a target whose inputs are missing
is reported as SKIP, never as PASS.
"""

from __future__ import annotations

import os
import re

SYSTEM_ORDER = ["faiss", "bare", "milvus", "vecdb"]
SYSTEM_LABEL = {"faiss": "FAISS in-process", "bare": "bare servicer (FAISS)",
                "milvus": "Milvus 2.3.5", "vecdb": "vecdb"}
NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"


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
    return out


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
              f"nq={big_nq} q/s", "p50 ms", "p99 ms", "Strong count(*) ms", "peak RSS MiB"]
    rows = [header]
    for system in SYSTEM_ORDER:
        res = next((r for r in results if r["system"] == system and r["index"] == index), None)
        if res is None:
            continue
        if res.get("error"):
            rows.append([SYSTEM_LABEL[system], f"error: {res['error'][:60]}"] + [""] * (len(header) - 2))
            continue
        m = metrics(res, headline, big_nq)
        rows.append([SYSTEM_LABEL[system], _fmt(m["build_s"], 1), _fmt(m["insert_rows_s"]),
                     _fmt(m["recall"], 3), _fmt(m["qps1"]), _fmt(m["qps8"]), _fmt(m["qps_big"]),
                     _fmt(m["p50_ms"], 2), _fmt(m["p99_ms"], 2), _fmt(m["count_ms"], 1), _fmt(m["rss_mb"])])
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
        rat = ratios(results, index, spec["headline"], big)
        out.append("\nratios vecdb/Milvus: " + _ratios_line(rat["milvus"], big))
        out.append("ratios vecdb/bare:   " + _ratios_line(rat["bare"], big))
        out.append("targets:")
        out += [f"  {t['verdict']:4}  {t['target']}  ({_target_value(t)})"
                for t in targets(results, index, spec["headline"], big)]
    for r in results:
        if r.get("error"):
            out.append(f"\n{r['system']} {r['index']} failed: {r['error']}")
    return "\n".join(out)


def _ratios_line(r: dict, big: int) -> str:
    return (f"QPS nq=1 8t {_fmt(r['qps8'], 2, 'x')}, nq={big} q/s {_fmt(r['qps_big'], 2, 'x')}, "
            f"insert rows/s {_fmt(r['insert_rows_s'], 2, 'x')}")


def _target_value(t: dict) -> str:
    if t["value"] is None:
        return "not measured"
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
    return "qps_recall.png" if index == "HNSW" else f"qps_recall_{index.lower()}.png"


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
        f"queries (seeded split), metric {meta['metric']} (squared), exact top-10 ground truth by brute force.",
        "- Systems: **FAISS in-process** (same index, no server; its own process); **bare servicer** "
        "(`bench/bare_server.py`: FAISS inline in the handlers of a sync `grpc.server` with 4 threads on "
        "pymilvus's stubs, no storage: the transport ceiling); **Milvus 2.3.5** standalone; **vecdb** "
        "standalone (`python -m vecdb standalone`). Servers run with `OMP_WAIT_POLICY=PASSIVE`.",
        "- Client: pymilvus `MilvusClient` only, every load in a fresh process of its own. "
        f"Insert: {meta['batch']:,}-row batches of row dicts (rows/s = rows / time inside `insert`). "
        "Build = insert + flush + create_index (pymilvus waits for index state Finished) + load (100%).",
        f"- Loads: closed loop, >= {meta['duration']:g} s and >= one pass over the queries after a "
        f"{meta['warmup']:g} s warm-up; nq=1 with 1 and {meta['threads']} threads sharing one client; "
        f"nq={big} with {meta['big_threads']} client threads (FAISS in-process: one caller, OpenMP inside). "
        "Latency p50/p99 per request at nq=1, 1 thread, measured in the client. recall@10 from the first "
        f"answer to each query. Strong count(*): median of {meta['count_reps']} calls. "
        "Peak RSS: VmHWM of the server process (FAISS: of the process that builds and searches).",
        "- Runs vary by up to about ±20% between repetitions on this machine; one run per system here.",
        "",
    ]
    for index in meta["indexes"]:
        spec = meta["index_specs"][index]
        knob = f"{spec['search_key']}={spec['headline']}" if spec["search_key"] else "exact search"
        lines += [f"## {index} {spec['build_params']}, {knob}", "",
                  md_table(main_table(results, index, spec["headline"], big)), ""]
        rat = ratios(results, index, spec["headline"], big)
        lines += ["Ratios (vecdb / other):", "",
                  md_table([["vs", "QPS nq=1 8t", f"nq={big} q/s", "insert rows/s"]] +
                           [[SYSTEM_LABEL[o], _fmt(r["qps8"], 2, "x"), _fmt(r["qps_big"], 2, "x"),
                             _fmt(r["insert_rows_s"], 2, "x")] for o, r in rat.items()]), "",
                  "Targets:", ""]
        lines += [f"- **{t['verdict']}** {t['target']} ({_target_value(t)})"
                  for t in targets(results, index, spec["headline"], big)]
        lines.append("")
        if spec["search_key"]:
            lines += [f"Sweep of {spec['search_key']} (QPS at nq=1, {meta['threads']} threads):", "",
                      md_table(sweep_table(results, index)), ""]
        if plots.get(index):
            lines += [f"![QPS vs recall, {index}]({plots[index]})", ""]
    errs = [r for r in results if r.get("error")]
    if errs:
        lines += ["## Failures", ""] + [f"- {r['system']} / {r['index']}: `{r['error']}`" for r in errs] + [""]
    prof = meta.get("profile")
    if prof:
        lines += [f"## Profile of the vecdb server under nq=1, {meta['threads']}-thread load", "",
                  f"py-spy, {prof['seconds']:g} s at {prof['rate']} Hz, {prof['summary']['samples']:,} busy "
                  "samples (idle threads not sampled; native FAISS time shows on the calling line).", "",
                  "Top frames by self time:", "",
                  md_table([["% busy", "frame"]] +
                           [[f"{r['pct']:.1f}", f"`{r['frame']}`"] for r in prof["summary"]["self"][:15]]), "",
                  "Top frames by inclusive time:", "",
                  md_table([["% busy", "frame"]] +
                           [[f"{r['pct']:.1f}", f"`{r['frame']}`"] for r in prof["summary"]["inclusive"][:20]]),
                  ""]
    lines += ["## Notes", "", NOTES_START, notes, NOTES_END, ""]
    return "\n".join(lines)

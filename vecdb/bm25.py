"""BM25 full-text search over a BM25 function's output field (Milvus 2.5).

Insert: the proxy analyzes the function's input text (vecdb.analyzer) and stores each row's term
frequencies ``{term id: count}`` in the output SPARSE_FLOAT_VECTOR field, as Milvus's BM25
function does. Clients never send that field.

Search: the proxy analyzes the query text the same way (query term frequencies). The query node
then does what Milvus's shard delegator and knowhere do together:

- statistics over the segments it searches (growing and sealed): ``N`` rows, ``avgdl`` (the mean
  of the rows' token counts) and, per query term, ``df`` (rows holding it). As in Milvus, deleted
  rows stay counted until compaction drops them, and rows are counted whatever the filter.
- query weights ``qtf * idf``, ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` (Milvus's
  ``BM25Stats.BuildIDF``), and row scores
  ``sum over query terms of weight * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``
  (knowhere's BM25 metric), ``dl`` the row's token count, ``k1`` / ``b`` the index's
  ``bm25_k1`` / ``bm25_b`` (1.2 / 0.75 by default).

Milvus keeps the statistics per shard (its delegator sums every segment of the channel, wherever it
is served). vecdb sums every segment the search reads: on one node the segments it reads; where a
search goes to several query nodes (shards on different nodes, or a shard's sealed segments spread
over a replica's nodes: docs/cluster.md) the proxy first asks each node for the statistics of its
part (``statistics``), sums them and sends the sums with the search (``bm25_stats`` in its params),
so every node scores with the same statistics, those of the whole collection, as standalone does.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from vecdb import file_resources, sparse
from vecdb.analyzer import Analyzer, MultiAnalyzer, parse_multi_params, parse_params
from vecdb.schema import CollectionSchema, FieldSchema, FunctionSchema

DEFAULT_K1, DEFAULT_B = 1.2, 0.75


@lru_cache(maxsize=256)
def _analyzer(params: str, _resources: tuple = ()) -> Analyzer:
    return parse_params(params)


def text_analyzer(f: FieldSchema) -> Analyzer | MultiAnalyzer:
    """A VARCHAR field's analyzer: its ``multi_analyzer_params`` (one analyzer per row, chosen by another
    field's value) or its ``analyzer_params``; both parsed once per params."""
    multi = f.type_params.get("multi_analyzer_params", "")
    if multi:
        return parse_multi_params(multi)
    params = f.type_params.get("analyzer_params", "")
    return _analyzer(params, file_resources.resource_key(params))  # its files' resources: another one, rebuilt


def analyzer_of(schema: CollectionSchema, fn: FunctionSchema) -> Analyzer | MultiAnalyzer:
    """The analyzer of a BM25 function's input field."""
    f = schema.field(fn.input_field_names[0])
    assert f is not None
    return text_analyzer(f)


def term_frequencies(schema: CollectionSchema, fn: FunctionSchema, columns: dict) -> np.ndarray | None:
    """The BM25 function's output column of an insert's ``columns`` (None without its input text): with a
    multi-analyzer input, each row analyzed by the analyzer its ``by_field`` value names (rows grouped per
    analyzer; the default analyzer where that field is null or not sent)."""
    text = columns.get(fn.input_field_names[0])
    if text is None:
        return None
    analyzer = analyzer_of(schema, fn)
    if isinstance(analyzer, MultiAnalyzer):
        names = columns.get(analyzer.by_field)
        return analyzer.term_frequencies(text.tolist(), [""] * len(text) if names is None else names.tolist())
    return analyzer.term_frequencies(text.tolist())


def output_analyzer(schema: CollectionSchema, output_name: str, analyzer_name: str = "") -> Analyzer | None:
    """The analyzer of the search texts on field ``output_name`` (a BM25 output), else None: the input
    field's, or, for a multi-analyzer input, the one the search's ``analyzer_name`` names (through its
    aliases; ``default`` when none or unknown, as Milvus)."""
    fn = schema.bm25_function_of(output_name)
    if fn is None:
        return None
    analyzer = analyzer_of(schema, fn)
    return analyzer.analyzer(analyzer_name) if isinstance(analyzer, MultiAnalyzer) else analyzer


# --- query node -----------------------------------------------------------------------------------
def row_lengths(seg, name: str, n: int) -> np.ndarray:
    """Token count of each of the segment's first ``n`` rows (the sum of its term frequencies), kept
    on the segment and extended as a growing segment grows (O(new rows) per search)."""
    cache = seg.__dict__.setdefault("_bm25_lengths", {})
    have = cache.get(name)
    if have is not None and len(have) >= n:
        return have[:n]
    m = 0 if have is None else len(have)
    csr = sparse.to_csr(seg.column(name, n)[m:n])
    rows = np.repeat(np.arange(csr.n, dtype=np.int64), np.diff(csr.indptr))
    more = np.bincount(rows, weights=csr.values.astype(np.float64), minlength=csr.n)
    dl = more if have is None else np.concatenate([have, more])
    cache[name] = dl
    return dl


def _sealed_terms(seg, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A sealed segment's (terms, rows holding each), kept on the segment: from its rows, not its
    postings (an index's drop_ratio_build leaves values out of those; Milvus's statistics count them)."""
    cache = seg.__dict__.setdefault("_bm25_terms", {})
    hit = cache.get(name)
    if hit is None:
        hit = cache[name] = np.unique(sparse.to_csr(seg.column(name, seg.n)).indices, return_counts=True)
    return hit


def _document_frequencies(view, name: str, terms: np.ndarray) -> np.ndarray:
    """Rows of the view holding each of ``terms`` (sorted, unique uint32)."""
    df = np.zeros(len(terms), np.int64)
    if view.segment.sealed:
        dims, counts = _sealed_terms(view.segment, name)
        if len(dims):
            pos = np.minimum(np.searchsorted(dims, terms), len(dims) - 1)
            hit = dims[pos] == terms
            df[hit] = counts[pos[hit]]
        return df
    # growing: its postings (built without a drop ratio, as the search reads them) and the rows after them
    post, tail = sparse.segment_postings(view.segment, name, view.n, 0.0)
    if len(post.dims):
        pos = np.minimum(np.searchsorted(post.dims, terms), len(post.dims) - 1)
        hit = np.flatnonzero(post.dims[pos] == terms)
        a, b = post.starts[pos[hit]], post.starts[pos[hit] + 1]
        if post.ntotal <= view.n:
            df[hit] = b - a
        else:  # an older snapshot of a growing segment: only rows below n count
            df[hit] = [int(np.count_nonzero(post.rows[x:y] < view.n)) for x, y in zip(a.tolist(), b.tolist())]
    if tail is not None and len(tail.csr.indices):
        dims, counts = np.unique(tail.csr.indices, return_counts=True)
        pos = np.minimum(np.searchsorted(dims, terms), len(dims) - 1)
        hit = dims[pos] == terms
        df[hit] += counts[pos[hit]]
    return df


def _query_terms(spec) -> tuple[list[np.ndarray], np.ndarray]:
    rows = [np.frombuffer(q, sparse.PAIR) for q in spec.queries.tolist()]
    terms = np.unique(np.concatenate([r["i"] for r in rows])) if rows else np.empty(0, np.uint32)
    return rows, terms


def statistics(views, spec) -> dict:
    """The statistics of the segments ``views`` for the query terms of ``spec``: ``{"rows": N,
    "tokens": sum of the rows' token counts, "terms": [term ids], "df": [rows holding each]}``;
    the statistics of disjoint parts add up (``add``)."""
    name = spec.field.name
    _, terms = _query_terms(spec)
    total_rows, tokens = 0, 0.0
    df = np.zeros(len(terms), np.int64)
    for view in views:
        if not view.n:
            continue
        total_rows += view.n
        tokens += float(row_lengths(view.segment, name, view.n).sum())
        if len(terms):
            df += _document_frequencies(view, name, terms)
    return {"rows": total_rows, "tokens": tokens, "terms": terms.tolist(), "df": df.tolist()}


def add(parts: list[dict]) -> dict:
    """The statistics of the union of disjoint parts (each from ``statistics`` for the same query)."""
    out = {"rows": sum(p["rows"] for p in parts), "tokens": sum(p["tokens"] for p in parts),
           "terms": parts[0]["terms"] if parts else [], "df": [0] * (len(parts[0]["terms"]) if parts else 0)}
    for p in parts:
        if p["terms"] != out["terms"]:
            raise ValueError("BM25 statistics of different query terms cannot be added")
        out["df"] = [a + b for a, b in zip(out["df"], p["df"])]
    return out


def prepare(views, spec):
    """The search ``spec`` with IDF-weighted query rows and the statistics' ``bm25_avgdl`` in its
    params, over the segments ``views``, or with the statistics the proxy sent (``bm25_stats``: the
    whole search's, see the module docstring)."""
    rows, terms = _query_terms(spec)
    given = (spec.params or {}).get("bm25_stats")
    stats = given if given is not None else statistics(views, spec)
    total_rows, tokens = int(stats["rows"]), float(stats["tokens"])
    df = np.zeros(len(terms), np.int64)
    if len(terms) and stats["terms"]:
        known = np.asarray(stats["terms"], np.uint32)
        pos = np.minimum(np.searchsorted(known, terms), len(known) - 1)
        hit = known[pos] == terms
        df[hit] = np.asarray(stats["df"], np.int64)[pos[hit]]
    avgdl = tokens / total_rows if total_rows and tokens else 0.0
    weighted = []
    for r in rows:
        d = df[np.searchsorted(terms, r["i"])] if len(r) else np.empty(0, np.int64)
        idf = np.log(1.0 + (total_rows - d + 0.5) / (d + 0.5))
        out = r.copy()
        out["v"] = (r["v"].astype(np.float64) * idf).astype(np.float32)
        weighted.append(out.tobytes())
    params = {k: v for k, v in (spec.params or {}).items() if k != "bm25_stats"}
    params["bm25_avgdl"] = avgdl
    return dataclasses.replace(spec, queries=sparse.column(weighted), params=params)


def weight_fn(seg, name: str, n: int, params: dict):
    """``(rows, tf) -> tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` for the segment's rows."""
    k1 = float(params.get("bm25_k1", DEFAULT_K1))
    b = float(params.get("bm25_b", DEFAULT_B))
    avgdl = float(params.get("bm25_avgdl", 0.0)) or 1.0
    dl = row_lengths(seg, name, n)

    def weigh(rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
        tf = tf.astype(np.float64)
        return tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl[rows] / avgdl))

    return weigh

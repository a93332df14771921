"""Full-text (BM25) in process: the analyzer's throughput at insert, and BM25 search QPS.

Data (fixed seed): ``--rows`` texts of Poisson(``--words``) words (at least 1) drawn from a
``--vocab``-word vocabulary with Zipf-like frequencies p(w) ~ 1 / (w + 1)^1.07 (as words are in
text), words capitalised at random and separated by ", "; queries of ``--qwords`` words drawn the
same way. Measures:

- analyze: ``Analyzer.term_frequencies`` over the texts in 5,000-row batches (what an insert does
  in the proxy): rows/s;
- search: ``vecdb.querynode.executor.search`` over one sealed segment holding the rows (the BM25
  statistics pass, the postings scan with BM25 weights, top-k), nq=1 queries one after another:
  QPS; every answer checked against a numpy BM25 over a dense term-count matrix (recall@k).

    python -m bench.full_text_bench [--rows 100000 --vocab 20000 --words 30 --queries 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vecdb import sparse
from vecdb.analyzer import Analyzer
from vecdb.querynode import executor
from vecdb.schema import DataType, FieldSchema


def texts(n: int, vocab: list[str], words: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    p /= p.sum()
    counts = np.maximum(rng.poisson(words, n), 1)
    drawn = np.asarray(vocab, object)[rng.choice(len(vocab), int(counts.sum()), p=p)]
    caps = rng.random(len(drawn)) < 0.1
    drawn[caps] = [w.upper() for w in drawn[caps]]
    ends = np.cumsum(counts)
    return [", ".join(drawn[e - c:e]) for c, e in zip(counts.tolist(), ends.tolist(), strict=True)]


class _Segment:
    sealed = True

    def __init__(self, col: np.ndarray):
        self.col, self.n = col, len(col)

    def column(self, name: str, n: int) -> np.ndarray:
        return self.col[:n] if name == "sp" else np.arange(n, dtype=np.int64)

    def visible(self, ts: int, n: int):
        return None


class _View:
    def __init__(self, seg: _Segment):
        self.segment, self.n = seg, seg.n


def reference(csr: sparse.Csr, q: bytes, k: int, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Top-k rows by BM25 with dense numpy over the query's terms."""
    qp = np.frombuffer(q, sparse.PAIR)
    rows = np.repeat(np.arange(csr.n), np.diff(csr.indptr))
    dl = np.bincount(rows, weights=csr.values, minlength=csr.n)
    avgdl = dl.sum() / csr.n
    score = np.zeros(csr.n)
    for t, qtf in zip(qp["i"].tolist(), qp["v"].tolist(), strict=True):
        m = csr.indices == t
        tf = np.zeros(csr.n)
        tf[rows[m]] = csr.values[m]
        df = np.count_nonzero(m)
        idf = np.log(1 + (csr.n - df + 0.5) / (df + 0.5))
        score += qtf * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    top = np.argsort(-score, kind="stable")[:k]
    return top[score[top] > 0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--vocab", type=int, default=20_000)
    ap.add_argument("--words", type=float, default=30)
    ap.add_argument("--qwords", type=float, default=4)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    vocab = [f"w{i}x" for i in range(a.vocab)]
    docs = texts(a.rows, vocab, a.words, 1)
    qs = texts(a.queries, vocab, a.qwords, 2)
    an = Analyzer()
    t = time.perf_counter()
    parts = [an.term_frequencies(docs[i:i + 5000]) for i in range(0, len(docs), 5000)]
    analyze_s = time.perf_counter() - t
    col = np.concatenate(parts)
    csr = sparse.to_csr(col)
    view = _View(_Segment(col))
    field = FieldSchema("sp", DataType.SPARSE_FLOAT_VECTOR, is_function_output=True)
    qrows = an.query_rows(qs)

    def spec(q):
        return executor.SearchSpec(field=field, queries=sparse.column([q]), limit=a.k, offset=0, metric="BM25",
                                   params={}, index_type="SPARSE_INVERTED_INDEX")

    executor.search([view], spec(qrows[0]), "id", [])  # postings built once (the segment's load)
    t = time.perf_counter()
    answers = [executor.search([view], spec(q), "id", []) for q in qrows.tolist()]
    search_s = time.perf_counter() - t
    hit = total = 0
    for q, h in zip(qrows.tolist(), answers, strict=True):
        want = reference(csr, q, a.k)
        hit += len(set(h.pks.tolist()) & set(want.tolist()))
        total += len(want)
    out = {"rows": a.rows, "vocab": a.vocab, "words_per_row": a.words, "nnz": int(len(csr.indices)),
           "analyze_rows_per_s": round(a.rows / analyze_s), "search_qps": round(a.queries / search_s, 1),
           "recall_at_k": round(hit / max(total, 1), 4), "k": a.k}
    print(json.dumps(out))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

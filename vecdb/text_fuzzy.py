"""``text_match_fuzzy(field, 'words', max_edit_distance=K)``: rows holding a term within K edits of
any of the words' tokens (Milvus 3.0, PRs #50933 / #51077).

Milvus's tantivy binding (``fuzzy_match_query`` in ``index_reader_text.rs``) ORs one
``FuzzyTermQuery::new(token, K, transposition_cost_one=true)`` per analyzed query token: a whole-term
(not prefix) Levenshtein automaton over Unicode scalar values where swapping two adjacent characters
is one edit, i.e. the optimal string alignment distance (restricted Damerau-Levenshtein); K is 0..2,
and K = 0 is exactly ``text_match``.

Here each query token is compared with the distinct terms of the column (its vocabulary, kept per
column array like ``text_match``'s term index, ``vecdb.prefix_cache``): the terms whose length is
within K of the token's, as one padded code-point matrix, run through the OSA recurrence one token
character at a time with numpy over all of them at once; the rows holding a matching term then come
from ``text_match``'s cached term index (``vecdb.analyzer.match_any``)."""

from __future__ import annotations

from itertools import chain

import numpy as np

from vecdb.prefix_cache import ArrayCache, prefix_root

MAX_EDIT_DISTANCE = 2  # tantivy's fuzzy automaton's cap, Milvus's [0, 2]

_VOCAB_CACHE = ArrayCache(64)  # (done, Vocabulary) per column array and analyzer


class Vocabulary:
    """Distinct terms, as one flat array of code points with each term's start and length."""

    __slots__ = ("terms", "known", "codes", "starts", "lengths")

    def __init__(self, terms: list[str]):
        self.terms = terms
        self.known = set(terms)
        self.lengths = np.fromiter(map(len, terms), np.int64, len(terms))
        self.starts = np.zeros(len(terms), np.int64)
        if len(terms) > 1:
            np.cumsum(self.lengths[:-1], out=self.starts[1:])
        self.codes = code_points("".join(terms))

    def grown(self, more: list[str]) -> Vocabulary:
        """This vocabulary with the terms of ``more`` it lacks added (a new one: a reader of this one
        may still be at work), the terms it has not copied again but shared."""
        new = [t for t in dict.fromkeys(more) if t not in self.known]
        if not new:
            return self
        add = Vocabulary(new)
        out = Vocabulary.__new__(Vocabulary)
        out.terms = self.terms + new
        out.known = self.known | add.known
        out.lengths = np.concatenate([self.lengths, add.lengths])
        out.starts = np.concatenate([self.starts, add.starts + len(self.codes)])
        out.codes = np.concatenate([self.codes, add.codes])
        return out


def code_points(text: str) -> np.ndarray:
    """``text``'s Unicode code points (a lone surrogate kept as its own)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int32)


def vocabulary(col: np.ndarray, analyzer) -> Vocabulary:
    """The distinct terms of a column of texts, kept for the column's base array while it lives (a
    longer prefix of the same array analyzes only its new rows; a shorter one may see terms of rows
    past its end, which no row of it holds, so they match nothing)."""
    root, n = prefix_root(col), len(col)
    if root is None:
        return Vocabulary(_terms(col, analyzer))
    done, vocab = _VOCAB_CACHE.get(root, analyzer) or (0, Vocabulary([]))
    if done < n:
        vocab = vocab.grown(_terms(col[done:n], analyzer))
        _VOCAB_CACHE.put(root, (n, vocab), analyzer)
    return vocab


def _terms(col: np.ndarray, analyzer) -> list[str]:
    texts = (t for t in col.tolist() if isinstance(t, str) and t)
    return list(dict.fromkeys(chain.from_iterable(map(analyzer.tokens, texts))))


def within(vocab: Vocabulary, token: str, k: int) -> np.ndarray:
    """Indices of the vocabulary's terms at most ``k`` edits (OSA distance over code points) from
    ``token``."""
    q = code_points(token)
    m = len(q)
    idx = np.flatnonzero(np.abs(vocab.lengths - m) <= k)  # each edit changes the length by at most 1
    if not len(idx) or k <= 0:
        return idx[vocab_equal(vocab, idx, q)] if len(idx) else idx
    lengths = vocab.lengths[idx]
    width = int(lengths.max())
    cols = np.arange(width)
    inside = cols[None, :] < lengths[:, None]
    terms = np.full((len(idx), width), -1, np.int32)  # -1: past a term's end, equal to no character
    terms[inside] = vocab.codes[(vocab.starts[idx][:, None] + cols[None, :])[inside]]
    near = character_bound(q, terms, lengths) <= k
    idx, terms, lengths = idx[near], terms[near], lengths[near]
    if not len(idx):
        return idx
    distances = osa_distances(q, terms, lengths, k)
    return idx[distances <= k]


def character_bound(q: np.ndarray, terms: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A lower bound of each term's distance to ``q``, cheaper than the distance: the occurrences of
    ``q``'s characters a term lacks (an insertion or a substitution supplies one at most, a deletion
    or a transposition none), or the term's characters ``q`` lacks, whichever is more."""
    chars, counts = np.unique(q, return_counts=True)
    lacking = np.zeros(len(terms), np.int64)
    for c, wanted in zip(chars.tolist(), counts.tolist(), strict=True):
        lacking += np.maximum(wanted - (terms == c).sum(axis=1), 0)
    return np.maximum(lacking, lengths - len(q) + lacking)  # extra = len - (len(q) - lacking)


def vocab_equal(vocab: Vocabulary, idx: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Which of the terms ``idx`` (all of ``len(q)`` code points) equal ``q``."""
    if not len(q):
        return np.ones(len(idx), bool)
    at = vocab.starts[idx][:, None] + np.arange(len(q))[None, :]
    return (vocab.codes[at] == q[None, :]).all(axis=1)


def osa_distances(q: np.ndarray, terms: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """The optimal string alignment distance of ``q`` (code points) to each row of ``terms`` (code
    points padded with -1 past each row's ``lengths``), capped at ``k + 1``: the distance matrix
    one ``q`` character (one DP row) at a time, for all terms at once. Only the band of cells
    ``|i - j| <= k`` can lie on a path of at most ``k`` edits (each step off the diagonal costs one),
    the rest stay at the cap. Within a row the insertion chain ``D[i][j] = min(E[j], D[i][j-1] + 1)``
    is a running minimum of ``E[j] - j``, plus ``j``. A term whose last two rows are beyond ``k`` can't
    come back (a row is at least the smaller of the row before and the one before that plus one), so
    it is dropped as soon as it is."""
    n, width = terms.shape
    cap = k + 1
    prev2 = None  # D[i-2]
    prev = np.full((n, width + 1), cap, np.int32)  # D[0][j] = j within the band
    prev[:, :min(width, k) + 1] = np.arange(min(width, k) + 1)
    alive = np.arange(n)  # the terms not dropped yet: the others stay at the cap
    out = np.full(n, cap, np.int32)
    for i in range(1, len(q) + 1):
        c = q[i - 1]
        lo, hi = max(0, i - k), min(width, i + k) + 1  # the band's columns: [lo, hi)
        cur = np.full_like(prev, cap)
        if lo == 0:
            cur[:, 0] = i
        s = max(lo, 1)
        if s < hi:  # deletion, substitution
            cur[:, s:hi] = np.minimum(prev[:, s:hi] + 1, prev[:, s - 1:hi - 1] + (terms[:, s - 1:hi - 1] != c))
        t = max(lo, 2)
        if prev2 is not None and t < hi:  # transposition: q[i-2:i] is terms[j-2:j] swapped
            swap = (terms[:, t - 1:hi - 1] == q[i - 2]) & (terms[:, t - 2:hi - 2] == c)
            cur[:, t:hi] = np.where(swap, np.minimum(cur[:, t:hi], prev2[:, t - 2:hi - 2] + 1), cur[:, t:hi])
        j = np.arange(lo, hi, dtype=np.int32)
        if lo < hi:  # insertion
            cur[:, lo:hi] = np.minimum(np.minimum.accumulate(cur[:, lo:hi] - j, axis=1) + j, cap)
        keep = (cur[:, lo:hi].min(axis=1, initial=cap) <= k) | (prev.min(axis=1) <= k)
        if not keep.all():
            alive, terms, lengths, cur, prev = alive[keep], terms[keep], lengths[keep], cur[keep], prev[keep]
            if not len(alive):
                return out
        prev2, prev = prev, cur
    out[alive] = prev[np.arange(len(alive)), lengths]
    return out


def fuzzy_terms(col: np.ndarray, analyzer, tokens: list[str], k: int) -> list[str]:
    """The column's terms within ``k`` edits of any of ``tokens``."""
    vocab = vocabulary(col, analyzer)
    if not vocab.terms:
        return []
    hit = np.unique(np.concatenate([within(vocab, t, k) for t in dict.fromkeys(tokens)]))
    return [vocab.terms[i] for i in hit.tolist()]


def match_fuzzy(col: np.ndarray, analyzer, tokens: list[str], k: int) -> np.ndarray:
    """Rows of ``col`` holding a term within ``k`` edits of any of ``tokens`` (already analyzed)."""
    from vecdb.analyzer import match_any, term_ids  # noqa: PLC0415 - analyzers only where used

    if not tokens or not len(col):
        return np.zeros(len(col), bool)
    terms = fuzzy_terms(col, analyzer, tokens, k)
    if not terms:
        return np.zeros(len(col), bool)
    return match_any(col, analyzer, np.unique(term_ids(terms)))

"""NGRAM (Milvus 2.6): an n-gram inverted index that narrows a ``like`` filter to candidate rows.

For every gram length ``k`` in ``[min_gram, max_gram]`` a sealed segment's strings give their
overlapping ``k``-character substrings (characters, not bytes: Unicode code points, as Milvus's
character-based tokenizer), each hashed to 64 bits. One posting list per distinct gram, CSR-style:

- ``grams[k]``: the distinct gram hashes, sorted (uint64);
- ``offsets[k]``: where each gram's rows start in ``rows[k]`` (``len(grams) + 1``, int64);
- ``rows[k]``: the row ids holding the gram, ascending within a gram, each row once (int32).

A ``like`` pattern's literal parts (vecdb.expr.like.literals: split at ``%`` and ``_``, escapes
read) must each occur in a matching string. A literal of ``L >= min_gram`` characters looks up its
grams of length ``min(max_gram, L)``; a row holding the literal holds each of them, so the
intersection of their posting lists is a superset of the matches. The candidates are then checked
with the exact matcher (vecdb.expr.like.compile_like), so results equal a scan's whatever the
hashes do: a collision only adds a candidate. Literals shorter than ``min_gram`` narrow nothing;
with no literal long enough, or candidates likely to be most of the segment (the shortest list over
``1/BROAD_DIVISOR`` of the rows), ``like`` returns None and the filter scans.

Built vectorised: the strings joined into one array of code points, a gram's hash computed for
every position at once (a loop over the ``k`` characters of a gram, never over rows), the grams
that would cross into the next row dropped, then the
(hash, row) pairs packed into one uint64 each (the hash's top bits, the row in the low bits) and
sorted with ``np.sort``: equal grams become runs, their rows ascending, duplicates adjacent.
Memory: 4 bytes per (row, distinct gram of that row) plus 16 per distinct gram of the segment (see
``nbytes``; docs/filters.md gives measured bytes per row).
"""

from __future__ import annotations

import numpy as np

from vecdb.index.scalar import kept_index

_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime, over code points instead of bytes
_SEED = 0xCBF29CE484222325
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)  # murmur3's fmix64
_CHUNK_CHARS = 1 << 20  # code points hashed per pass: temporaries of 8 MB, which malloc reuses
BROAD_DIVISOR = 2  # a literal whose every gram is in more than n/2 rows narrows too little: scan


def code_points(s: str) -> np.ndarray:
    """``s`` as uint32 code points (a lone surrogate, which JSON may carry, kept as itself)."""
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def gram_hashes(codes: np.ndarray, k: int) -> np.ndarray:
    """The 64-bit hash of the ``k`` code points starting at each position of ``codes`` that has ``k``
    of them (uint64, ``len(codes) - k + 1`` of them): ``k`` passes over shifted slices, no gather."""
    m = len(codes) - k + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    wide = codes.astype(np.uint64, copy=False)
    h = np.full(m, _SEED ^ k, dtype=np.uint64)
    for j in range(k):
        h ^= wide[j:j + m]
        h *= _PRIME
    h ^= h >> np.uint64(33)
    h *= _MIX1
    h ^= h >> np.uint64(33)
    h *= _MIX2
    h ^= h >> np.uint64(33)
    return h


class NgramIndex:
    """The n-gram postings of ``n`` strings (``strings``, kept to check candidates)."""

    __slots__ = ("min_gram", "max_gram", "n", "strings", "row_bits", "grams", "offsets", "rows")

    def __init__(self, strings: np.ndarray, min_gram: int, max_gram: int):
        if not 1 <= min_gram <= max_gram:
            raise ValueError(f"min_gram {min_gram}, max_gram {max_gram}")
        self.min_gram, self.max_gram = min_gram, max_gram
        self.strings = strings
        self.n = len(strings)
        self.row_bits = max(1, (self.n - 1).bit_length())
        self.grams: dict[int, np.ndarray] = {}
        self.offsets: dict[int, np.ndarray] = {}
        self.rows: dict[int, np.ndarray] = {}
        keys: dict[int, list[np.ndarray]] = {k: [] for k in range(min_gram, max_gram + 1)}
        for lo, hi in _row_chunks(strings):
            for k, part in self._chunk_keys(strings[lo:hi], lo).items():
                keys[k].append(part)
        for k, parts in keys.items():
            self._postings(k, np.concatenate(parts) if parts else np.zeros(0, np.uint64))

    def _chunk_keys(self, chunk: np.ndarray, first_row: int) -> dict[int, np.ndarray]:
        """Packed ``(hash >> row_bits << row_bits) | row`` of every gram of rows ``first_row...``."""
        lengths = np.fromiter(map(len, chunk), np.int64, len(chunk))
        codes = code_points("".join(chunk)).astype(np.uint64)  # once for every k
        row_of = np.repeat(np.arange(first_row, first_row + len(chunk), dtype=np.uint64), lengths)
        room = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(codes))  # chars left in the row
        rb = np.uint64(self.row_bits)
        out = {}
        for k in range(self.min_gram, self.max_gram + 1):
            starts = np.flatnonzero(room >= k)  # grams across two rows are hashed, then left out
            h = gram_hashes(codes, k)[starts]
            out[k] = ((h >> rb) << rb) | row_of[starts]
        return out

    def _postings(self, k: int, keys: np.ndarray) -> None:
        keys.sort()  # in place: the array is this build's own
        if len(keys):
            new = np.empty(len(keys), dtype=bool)
            new[0] = True
            np.not_equal(keys[1:], keys[:-1], out=new[1:])
            keys = keys[new]  # a gram twice in a row: once
        rb = np.uint64(self.row_bits)
        hashes = keys >> rb
        first = np.flatnonzero(np.concatenate(([True], hashes[1:] != hashes[:-1]))) if len(keys) else \
            np.zeros(0, np.int64)
        self.grams[k] = hashes[first]
        self.offsets[k] = np.append(first, len(keys)).astype(np.int64)
        self.rows[k] = (keys & np.uint64((1 << self.row_bits) - 1)).astype(np.int32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the postings (the strings are the segment's column, or a JSON path's values)."""
        return sum(int(a.nbytes) for d in (self.grams, self.offsets, self.rows) for a in d.values())

    def postings(self, literal: str) -> list[np.ndarray]:
        """The posting lists of ``literal``'s grams (of length ``min(max_gram, len)``), distinct grams,
        shortest first; ``literal`` has at least ``min_gram`` characters."""
        k = min(self.max_gram, len(literal))
        codes = code_points(literal)
        h = np.unique(gram_hashes(codes, k) >> np.uint64(self.row_bits))
        grams = self.grams[k]
        at = np.searchsorted(grams, h)
        found = at < len(grams)
        found[found] = grams[at[found]] == h[found]
        if not found.all():
            return [np.zeros(0, np.int32)]  # a gram no row holds: no row holds the literal
        off, rows = self.offsets[k], self.rows[k]
        lists = [rows[off[i]:off[i + 1]] for i in at.tolist()]
        return sorted(lists, key=len)

    def candidates(self, literals: list[str]) -> np.ndarray | None:
        """Sorted row ids that may hold every one of ``literals``; None when the index narrows too
        little (no literal of ``min_gram`` characters, or every list over ``n / BROAD_DIVISOR``)."""
        lists = [p for lit in literals if len(lit) >= self.min_gram for p in self.postings(lit)]
        if not lists:
            return None
        lists.sort(key=len)
        if len(lists[0]) * BROAD_DIVISOR > self.n:
            return None
        cand = lists[0]
        for other in lists[1:]:
            if not len(cand):
                break
            cand = _intersect_sorted(cand, other)
        return cand

    def like(self, literals: list[str], matcher) -> np.ndarray | None:
        """The rows whose string ``matcher`` accepts, checking the candidates only; None: scan."""
        cand = self.candidates(literals)
        if cand is None:
            return None
        res = np.zeros(self.n, dtype=bool)
        if len(cand):
            res[cand[matcher(self.strings[cand])]] = True
        return res


def _intersect_sorted(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    """The values of sorted ``small`` also in sorted ``big``: a binary search each, O(small log big)."""
    if not len(big):
        return big
    at = np.searchsorted(big, small)
    at[at == len(big)] = 0
    return small[big[at] == small]


def _row_chunks(strings: np.ndarray):
    """Row ranges of about ``_CHUNK_CHARS`` code points each (a longer row is one range)."""
    n = len(strings)
    if n == 0:
        return
    ends = np.cumsum(np.fromiter(map(len, strings), np.int64, n))
    lo = 0
    while lo < n:
        base = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _CHUNK_CHARS, "right")))
        yield lo, min(hi, n)
        lo = hi


def segment_ngram_index(seg, key: tuple) -> NgramIndex | None:
    """The NGRAM index kept on sealed segment ``seg`` for ``key`` (column, JSON path), if built."""
    return kept_index(seg, "_ngram_indexes", key)


def build_segment_ngram_index(seg, key: tuple, min_gram: int, max_gram: int, strings) -> NgramIndex:
    """Build (once per gram range) and keep the NGRAM index of a sealed segment: ``strings()`` gives
    the indexed values (vecdb.expr.ngram_like.indexed_strings). Kept in memory like the sorted scalar
    indexes (vecdb.index.scalar) and built again when the segment is loaded."""
    cache = seg.__dict__.setdefault("_ngram_indexes", {})
    idx = cache.get(key)
    if idx is None or idx.n != seg.n or (idx.min_gram, idx.max_gram) != (min_gram, max_gram):
        idx = cache[key] = NgramIndex(strings(), min_gram, max_gram)
    return idx

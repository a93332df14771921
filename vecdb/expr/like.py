"""LIKE patterns: ``%`` matches any run of characters (newlines included),
``_`` exactly one character; ``\\%``, ``\\_`` and ``\\\\`` match a literal
``%``, ``_`` and backslash, and any other backslash is itself literal.
Matching is over the whole string (Milvus ``like`` is anchored).

``compile_like(pattern)`` returns a callable from a 1-D object array of str to
a bool mask, picking the cheapest strategy: equality, prefix (two vectorised
string comparisons), suffix, substring, or a compiled regex. It carries the
pattern's ``literals``, which a sealed segment's NGRAM index looks up to check
only candidate rows (vecdb.expr.ngram_like).

The regex never backtracks more than one level, so a match costs about
O(len(s) * len(pattern)) whatever the pattern (a naive ``.*a.*a.*b`` costs
O(len(s) ** k) on a string of ``a``, and a hostile filter would hold the GIL
for minutes). Split the pattern at ``%`` into pieces of fixed length (literal
characters and ``_``): the first piece must match at the start, the last at
the end, and each piece in between is taken at its leftmost occurrence after
the previous one. Leftmost is always right: an earlier end leaves more room
for every later piece. Each middle piece is an atomic group ``(?>.*?piece)``,
so once found it is never searched again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import repeat

import numpy as np

Matcher = Callable[[np.ndarray], np.ndarray]
_ANY, _ONE = object(), object()


def _parse(pattern: str) -> list[object]:
    """Pattern -> list of literal str pieces and the markers _ANY / _ONE."""
    out: list[object] = []
    buf: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n and pattern[i + 1] in "%_\\":
            buf.append(pattern[i + 1])
            i += 2
            continue
        if c in "%_":
            if buf:
                out.append("".join(buf))
                buf = []
            if not (c == "%" and out and out[-1] is _ANY):
                out.append(_ANY if c == "%" else _ONE)
        else:
            buf.append(c)
        i += 1
    if buf:
        out.append("".join(buf))
    return out


def like_to_regex(pattern: str) -> str:
    """The regex (for ``fullmatch`` with DOTALL) of ``pattern``: ``first(?>.*?middle)....*last``."""
    pieces: list[str] = [""]
    for p in _parse(pattern):
        if p is _ANY:
            pieces.append("")
        elif isinstance(p, str):
            pieces[-1] += re.escape(p)
        else:  # _ONE
            pieces[-1] += "."
    if len(pieces) == 1:
        return pieces[0]
    first, *middle, last = pieces
    return first + "".join(f"(?>.*?{m})" for m in middle) + ".*" + last


def match_one(pattern: str, s: str) -> bool:
    """Scalar LIKE, used for constant folding."""
    return _regex(pattern)(s) is not None


def _regex(pattern: str):
    return re.compile(like_to_regex(pattern), re.DOTALL).fullmatch


def literals(pattern: str) -> list[str]:
    """The literal runs of ``pattern`` (split at ``%`` and ``_``, escapes read): a string matching
    it holds each as a substring (what an NGRAM index looks up, vecdb.index.ngram)."""
    return [p for p in _parse(pattern) if isinstance(p, str)]


class LikeMatcher:
    """``compile_like``'s result: called on strings, a bool mask; ``literals`` for an index."""

    __slots__ = ("pattern", "literals", "_match")

    def __init__(self, pattern: str, match: Matcher):
        self.pattern, self.literals, self._match = pattern, literals(pattern), match

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return self._match(data)


def compile_like(pattern: str) -> LikeMatcher:
    return LikeMatcher(pattern, _strategy(pattern))


def _strategy(pattern: str) -> Matcher:
    parts = _parse(pattern)
    lits = [p for p in parts if isinstance(p, str)]
    if _ONE not in parts and len(lits) <= 1:
        lit = lits[0] if lits else ""
        shape = tuple("L" if isinstance(p, str) else "%" for p in parts)
        if shape in ((), ("L",)):
            return lambda d: _as_bool(d == lit)
        if shape == ("%",):
            return lambda d: np.ones(len(d), dtype=bool)
        if shape == ("L", "%"):
            return _prefix_matcher(lit)
        if shape == ("%", "L"):
            return lambda d: np.fromiter(map(str.endswith, d, repeat(lit)), bool, len(d))
        if shape == ("%", "L", "%"):
            return lambda d: np.fromiter(map(str.__contains__, d, repeat(lit)), bool, len(d))
    rx = _regex(pattern)
    return lambda d: np.fromiter(map(bool, map(rx, d)), bool, len(d))


def _prefix_matcher(prefix: str) -> Matcher:
    # s starts with p  <=>  p <= s < succ(p), succ(p) = p with its last code
    # point incremented; two C-level object comparisons beat str.startswith.
    if ord(prefix[-1]) >= 0x10FFFF:
        return lambda d: np.fromiter(map(str.startswith, d, repeat(prefix)), bool, len(d))
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)

    def match(d: np.ndarray) -> np.ndarray:
        res = _as_bool(d >= prefix)
        res &= _as_bool(d < upper)
        return res

    return match


def _as_bool(x) -> np.ndarray:
    return np.asarray(x, dtype=bool)

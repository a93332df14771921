"""The slop a phrase needs to match a text (Milvus 3.0's ``ComputePhraseMatchSlop``).

Both are analyzed into tokens with positions. A phrase token ``q`` at position ``j`` found at text
position ``p`` has the offset ``p - j``; the slop of one choice of a text position per phrase token
is the span of their offsets (largest minus smallest), and the slop needed is the smallest span over
all choices: the smallest range holding one offset of each phrase token, found by sweeping the
sorted offsets with a heap (Milvus's ``compute_phrase_match_slop`` in its tantivy binding does the
same, with offsets shifted by the largest phrase position). 0 is the exact phrase, 1 one word in
between, 2 two words swapped: what ``phrase_match(field, phrase, slop)`` accepts with a slop at least
this (``vecdb.analyzer.phrase_within``). A phrase token the text lacks: no slop (None). A phrase with
no token: 0.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def min_phrase_slop(phrase: Sequence[tuple[str, int]], text: Sequence[tuple[str, int]]) -> int | None:
    """The smallest slop at which ``phrase`` matches ``text`` (both ``(token, position)`` pairs)."""
    if not phrase:
        return 0
    where: dict[str, list[int]] = {}
    for token, pos in text:
        where.setdefault(token, []).append(pos)
    lists = []
    for token, j in phrase:
        found = where.get(token)
        if not found:
            return None
        lists.append(sorted(p - j for p in found))
    heap = [(offsets[0], i, 0) for i, offsets in enumerate(lists)]
    heapq.heapify(heap)
    high = max(offsets[0] for offsets in lists)
    best = high - heap[0][0]
    while best:
        low, i, k = heapq.heappop(heap)
        best = min(best, high - low)
        if k + 1 == len(lists[i]):
            break
        nxt = lists[i][k + 1]
        high = max(high, nxt)
        heapq.heappush(heap, (nxt, i, k + 1))
    return best

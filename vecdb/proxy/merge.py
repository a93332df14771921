"""Merging the answers of several query nodes into the answer one node would give.

In a cluster the proxy sends one search or query to every query node that serves some of a
collection's shards (the nodes' shard sets are disjoint) and merges their replies here. The merge
reproduces ``vecdb.querynode.executor.search`` / ``query`` run over all the segments at once:

* search: the caller asks each node for ``limit + offset`` hits with offset 0; per query every
  candidate is ranked by score (best first), equal scores by primary key ascending (``np.lexsort``;
  string keys by their rank, ``executor.text_rank``, as the executor does), then the first
  ``offset`` are dropped and at most ``limit`` kept.
* query: without limit and offset the parts are concatenated; with either, the rows are sorted by
  primary key (stable) and sliced ``[offset : offset + limit]``, the caller having asked each node
  for ``offset + limit`` rows with offset 0.

Ranking is by total order over (score, primary key), so taking the best ``k`` of each part and
then the best ``k`` of their union gives the best ``k`` of everything: the result does not depend
on how the segments were split between nodes.

A primary key that two parts both answer (a sealed segment caught mid-move, held in full by two
nodes of a replica, when a read at an older snapshot asks every node) is one row: primary keys are
unique in vecdb, so the merge keeps its first copy in rank order (a search hit: per query, and per
struct element for element-level hits), as Milvus's proxy reduce skips repeated ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecdb.element_search import ELEMENT_COLUMN
from vecdb.index import is_similarity
from vecdb.querynode.executor import Hits, text_rank


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def merge_hits(parts: list[Hits], nq: int, limit: int, offset: int, metric: str) -> Hits:
    """Merge per-node search results (each computed with offset 0 and ``limit + offset`` hits per
    query) into the result of one search with ``limit`` and ``offset`` over all their segments.

    Output columns follow their rows. A part with no hits may lack columns (an executor that found
    no segment to search returns none); the result has every column some part has. ``topks`` is a
    list of ints, one per query.
    """
    for p in parts:
        if len(p.topks) != nq:
            raise ValueError(f"a part answers {len(p.topks)} queries, expected {nq}")
    live = [p for p in parts if len(p.pks)]
    if not live:  # nothing to rank: empty arrays of the parts' own types
        pks = _concat([p.pks for p in parts]) if parts else np.empty(0, np.int64)
        scores = np.empty(0, np.float32)
        columns: dict[str, np.ndarray] = {}
        for p in parts:
            for name, col in p.columns.items():
                columns.setdefault(name, col[:0])
        return Hits([0] * nq, pks, scores, columns)

    names = list(dict.fromkeys(name for p in parts for name in p.columns))
    for p in live:
        missing = [name for name in names if name not in p.columns]
        if missing:
            raise ValueError(f"a part with hits lacks output columns {missing}")
    pks = _concat([p.pks for p in live])
    scores = _concat([np.asarray(p.scores, np.float32) for p in live])
    qid = _concat([np.repeat(np.arange(nq), np.asarray(p.topks, np.int64)) for p in live])

    key = -scores if is_similarity(metric) else scores
    if pks.dtype != object:
        order = np.lexsort((pks, key, qid))
    else:  # string keys: ranked only where scores tie (a sort of the strings)
        order = np.lexsort((key, qid))
        k, q = key[order], qid[order]
        if ((k[1:] == k[:-1]) & (q[1:] == q[:-1])).any():
            order = np.lexsort((text_rank(pks), key, qid))
    if len(live) > 1:
        elements = _concat([p.columns[ELEMENT_COLUMN] for p in live])[order] if ELEMENT_COLUMN in names else None
        order = order[_first_copies(pks[order], qid[order], elements)]
    qs = qid[order]
    counts = np.bincount(qs, minlength=nq)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(order)) - starts[qs]
    keep = order[(rank >= offset) & (rank < offset + limit)]
    topks = np.clip(counts - offset, 0, limit).tolist()
    return Hits(topks, pks[keep], scores[keep],
                {name: _concat([p.columns[name] for p in live])[keep] for name in names})


def merge_query(parts: list[dict[str, np.ndarray]], pk_name: str, limit: int | None, offset: int,
                output_fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Merge per-node query results into the result of one query over all their segments.

    Without limit and offset the parts are concatenated in order. With either, each part must hold
    ``pk_name`` and at most ``offset + limit`` rows (the nodes were asked with offset 0); all rows
    are sorted by primary key (stable: equal keys keep the parts' order) and sliced
    ``[offset : offset + limit]``. Only ``output_fields`` are returned (``pk_name`` too only when
    among them).

    Parts with no rows are skipped (an executor with no segments returns untyped empty columns);
    when every part is empty the first part's columns, cut to zero rows, are returned.

    Raises ValueError when there are no parts but ``output_fields`` is not empty (the columns'
    types are unknown); with no parts and no output fields the result is ``{}``.
    """
    fields = list(output_fields)
    if not parts:
        if fields:
            raise ValueError("no query results to merge: the output columns' types are unknown")
        return {}
    sorting = limit is not None or bool(offset)
    need = fields + ([pk_name] if sorting and pk_name not in fields else [])
    for p in parts:
        missing = [name for name in need if name not in p and _rows(p, pk_name)]
        if missing:
            raise ValueError(f"a query result lacks columns {missing}")
    live = [p for p in parts if _rows(p, pk_name)]
    if not live:
        return {name: _empty(parts, name) for name in fields}
    if not sorting:
        if pk_name not in live[0] or len(live) == 1:
            return {name: _concat([p[name] for p in live]) for name in fields}
        pks = _concat([p[pk_name] for p in live])
        _, first = np.unique(pks, return_index=True)
        keep = np.sort(first) if len(first) < len(pks) else slice(None)
        return {name: _concat([p[name] for p in live])[keep] for name in fields}
    pks = _concat([p[pk_name] for p in live])
    order = np.argsort(pks, kind="stable")
    if len(live) > 1:
        order = order[_first_copies(pks[order])]
    end = None if limit is None else offset + limit
    order = order[offset:end]
    return {name: _concat([p[name] for p in live])[order] for name in fields}


def _first_copies(pks: np.ndarray, *groups: np.ndarray | None) -> np.ndarray | slice:
    """Positions of the rows of ``pks`` (in rank order) whose key, within equal values of each of
    ``groups`` (None: no grouping), did not occur before; ``slice(None)`` when none repeats."""
    keys = [g for g in groups if g is not None]
    if len(pks) < 2:
        return slice(None)
    ranked = text_rank(pks) if pks.dtype == object else pks
    by_key = np.lexsort((np.arange(len(pks)), ranked, *keys))  # rank order kept within a key
    same = ranked[by_key][1:] == ranked[by_key][:-1]
    for g in keys:
        same &= g[by_key][1:] == g[by_key][:-1]
    if not same.any():
        return slice(None)
    drop = np.zeros(len(pks), bool)
    drop[by_key[1:][same]] = True
    return np.flatnonzero(~drop)


def _rows(part: dict[str, np.ndarray], pk_name: str) -> int:
    if pk_name in part:
        return len(part[pk_name])
    return len(next(iter(part.values()))) if part else 0


def _empty(parts: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    for p in parts:
        if name in p:
            return p[name][:0]
    raise ValueError(f"no query result has column {name!r}")

"""Fusing the results of a hybrid search's ANN requests into one ranking (no gRPC here).

Milvus's rules (proxy rank parameters, ``internal/util/function/rerank``), followed here:

- **RRF** (``k`` in (0, 16384), default 60): a hit at 1-based rank ``r`` of a request's result
  scores ``1 / (k + r)``; a primary key's score is the sum over the requests that returned it.
  Larger is better.
- **Weighted** (one weight in [0, 1] per request): a primary key's score is the sum of
  ``weight_i * norm(score_i)`` over the requests that returned it. With ``norm_score`` (the default)
  each metric's score is mapped into [0, 1], larger being better: COSINE ``(1 + s) / 2``, IP
  ``1/2 + atan(s) / pi``, BM25 ``2 atan(s) / pi``, distances (L2, HAMMING, JACCARD ...)
  ``1 - 2 atan(d) / pi``. Without it the raw scores are summed: when the requests mix
  larger-is-better and smaller-is-better metrics the distances are still mapped by
  ``1 - 2 atan(d) / pi``; otherwise the order follows the metrics' own direction.
- **Decay** (``vecdb.proxy.decay``): each request's scores made larger-is-better (distances
  ``1 - 2 atan(d) / pi``), a key's best one over the requests, times the decay of its field value.
- **Boost** (``vecdb.proxy.boost``): a plain search's hits rescored by filters and weights; not a
  hybrid search's ranker (as Milvus: its fusion rankers are rrf, weighted, decay and model).
- Scores are float32, summed in request order. Ties go to the smaller primary key. The fused list
  is cut to ``offset + limit`` and the first ``offset`` dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from vecdb import errors
from vecdb.index.base import SIMILARITY_METRICS
from vecdb.proxy.boost import Boost, parse_boost
from vecdb.proxy.decay import Decay, parse_decay
from vecdb.schema import CollectionSchema
from vecdb.timestamptz import DEFAULT_ZONE

MAX_RRF_K = 16384
DEFAULT_RRF_K = 60.0


@dataclass(frozen=True)
class Ranker:
    """``strategy`` "rrf" (with ``k``), "weighted" (with ``weights``, ``norm_score``), "decay" (with
    ``decay``: its hits need the field's values, ``SubResult.values``) or "boost" (with ``boost``: a plain
    search's hits rescored, ``vecdb.proxy.boost``; never fused)."""

    strategy: str
    k: float = DEFAULT_RRF_K
    weights: tuple[float, ...] = ()
    norm_score: bool = True
    decay: Decay | None = None
    boost: Boost | None = None


@dataclass
class SubResult:
    """One ANN request's hits for every query: ``topks[i]`` consecutive hits of query ``i``, best first."""

    topks: list[int]
    pks: np.ndarray
    scores: np.ndarray
    metric: str
    values: np.ndarray | None = None  # a decay ranker's field, per hit


@dataclass
class Fused:
    """Fused hits, flattened like ``SubResult``; ``sources[j]`` / ``positions[j]``: the request and the
    index into its flattened hits where hit ``j`` was first seen (for its output fields)."""

    topks: list[int]
    pks: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    positions: np.ndarray


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.InvalidParameter(f"The type of rank param {what} should be float")
    return float(value)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "t"):
        return True
    if text in ("false", "0", "f"):
        return False
    raise errors.InvalidParameter(f"norm_score params must be true/false, but got {value}")


def _rrf(k_raw) -> Ranker:
    k = _number(k_raw, "k")
    if not 0 < k < MAX_RRF_K:
        raise errors.InvalidParameter(f"The rank params k should be in range (0, {MAX_RRF_K})")
    return Ranker("rrf", k=k)


def _weighted(weights_raw, norm_raw, n_requests: int) -> Ranker:
    if weights_raw is None:
        raise errors.InvalidParameter("weights not found in rank_params")
    if not isinstance(weights_raw, list):
        raise errors.InvalidParameter("The weights param should be an array")
    weights = tuple(_number(w, "weight") for w in weights_raw)
    if any(not 0 <= w <= 1 for w in weights):
        raise errors.InvalidParameter("rank param weight should be in range [0, 1]")
    if len(weights) != n_requests:
        raise errors.InvalidParameter(
            f"the length of weights param mismatch with ann search requests: "
            f"invalid parameter[expected={n_requests}][actual={len(weights)}]")
    return Ranker("weighted", weights=weights, norm_score=True if norm_raw is None else _bool(norm_raw))


def ranker_from_rank_params(rank_params: dict[str, str], n_requests: int) -> Ranker:
    """The ranker named by a HybridSearchRequest's ``rank_params`` (pymilvus's RRFRanker / WeightedRanker:
    ``strategy`` and a JSON ``params``); RRF with k=60 when no strategy is given."""
    strategy = rank_params.get("strategy")
    if strategy is None:
        return Ranker("rrf")
    if strategy not in ("rrf", "weighted"):
        raise errors.InvalidParameter(f"unsupported rank type {strategy}")
    if "params" not in rank_params:
        raise errors.InvalidParameter("params not found in rank_params")
    try:
        params = json.loads(rank_params["params"])
    except (json.JSONDecodeError, RecursionError):
        raise errors.InvalidParameter(f"rank params is not valid JSON: {rank_params['params']}") from None
    if not isinstance(params, dict):
        raise errors.InvalidParameter(f"rank params must be a JSON object: {rank_params['params']}")
    if strategy == "rrf":
        if "k" not in params:
            raise errors.InvalidParameter("k not found in rank_params")
        return _rrf(params["k"])
    return _weighted(params.get("weights"), params.get("norm_score"), n_requests)


def ranker_from_function(name: str, params: dict[str, str], n_requests: int, schema: CollectionSchema,
                         inputs: list[str], zone: str = DEFAULT_ZONE) -> Ranker:
    """A reranking ``Function`` (pymilvus 2.6 ``function_score``): ``reranker`` "rrf", "weighted" or
    "decay" (over the ``inputs`` field), the parameters as text (lists as JSON)."""
    kind = params.get("reranker", "").lower()
    if kind == "decay":
        return Ranker("decay", decay=parse_decay(schema, inputs, params))
    if kind == "boost":
        return Ranker("boost", boost=parse_boost(schema, [(inputs, params)], {}, zone))
    if kind == "rrf":
        raw = params.get("k", str(DEFAULT_RRF_K))
        try:
            k = float(raw)
        except ValueError:
            raise errors.InvalidParameter(f"Param k:{raw} is not a number") from None
        return _rrf(k)
    if kind == "weighted":
        text = params.get("weights")
        try:
            weights = json.loads(text) if text is not None else None
        except (json.JSONDecodeError, RecursionError):
            raise errors.InvalidParameter(
                f"Parse weights param failed, weight should be []float, but got: {text}") from None
        return _weighted(weights, params.get("norm_score", "false"), n_requests)
    raise errors.OperationNotSupported(
        f"rerank function {name!r} ({kind or 'no reranker'}) is not supported; "
        "use rrf, weighted or decay (or boost, on a search)")


def _normalizer(metric: str, norm: bool, mixed: bool):
    m = metric.upper()
    if not norm:
        if not mixed or m in SIMILARITY_METRICS:
            return lambda s: s
        return lambda s: (1.0 - 2.0 * np.arctan(s.astype(np.float64)) / math.pi).astype(np.float32)
    if m == "COSINE":
        return lambda s: (1.0 + s) * np.float32(0.5)
    if m == "IP":
        return lambda s: (0.5 + np.arctan(s.astype(np.float64)) / math.pi).astype(np.float32)
    if m == "BM25":
        return lambda s: (2.0 * np.arctan(s.astype(np.float64)) / math.pi).astype(np.float32)
    return lambda s: (1.0 - 2.0 * np.arctan(s.astype(np.float64)) / math.pi).astype(np.float32)


def _contributions(ranker: Ranker, subs: list[SubResult]) -> tuple[list[np.ndarray], bool]:
    """Per request, the float32 score each of its hits adds; and whether larger fused scores are better."""
    if ranker.strategy == "rrf":
        out = []
        for sub in subs:
            ranks = np.concatenate([np.arange(1, t + 1) for t in sub.topks]) if sub.topks else np.empty(0)
            out.append((np.float32(1.0) / (np.float32(ranker.k) + ranks.astype(np.float32))).astype(np.float32))
        return out, True
    if ranker.strategy == "decay":  # larger is better; the decay applies once the best score is known
        return [_normalizer(sub.metric, False, True)(np.asarray(sub.scores, np.float32)) for sub in subs], True
    larger = [s.metric.upper() in SIMILARITY_METRICS for s in subs]
    mixed = any(larger) and not all(larger)
    out = []
    for w, sub in zip(ranker.weights, subs):
        norm = _normalizer(sub.metric, ranker.norm_score, mixed)
        out.append((np.float32(w) * norm(np.asarray(sub.scores, np.float32))).astype(np.float32))
    return out, ranker.norm_score or mixed or all(larger)


def fuse(ranker: Ranker, subs: list[SubResult], nq: int, limit: int, offset: int) -> Fused:
    """Fuse every query's hits of ``subs`` (one per ANN request, in request order)."""
    contrib, descending = _contributions(ranker, subs)
    starts = [np.concatenate([[0], np.cumsum(s.topks)]).astype(np.int64) for s in subs]
    topks: list[int] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for q in range(nq):
        pk_parts, score_parts, src_parts, pos_parts, value_parts = [], [], [], [], []
        for i, sub in enumerate(subs):
            lo, hi = int(starts[i][q]), int(starts[i][q + 1])
            pk_parts.append(sub.pks[lo:hi])
            if ranker.decay is not None:
                assert sub.values is not None  # the caller fetched the decay's field
                value_parts.append(sub.values[lo:hi])
            score_parts.append(contrib[i][lo:hi])
            src_parts.append(np.full(hi - lo, i, np.int64))
            pos_parts.append(np.arange(lo, hi, dtype=np.int64))
        pks = np.concatenate(pk_parts) if pk_parts else np.empty(0, np.int64)
        if not len(pks):
            topks.append(0)
            continue
        unique, first, inverse = np.unique(pks, return_index=True, return_inverse=True)
        if ranker.decay is not None:  # a key's best score, times the decay of its value
            total = np.full(len(unique), -np.inf, np.float32)
            np.maximum.at(total, inverse.ravel(), np.concatenate(score_parts))
            total *= ranker.decay.factors(np.concatenate(value_parts)[first]).astype(np.float32)
        else:
            total = np.zeros(len(unique), np.float32)
            np.add.at(total, inverse.ravel(), np.concatenate(score_parts))  # in request order, as Milvus adds
        # unique keys come sorted, so a stable sort on the score leaves ties in primary-key order
        order = np.argsort(-total if descending else total, kind="stable")[offset:offset + limit]
        where = first[order]
        parts.append((unique[order], total[order], np.concatenate(src_parts)[where],
                      np.concatenate(pos_parts)[where]))
        topks.append(len(order))
    if not parts:
        empty = np.empty(0, np.int64)
        pk_dtype = subs[0].pks.dtype if subs else np.int64
        return Fused(topks, np.empty(0, pk_dtype), np.empty(0, np.float32), empty, empty)
    return Fused(topks, *(np.concatenate([p[j] for p in parts]) for j in range(4)))


def function_ranker(request, n_requests: int, schema: CollectionSchema, zone: str = DEFAULT_ZONE) -> Ranker | None:
    """The ranker of a search or hybrid search request's ``function_score`` (pymilvus 2.6 ``ranker=``);
    None without one. ``zone``: the search's (a boost filter's TIMESTAMPTZ literals)."""
    functions = list(request.function_score.functions) if request.HasField("function_score") else []
    kinds = [next((kv.value.lower() for kv in fn.params if kv.key.lower() == "reranker"), "") for fn in functions]
    if "boost" in kinds:  # one or more boost functions, combined by the FunctionScore's modes
        if set(kinds) != {"boost"}:
            raise errors.InvalidParameter("boost functions cannot be combined with other rerank functions")
        return Ranker("boost", boost=parse_boost(
            schema, [(list(fn.input_field_names), {kv.key: kv.value for kv in fn.params}) for fn in functions],
            {kv.key: kv.value for kv in request.function_score.params}, zone))
    if len(functions) > 1:
        raise errors.OperationNotSupported("only one rerank function is supported in a search")
    if not functions:
        return None
    fn = functions[0]
    return ranker_from_function(fn.name, {kv.key: kv.value for kv in fn.params}, n_requests, schema,
                                list(fn.input_field_names), zone)


def fused_columns(fused: Fused, columns: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Each fused hit's output columns, taken from the request's ``columns`` (and the place in its
    result) where it was first seen."""
    out = {}
    for name in names:
        proto = next((c[name] for c in columns if name in c), None)
        if proto is None:
            continue
        col = np.empty((len(fused.pks),) + proto.shape[1:], proto.dtype)
        for i in np.unique(fused.sources).tolist():
            m = fused.sources == i
            col[m] = columns[i][name][fused.positions[m]]
        out[name] = col
    return out

"""The boost ranker (Milvus 2.6.2+: a ``Function`` of type RERANK with ``reranker: "boost"``, or several in a
``FunctionScore``, given to ``search`` as ``ranker=``): hits that match a function's filter have their score
changed by its weight, optionally times a seeded random number.

Milvus's rules (``internal/core/src/rescores``: ``Scorer.cpp``, ``Utils.h``, and
``exec/operator/RescoresNode.cpp``), followed here:

- A function: ``weight`` (a number, required), ``filter`` (a boolean expression; none: every hit
  matches), ``random_score`` (JSON: ``seed``, an integer, default 0; ``field``, an INT64 field whose value
  is hashed with the seed; none: the primary key stands in for Milvus's segment offset). Input fields
  must be empty.
- A matching hit's value from a function: ``weight``, or ``random * weight`` with random =
  MurmurHash3-x64 (Milvus's one-block variant) of (value, seed) mapped to [0, 1). The first function a
  hit matches sets its boost; each later one merges with ``function_mode``: "Multiply" (default) or "Sum".
- A hit with a boost: its raw score (distance or similarity, the metric's own) multiplied by it
  (``boost_mode`` "Multiply", the default) or added to it ("Sum"); hits no function matched keep theirs.
  Then each query's hits are re-sorted in the metric's direction (a weight below 1 promotes a hit under
  L2). Float32 math, as Milvus's.
- Milvus rescores each segment's top ``limit + offset`` hits; vecdb rescores the collection's best
  ``limit + offset`` (the same as Milvus with one segment). Ties keep the search's order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from vecdb import errors
from vecdb.expr import Filter, compile_filter
from vecdb.expr.local_time import localize_iso_literals
from vecdb.index.base import SIMILARITY_METRICS
from vecdb.schema import CollectionSchema, DataType
from vecdb.timestamptz import DEFAULT_ZONE

MODES = ("multiply", "sum")
_U64 = np.uint64
_C1, _C2 = _U64(0x87C37B91114253D5), _U64(0x4CF5AD432745937F)
_MANTISSA, _ONE_BITS = _U64((1 << 52) - 1), _U64(0x3FF << 52)


@dataclass(frozen=True)
class BoostFunction:
    """One boost function: ``weight`` on the hits ``flt`` matches (None: all), times a random number when
    ``random``; the random number hashes ``seed`` with ``field``'s value (None: the primary key)."""

    weight: float
    flt: Filter | None = None
    random: bool = False
    seed: int = 0
    field: str | None = None


@dataclass(frozen=True)
class Boost:
    functions: tuple[BoostFunction, ...]
    boost_mode: str = "multiply"
    function_mode: str = "multiply"

    @property
    def fields(self) -> list[str]:
        """The columns the functions read from each hit (filters' fields, random fields)."""
        names: list[str] = []
        for fn in self.functions:
            names += sorted(fn.flt.fields) if fn.flt is not None else []
            names += [fn.field] if fn.field is not None else []
        return list(dict.fromkeys(names))

    def boosts(self, pks: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each hit's boost (float32) and whether any function matched it."""
        n = len(pks)
        boost, has = np.zeros(n, np.float32), np.zeros(n, bool)
        for fn in self.functions:
            match = np.ones(n, bool) if fn.flt is None else np.asarray(fn.flt.evaluate(columns, n), bool)
            value = np.full(n, np.float32(fn.weight), np.float32)
            if fn.random:
                keys = pks if fn.field is None else columns[fn.field]
                value = random_scores(_hash_keys(keys), fn.seed).astype(np.float32) * np.float32(fn.weight)
            merged = boost * value if self.function_mode == "multiply" else boost + value
            boost = np.where(match, np.where(has, merged, value), boost).astype(np.float32)
            has |= match
        return boost, has

    def rescore(self, scores: np.ndarray, pks: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The hits' new float32 scores (their order unchanged)."""
        boost, has = self.boosts(pks, columns)
        scores = np.asarray(scores, np.float32)
        changed = scores * boost if self.boost_mode == "multiply" else scores + boost
        return np.where(has, changed, scores).astype(np.float32)


def random_scores(keys: np.ndarray, seed: int) -> np.ndarray:
    """Milvus's ``hash_to_double(MurmurHash3_x64_64_Special(key, seed))``: a float64 in [0, 1) per key."""
    h = _murmur_special(keys.astype(np.int64).view(_U64), _U64(seed & 0xFFFFFFFFFFFFFFFF))
    return ((h & _MANTISSA) | _ONE_BITS).view(np.float64) - 1.0


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _fmix(k: np.ndarray) -> np.ndarray:
    k = k ^ (k >> _U64(33))
    k = k * _U64(0xFF51AFD7ED558CCD)
    k = k ^ (k >> _U64(33))
    k = k * _U64(0xC4CEB9FE1A85EC53)
    return k ^ (k >> _U64(33))


def _murmur_special(key: np.ndarray, seed: np.uint64) -> np.ndarray:
    """MurmurHash3 x64-128 over one 16-byte block (key, seed), with h1 = key ^ seed and h2 = seed to
    start (Milvus's ``Murmur3.c``); its first 64 bits. uint64 math wraps, as C's."""
    with np.errstate(over="ignore"):
        h1, h2 = key ^ seed, np.full(len(key), seed, _U64)
        k1 = _rotl(key * _C1, 31) * _C2
        h1 = h1 ^ k1
        h1 = _rotl(h1, 27) + h2
        h1 = h1 * _U64(5) + _U64(0x52DCE729)
        k2 = _rotl(h2 * _C2, 33) * _C1
        h2 = h2 ^ k2
        h2 = _rotl(h2, 31) + h1
        h2 = h2 * _U64(5) + _U64(0x38495AB5)
        h1, h2 = h1 ^ _U64(16), h2 ^ _U64(16)
        h1 = h1 + h2
        h2 = h2 + h1
        h1, h2 = _fmix(h1), _fmix(h2)
        return h1 + h2


def _hash_keys(keys: np.ndarray) -> np.ndarray:
    """Integer keys as they are; strings (a VARCHAR primary key) folded to int64 by FNV-1a over their
    characters, one pass per character position over all keys at once."""
    if keys.dtype != object and keys.dtype.kind != "U":
        return keys.astype(np.int64)
    text = np.asarray(keys, dtype=str)
    width = max(text.dtype.itemsize // 4, 1)
    chars = text.view(np.uint32).reshape(len(text), -1) if len(text) else np.empty((0, width), np.uint32)
    h = np.full(len(text), 0xCBF29CE484222325, _U64)
    with np.errstate(over="ignore"):
        for j in range(chars.shape[1]):
            h = (h ^ chars[:, j].astype(_U64)) * _U64(0x100000001B3)
    return h.view(np.int64)


def rescored_rows(topks: list[int], scores: np.ndarray, metric: str, limit: int,
                  offset: int) -> tuple[list[int], np.ndarray]:
    """Each query's hits sorted by ``scores`` in ``metric``'s direction (ties: their order now), the
    first ``offset`` dropped and ``limit`` kept: the new topks and the rows, in output order."""
    qid = np.repeat(np.arange(len(topks)), topks)
    key = -scores if metric.upper() in SIMILARITY_METRICS else scores
    order = np.lexsort((key, qid))  # stable: by query, then score
    starts = np.concatenate([[0], np.cumsum(topks)[:-1]]).astype(np.int64) if topks else np.empty(0, np.int64)
    rank = np.arange(len(order)) - starts[qid[order]] if len(order) else np.empty(0, np.int64)
    keep = (rank >= offset) & (rank < offset + limit)
    new_topks = np.clip(np.asarray(topks, np.int64) - offset, 0, limit).tolist()
    return new_topks, order[keep]


def _function_mode(raw: dict[str, str], key: str) -> str:
    value = raw.get(key, "multiply").strip().lower()
    if value not in MODES:
        raise errors.InvalidParameter(f"unknown boost {key}: {raw[key]}, only support [Multiply, Sum]")
    return value


def _seed(raw) -> int:
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            pass
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise errors.InvalidParameter(f"parse boost random seed params failed: seed must be an integer, got {raw!r}")
    if not -(1 << 63) <= raw < 1 << 63:
        raise errors.InvalidParameter(f"parse boost random seed params failed: seed {raw} is out of int64 range")
    return raw


def _random(schema: CollectionSchema, text: str) -> tuple[int, str | None]:
    try:
        spec = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise errors.InvalidParameter(f"parse boost random_score params failed, not a JSON object: {text}") from None
    if not isinstance(spec, dict):
        raise errors.InvalidParameter(f"parse boost random_score params failed, not a JSON object: {text}")
    unknown = set(spec) - {"seed", "field"}
    if unknown:
        raise errors.InvalidParameter(
            f"unknown boost random_score params: {sorted(unknown)}, only support [seed, field]")
    seed = _seed(spec["seed"]) if "seed" in spec else 0
    name = spec.get("field")
    if name is None:
        return seed, None
    field = schema.field(name) if isinstance(name, str) else None
    if field is None:
        raise errors.InvalidParameter(f"boost random_score field not found: {name}")
    if field.dtype != DataType.INT64:
        raise errors.InvalidParameter(
            f"boost random_score field {name} is {field.dtype.name}: now only support int64 field as seed")
    return seed, field.name


def parse_boost_function(schema: CollectionSchema, inputs: list[str], raw: dict[str, str],
                         zone: str = DEFAULT_ZONE) -> BoostFunction:
    """One boost function from a Function's input fields and params (values as text, JSON for
    ``random_score``), checked (InvalidParameter). ``zone``: the search's, in which the filter's
    TIMESTAMPTZ literals without an offset are read (as the search's own filter reads them)."""
    params = {k.lower(): v for k, v in raw.items()}
    if inputs:
        raise errors.InvalidParameter(f"boost function does not take input fields, but got {inputs}")
    if "weight" not in params:
        raise errors.InvalidParameter("boost function lost param: weight")
    try:
        weight = float(params["weight"])
    except ValueError:
        raise errors.InvalidParameter(f"Param weight:{params['weight']} is not a number") from None
    if not np.isfinite(np.float32(weight)):
        raise errors.InvalidParameter(f"Param weight:{params['weight']} is not a finite float")
    expr = (params.get("filter") or "").strip()
    flt = compile_filter(localize_iso_literals(expr, zone), schema) if expr else None
    if "random_score" not in params:
        return BoostFunction(weight, flt)
    seed, field = _random(schema, params["random_score"])
    return BoostFunction(weight, flt, True, seed, field)


def parse_boost(schema: CollectionSchema, functions: list[tuple[list[str], dict[str, str]]],
                score_params: dict[str, str], zone: str = DEFAULT_ZONE) -> Boost:
    """A boost ranker from its functions' (input fields, params) and the FunctionScore's params
    (``boost_mode``, ``function_mode``)."""
    params = {k.lower(): v for k, v in score_params.items()}
    return Boost(tuple(parse_boost_function(schema, inputs, p, zone) for inputs, p in functions),
                 _function_mode(params, "boost_mode"), _function_mode(params, "function_mode"))

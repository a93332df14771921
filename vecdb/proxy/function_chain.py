"""Function chains on search (Milvus 3.0, pymilvus 3.0 ``search(..., function_chains=FunctionChain(...))``):
a small pipeline of operators run by the proxy over each query's hits, as columns (no gRPC here).

Milvus's rules (``internal/proxy/function_chain_rerank.go`` and ``internal/util/function/chain``),
followed here:

- A search takes one chain per stage; only ``FunctionChainStageL2Rerank`` (the proxy's rerank of the
  reduced hits) runs. The same stage twice: "function chain stage S appears more than once"; another
  stage: "function chain[i] stage S is not supported in search request" (L0/L1, query-node stages:
  "not supported by vecdb yet"); a chain without ops: "function chain[i] must contain at least one op".
  ``function_score`` (``ranker=``) with a chain: "function_score and function_chains cannot be used
  together".
- Columns: ``$id`` and ``$score`` (the hit's primary key and score, as the metric gives it: a
  distance for L2), the collection's scalar fields (BOOL, INT8..INT64, FLOAT, DOUBLE, VARCHAR, TEXT),
  read with the hits whether or not they are output fields, and the outputs of earlier ``map`` ops.
  Another ``$`` name: "system input ... is not supported by L2 rerank function chain"; only
  ``$score`` is writable; an unknown name: "function chain input "x" is neither a previous output
  nor a collection field"; a vector, JSON or ARRAY field: "... has unsupported field type T".
- Ops, each per query: ``map`` (one expression, one output column: a new column or one it replaces),
  ``sort`` (``column``, ``desc``, stable, ties broken by ``tie_break_col`` ascending; nulls are the
  smallest values), ``limit`` (``limit`` > 0, ``offset`` >= 0: rows ``[offset, offset + limit)``).
  Their params are read as Milvus's chain ``ParamReader`` reads them: ``limit`` / ``offset`` integers
  (a whole-number double is taken; 2.5: "parameter "limit" must be an integer, got 2.500000"),
  ``desc`` a bool ("yes": "parameter "desc" must be a bool"), not truncated or ignored.
  ``filter`` needs a boolean function and none of the chain functions is one; ``merge`` is
  refused on a search ("merge is not supported in ordinary search"), ``select`` / ``group_by``
  are not run by vecdb; an unknown op: "op[i]: unknown operator type: X".
- Functions (float64 math, a FLOAT result):
  ``decay(v; function gauss|exp|linear, origin, scale > 0, offset >= 0, decay in [0.001, 0.999])``:
  the decay factor of ``v`` (vecdb.proxy.decay's formulas; given a second column, that column times
  the factor, the older form);
  ``num_combine(c1, c2, ...; mode multiply|sum|max|min|avg|weighted, weights, null_policy
  propagate|as_zero|skip)``;
  ``round_decimal(v; decimal in [0, 6])``: ``floor(v * 10^d + 0.5) / 10^d``.
  ``xgboost`` and ``rerank_model`` need a model (a file resource, a provider): not run by vecdb.
  A null input gives a null output (num_combine: per its ``null_policy``); a null ``$score`` is
  returned as 0.
- The chain runs over each query's best ``limit + offset`` hits (the window vecdb's rerankers use);
  its result's order is the reply's (no sort is added), then the search's ``offset`` is dropped and
  ``limit`` kept; ``round_decimal`` of the search applies to the chain's scores. Output fields are
  the stored values (a map writing a field's name changes the chain's column, not the reply).
- Not with a search iterator, ``group_by_field``, ``order_by_fields`` or element-level search.

Hybrid search: Milvus 3.0 refuses chains there (pymilvus 3.0.2 refuses to send them); vecdb runs a
hybrid request's L2 chain over the fused hits of its ranker (``$score``: the fused score), with the
same window; a chain on an ANN request, or a ``merge`` op (Milvus's later chain-does-the-fusion
form), is refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from vecdb import errors
from vecdb.proxy.decay import Decay
from vecdb.querynode.executor import Hits
from vecdb.schema import CollectionSchema, DataType, valid_key

ID, SCORE = "$id", "$score"
L2 = schema_pb2.FunctionChainStageL2Rerank
_QUERY_NODE_STAGES = (schema_pb2.FunctionChainStageL0Rerank, schema_pb2.FunctionChainStageL1Rerank)
_READABLE = {DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
             DataType.DOUBLE, DataType.VARCHAR, DataType.TEXT}
_DECAY_FUNCTIONS = ("gauss", "exp", "linear")
_MODES = ("multiply", "sum", "max", "min", "avg", "weighted")
_NULL_POLICIES = ("propagate", "as_zero", "skip")
_NOT_RUN = {"xgboost": "an XGBoost model (a file resource)", "rerank_model": "a rerank model provider"}


def _stage(stage: int) -> str:
    try:
        return schema_pb2.FunctionChainStage.Name(stage)
    except ValueError:
        return str(stage)


def _param(value: schema_pb2.FunctionParamValue):
    """A FunctionParamValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_param(v) for v in value.array_value.values]
    if kind == "object_value":
        return {k: _param(v) for k, v in value.object_value.fields.items()}
    return None if kind is None else getattr(value, kind)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Expr:
    """A function over columns: ``name`` with its parameters (validated)."""

    name: str
    inputs: tuple[str, ...]
    params: dict


@dataclass(frozen=True)
class Op:
    kind: str  # "map", "sort" or "limit"
    expr: Expr | None = None
    output: str = ""
    column: str = ""
    desc: bool = False
    tie_break: str = ""
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class Chain:
    """A checked L2 rerank chain; ``fields``: the collection fields it reads (fetched with the hits)."""

    name: str
    ops: tuple[Op, ...]
    fields: tuple[str, ...]
    schema: CollectionSchema

    def fetch(self, fetch: list[str]) -> list[str]:
        """``fetch`` with the chain's fields (and nullable ones' validity masks) read too."""
        extra = []
        for name in self.fields:
            extra.append(name)
            field = self.schema.field(name)
            if field is not None and field.nullable:
                extra.append(valid_key(name))
        return list(dict.fromkeys(fetch + extra))


# --- parsing and checks -------------------------------------------------------------------------------


def _decay(params: dict, n_inputs: int) -> dict:
    if n_inputs not in (1, 2):
        raise errors.InvalidParameter(f"decay: expected 1 input column (or the column and a score), got {n_inputs}")
    function = params.get("function")
    if function is None:
        raise errors.InvalidParameter("decay: function is required")
    if function not in _DECAY_FUNCTIONS:
        raise errors.InvalidParameter(f"decay: invalid function {function!r}, must be one of [gauss, exp, linear]")
    out = {"function": function}
    for key, default in (("origin", None), ("scale", None), ("offset", 0.0), ("decay", 0.5)):
        raw = params.get(key, default)
        if raw is None:
            raise errors.InvalidParameter(f"decay: {key} is required")
        if not _is_number(raw) or not math.isfinite(raw):
            raise errors.InvalidParameter(f"decay: {key} must be a number, got {raw!r}")
        out[key] = float(raw)
    if out["scale"] <= 0:
        raise errors.InvalidParameter(f"decay: scale must be > 0, got {out['scale']:f}")
    if out["offset"] < 0:
        raise errors.InvalidParameter(f"decay: offset must be >= 0, got {out['offset']:f}")
    if not 0 < out["decay"] < 1:
        raise errors.InvalidParameter(f"decay: decay must be 0 < decay < 1, got {out['decay']:f}")
    if not 0.001 <= out["decay"] <= 0.999:
        raise errors.InvalidParameter(f"decay: decay must be between 0.001000 and 0.999000 for numerical "
                                      f"stability, got {out['decay']:f}")
    return out


def _num_combine(params: dict, n_inputs: int) -> dict:
    mode = params.get("mode", "") or "multiply"
    if mode not in _MODES:
        raise errors.InvalidParameter(f"num_combine: invalid mode {mode!r}, must be one of "
                                      "[multiply, sum, max, min, avg, weighted]")
    raw = params.get("weights")
    weights: list[float] = []
    if raw is not None:
        if not isinstance(raw, list) or not all(_is_number(w) for w in raw):
            raise errors.InvalidParameter("num_combine: weights must be an array of numbers")
        weights = [float(w) for w in raw]
    for i, w in enumerate(weights):
        if not math.isfinite(w):
            raise errors.InvalidParameter(f"num_combine: weight[{i}] must be finite, got {w}")
    if mode == "weighted" and not weights:
        raise errors.InvalidParameter("num_combine: weighted mode requires weights")
    policy = params.get("null_policy", "propagate")
    if policy not in _NULL_POLICIES:
        raise errors.InvalidParameter(f"num_combine: invalid null_policy {policy!r}, must be one of "
                                      "[propagate, as_zero, skip]")
    if n_inputs < 2:
        raise errors.InvalidParameter(f"num_combine: expected at least 2 input columns, got {n_inputs}")
    if mode == "weighted" and len(weights) != n_inputs:
        raise errors.InvalidParameter(f"num_combine: weighted mode requires {n_inputs} weights, got {len(weights)}")
    return {"mode": mode, "weights": weights, "null_policy": policy}


def _round_decimal(params: dict, n_inputs: int) -> dict:
    decimal = params.get("decimal")
    if not isinstance(decimal, int) or isinstance(decimal, bool):
        raise errors.InvalidParameter(f"round_decimal: decimal must be an integer, got {decimal!r}")
    if not 0 <= decimal <= 6:
        raise errors.InvalidParameter(f"round_decimal: decimal must be in range [0, 6], got {decimal}")
    if n_inputs != 1:
        raise errors.InvalidParameter(f"round_decimal: expected 1 input column, got {n_inputs}")
    return {"decimal": decimal}


_FUNCTIONS = {"decay": _decay, "num_combine": _num_combine, "round_decimal": _round_decimal}


def _expr(pb: schema_pb2.FunctionChainExpr) -> Expr:
    name = pb.name.strip()
    if not name:
        raise errors.InvalidParameter("expr name is empty")
    inputs = []
    for i, arg in enumerate(pb.args):
        kind = arg.WhichOneof("arg")
        if kind == "column":
            column = arg.column.name.strip()
            if not column:
                raise errors.InvalidParameter(f"expr arg[{i}]: column name is empty")
            inputs.append(column)
        elif kind == "literal":
            raise errors.InvalidParameter(f"expr arg[{i}]: literal arguments are not supported by {name}")
        else:
            raise errors.InvalidParameter(f"expr arg[{i}]: function chain expr arg is unset")
    if name in _NOT_RUN:
        raise errors.InvalidParameter(f"function {name} is not supported by vecdb: it needs {_NOT_RUN[name]}")
    check = _FUNCTIONS.get(name)
    if check is None:
        raise errors.InvalidParameter(f"function {name!r} not found, supported: [decay, num_combine, round_decimal]")
    params = check({k: _param(v) for k, v in pb.params.items()}, len(inputs))
    return Expr(name, tuple(inputs), params)


def _int(value, scope: str, key: str) -> int:
    """An integer op param as Milvus's chain ``ParamReader.Int64`` reads it: an int64, or a double
    that is a whole number (``limit`` 2.5 is refused, not cut to 2)."""
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise errors.InvalidParameter(f'{scope}: parameter "{key}" must be an integer, got {value:f}')
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidParameter(f'{scope}: parameter "{key}" must be an integer')
    return value


def _bool(value, scope: str, key: str) -> bool:
    """A bool op param as Milvus's chain ``ParamReader.Bool`` reads it: a bool, nothing else."""
    if not isinstance(value, bool):
        raise errors.InvalidParameter(f'{scope}: parameter "{key}" must be a bool')
    return value


def _op(pb: schema_pb2.FunctionChainOp, index: int, hybrid: bool) -> Op:
    kind = pb.op.strip()
    if not kind:
        raise errors.InvalidParameter(f"op[{index}]: op name is empty")
    params = {k: _param(v) for k, v in pb.params.items()}
    outputs = [o.strip() for o in pb.outputs]
    if any(not o for o in outputs):
        raise errors.InvalidParameter(f"op[{index}]: output name is empty")
    if kind == "map":
        if not pb.HasField("expr"):
            raise errors.InvalidParameter(f"op[{index}]: map operator requires function")
        expr = _expr(pb.expr)
        if not expr.inputs:
            raise errors.InvalidParameter(f"op[{index}]: map operator requires inputs")
        if len(outputs) != 1:
            raise errors.InvalidParameter(f"op[{index}]: map_op: output columns count ({len(outputs)}) must match "
                                          "function output types count (1)")
        return Op("map", expr=expr, output=outputs[0])
    if kind == "sort":
        column = params.get("column")
        if not isinstance(column, str) or not column.strip():
            raise errors.InvalidParameter(f"op[{index}]: sort_op: column is required")
        tie = params.get("tie_break_col", "")
        desc = _bool(params["desc"], f"op[{index}]: sort_op", "desc") if "desc" in params else False
        return Op("sort", column=column.strip(), desc=desc,
                  tie_break=tie.strip() if isinstance(tie, str) else "")
    if kind == "limit":
        if "limit" not in params:
            raise errors.InvalidParameter(f"op[{index}]: limit_op: limit is required")
        scope = f"op[{index}]: limit_op"
        limit, offset = _int(params["limit"], scope, "limit"), _int(params.get("offset", 0), scope, "offset")
        if limit <= 0:
            raise errors.InvalidParameter(f"op[{index}]: limit_op: limit must be positive")
        if offset < 0:
            raise errors.InvalidParameter(f"op[{index}]: limit_op: offset must be non-negative")
        return Op("limit", limit=limit, offset=offset)
    if kind == "filter":
        if pb.HasField("expr"):
            _expr(pb.expr)  # (its own errors first)
            raise errors.InvalidParameter(f"op[{index}]: filter_op: function must return boolean type, got float")
        raise errors.InvalidParameter(f"op[{index}]: filter_op: function is required")
    if kind == "merge":
        if hybrid:
            raise errors.InvalidParameter(f"function chain operator[{index}]: merge is not supported by vecdb yet: "
                                          "the hybrid search's ranker fuses the ANN requests, the chain reranks "
                                          "the fused hits")
        raise errors.InvalidParameter(f"function chain operator[{index}]: merge is not supported in ordinary search")
    if kind in ("select", "group_by"):
        raise errors.InvalidParameter(f"op[{index}]: operator {kind} is not supported by vecdb yet")
    raise errors.InvalidParameter(f"op[{index}]: unknown operator type: {kind}")


def _reads(op: Op) -> list[str]:
    if op.kind == "map":
        assert op.expr is not None
        return list(op.expr.inputs)
    if op.kind == "sort":
        return [op.column] + ([op.tie_break] if op.tie_break else [])
    return []


def _kind(dtype: DataType) -> str:
    """A readable field's kind: "number", "string" or "bool"."""
    return "bool" if dtype == DataType.BOOL else "string" if dtype in (DataType.VARCHAR, DataType.TEXT) else "number"


def _check_names(ops: list[Op], schema: CollectionSchema) -> tuple[str, ...]:
    """The collection fields ``ops`` read; Milvus's checks of every name read or written, and of the
    kinds of the columns each op reads (functions: numbers; sort: numbers or strings)."""
    kinds = {ID: _kind(schema.primary_field.dtype), SCORE: "number"}
    fields: list[str] = []
    for i, op in enumerate(ops):
        for name in _reads(op):
            if name.startswith("$") and name not in (ID, SCORE):
                raise errors.InvalidParameter(f"op[{i}] input {name!r}: system input {name!r} is not supported by "
                                              "L2 rerank function chain")
            if name in kinds:
                continue
            field = schema.field(name)
            if field is None:
                raise errors.InvalidParameter(f"function chain input {name!r} is neither a previous output nor a "
                                              "collection field")
            if field.dtype not in _READABLE:
                raise errors.InvalidParameter(f"function chain input {name!r} has unsupported field type "
                                              f"{_type_name(field.dtype)}")
            kinds[name] = _kind(field.dtype)
            fields.append(name)
        if op.kind == "map":
            assert op.expr is not None
            for j, name in enumerate(op.expr.inputs):
                if kinds[name] != "number":
                    raise errors.InvalidParameter(f"op[{i}]: {op.expr.name}: column {j} ({name!r}): unsupported "
                                                  f"input column type {kinds[name]}, expected numeric type")
            if op.output.startswith("$") and op.output != SCORE:
                raise errors.InvalidParameter(f"op[{i}] output {op.output!r}: system output {op.output!r} is not "
                                              "writable by L2 rerank function chain")
            kinds[op.output] = "number"
        elif op.kind == "sort" and kinds[op.column] == "bool":
            raise errors.InvalidParameter(f"op[{i}]: sort_op: column {op.column} has non-comparable type bool")
    return tuple(fields)


def _type_name(dtype: DataType) -> str:
    try:
        return schema_pb2.DataType.Name(int(dtype))
    except ValueError:
        return dtype.name


def parse_chains(request, schema: CollectionSchema, hybrid: bool = False) -> Chain | None:
    """The L2 rerank chain of a search (or, ``hybrid``, a hybrid search) request; None without one."""
    chains = list(request.function_chains)
    if not chains:
        return None
    if request.HasField("function_score"):
        raise errors.InvalidParameter("function_score and function_chains cannot be used together")
    seen: set[int] = set()
    found: Chain | None = None
    for i, pb in enumerate(chains):
        stage = pb.stage
        if stage in seen:
            raise errors.InvalidParameter(f"function chain stage {_stage(stage)} appears more than once")
        seen.add(stage)
        if stage in _QUERY_NODE_STAGES:
            raise errors.InvalidParameter(f"function chain[{i}] stage {_stage(stage)} is not supported by vecdb yet "
                                          "(query-node rerank stages); use FunctionChainStageL2Rerank")
        if stage != L2:
            raise errors.InvalidParameter(f"function chain[{i}] stage {_stage(stage)} is not supported in search "
                                          "request")
        if not pb.ops:
            raise errors.InvalidParameter(f"function chain[{i}] must contain at least one op")
        try:
            ops = [_op(op, j, hybrid) for j, op in enumerate(pb.ops)]
            fields = _check_names(ops, schema)
        except errors.InvalidParameter as e:
            raise errors.InvalidParameter(f"function chain[{i}]: {e.message}") from None
        found = Chain(pb.name, tuple(ops), fields, schema)
    return found


def refuse_with(plan, element_level: bool, aggregation: bool = False) -> None:
    """The search features a chain does not combine with in vecdb."""
    if aggregation:
        raise errors.InvalidParameter("function_chains cannot be combined with search_aggregation")
    if element_level:
        raise errors.InvalidParameter(f"function_chains are not supported with element-level search "
                                      f"(field {plan.field.name})")
    if plan.iterator or plan.group is not None or plan.order:
        raise errors.InvalidParameter("function_chains cannot be combined with a search iterator, group_by_field "
                                      "or order_by_fields")


# --- running ------------------------------------------------------------------------------------------


@dataclass
class _Col:
    values: np.ndarray
    valid: np.ndarray | None = None  # None: no nulls

    def numeric(self) -> np.ndarray:
        return self.values.astype(np.float64)


def _and(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return b if a is None else a if b is None else a & b


def _eval(expr: Expr, cols: dict[str, _Col]) -> _Col:
    ins = [cols[n] for n in expr.inputs]
    p = expr.params
    if expr.name == "decay":
        # the decay reranker's factors (vecdb.proxy.decay), over the column instead of a field
        out = Decay("", p["function"], p["origin"], p["scale"], p["offset"], p["decay"]).factors(ins[0].numeric())
        valid = ins[0].valid
        if len(ins) == 2:  # (the older form: the score times the factor)
            out = out * ins[1].numeric()
            valid = _and(valid, ins[1].valid)
        return _Col(out.astype(np.float32), valid)
    if expr.name == "round_decimal":
        m = 10.0 ** p["decimal"]
        x = ins[0].numeric()
        return _Col((np.floor(x * m + 0.5) / m).astype(np.float32), ins[0].valid)
    return _combine(p, [c.numeric() for c in ins], [c.valid for c in ins])


def _combine(p: dict, xs: list[np.ndarray], valids: list[np.ndarray | None]) -> _Col:
    n = len(xs[0])
    x = np.stack(xs, axis=1) if n else np.empty((0, len(xs)))
    v = np.stack([np.ones(n, bool) if m is None else m for m in valids], axis=1) if n else np.empty((0, len(xs)), bool)
    mode, policy = p["mode"], p["null_policy"]
    weights = np.asarray(p["weights"], np.float64) if mode == "weighted" else np.ones(len(xs))
    if policy == "propagate":
        valid = v.all(axis=1)
    elif policy == "as_zero":
        x, valid = np.where(v, x, 0.0), np.ones(n, bool)
        v = np.ones_like(v)
    else:  # skip: the row's valid inputs only (none: null)
        valid = v.any(axis=1)
    if mode == "multiply":
        out = np.where(v, x, 1.0).prod(axis=1)
    elif mode == "sum":
        out = np.where(v, x, 0.0).sum(axis=1)
    elif mode == "weighted":
        out = np.where(v, x * weights, 0.0).sum(axis=1)
    elif mode == "max":
        out = np.where(v, x, -np.inf).max(axis=1)
    elif mode == "min":
        out = np.where(v, x, np.inf).min(axis=1)
    else:  # avg
        out = np.where(v, x, 0.0).sum(axis=1) / np.maximum(v.sum(axis=1), 1)
    valid = np.asarray(valid, bool)
    out = np.where(valid, out, 0.0)
    return _Col(out.astype(np.float32), None if valid.all() else valid)


def _ranks(col: _Col) -> np.ndarray:
    """Each value's rank among the column's (equal values equal ranks); a null ranks below all."""
    values = col.values
    if values.dtype == object:
        values = np.asarray([str(v) for v in values], dtype=object) if len(values) else values
    ranks = np.unique(values, return_inverse=True)[1].ravel().astype(np.int64) if len(values) else \
        np.empty(0, np.int64)
    return ranks if col.valid is None else np.where(col.valid, ranks, -1)


def _comparable(col: _Col) -> bool:
    return col.values.dtype.kind in "iuf" or col.values.dtype == object


def _sort(op: Op, cols: dict[str, _Col], qid: np.ndarray) -> np.ndarray:
    key = _ranks(cols[op.column])
    keys = [-key if op.desc else key, qid]
    tie = cols.get(op.tie_break) if op.tie_break else None
    if tie is not None and _comparable(tie):  # (Milvus ignores a non-comparable tie-break column)
        keys.insert(0, _ranks(tie))
    return np.lexsort(keys)  # stable: by query, the column, then the tie-break


def _positions(qid: np.ndarray, nq: int) -> np.ndarray:
    """Each row's position among its query's rows (rows grouped by query, in order)."""
    counts = np.bincount(qid, minlength=nq)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(len(qid)) - starts[qid]


def run(chain: Chain, topks, pks: np.ndarray, scores: np.ndarray,
        columns: dict[str, np.ndarray]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``chain`` over the hits of every query (``topks[i]`` consecutive hits of query ``i``): the new
    topks, the rows of the input hits kept (in their new order) and their scores."""
    nq = len(topks)
    qid = np.repeat(np.arange(nq), np.asarray(topks, np.int64))
    cols: dict[str, _Col] = {ID: _Col(np.asarray(pks)), SCORE: _Col(np.asarray(scores, np.float32))}
    for name in chain.fields:
        cols[name] = _Col(np.asarray(columns[name]), columns.get(valid_key(name)))
    rows = np.arange(len(qid))
    for op in chain.ops:
        if op.kind == "map":
            assert op.expr is not None
            cols[op.output] = _eval(op.expr, cols)
            continue
        if op.kind == "sort":
            order = _sort(op, cols, qid)
        else:
            pos = _positions(qid, nq)
            order = np.flatnonzero((pos >= op.offset) & (pos < op.offset + op.limit))
        rows, qid = rows[order], qid[order]
        cols = {k: _Col(c.values[order], None if c.valid is None else c.valid[order]) for k, c in cols.items()}
    score = cols[SCORE]
    out = score.values.astype(np.float32)
    if score.valid is not None:
        out = np.where(score.valid, out, np.float32(0))
    return np.bincount(qid, minlength=nq).tolist(), rows, out


def page(topks: list[int], limit: int, offset: int) -> tuple[list[int], np.ndarray]:
    """Each query's rows ``[offset, offset + limit)``: the new topks and the rows kept."""
    qid = np.repeat(np.arange(len(topks)), np.asarray(topks, np.int64))
    pos = _positions(qid, len(topks))
    keep = np.flatnonzero((pos >= offset) & (pos < offset + limit))
    return np.bincount(qid[keep], minlength=len(topks)).tolist(), keep


def rerun(chain: Chain, hits: Hits, limit: int, offset: int, names: list[str]) -> Hits:
    """``hits`` (each query's best ``limit + offset``) through ``chain``, then the page ``[offset,
    offset + limit)`` of each query's result; the columns those of ``names``."""
    topks, rows, scores = run(chain, hits.topks, hits.pks, hits.scores, hits.columns)
    topks, keep = page(topks, limit, offset)
    rows, scores = rows[keep], scores[keep]
    return Hits(topks, hits.pks[rows], scores, {k: v[rows] for k, v in hits.columns.items() if k in names})


def chained_hits(svc, info, spec, plan, parts, chain: Chain) -> Hits:
    """A search's hits through its function chain: each query's best ``limit + offset`` hits with the
    columns the chain reads, the chain run, then the search's page."""
    wide = dataclasses.replace(spec, limit=plan.limit + plan.offset, offset=0)
    hits = svc.r.querynode.search(info, wide, parts, chain.fetch(plan.fetch))
    return rerun(chain, hits, plan.limit, plan.offset, plan.fetch)


def refuse_on_ann_request(sub) -> None:
    """A chain on one ANN request of a hybrid search (Milvus's later nested L0/L1 chains): not run."""
    if len(sub.function_chains):
        raise errors.InvalidParameter("function_chains on an ANN request of a hybrid search are not supported by "
                                      "vecdb yet: give the chain to the hybrid search")


def refuse_in_hybrid(group: bool, element_level: bool) -> None:
    if group or element_level:
        raise errors.InvalidParameter("function_chains cannot be combined with group_by_field or element-level "
                                      "ANN requests in a hybrid search")


def rerun_fused(chain: Chain, topks, pks: np.ndarray, scores: np.ndarray, columns: dict[str, np.ndarray],
                limit: int, offset: int) -> tuple[list[int], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A hybrid search's fused hits (each query's best ``limit + offset``) through ``chain``, then the page."""
    hits = rerun(chain, Hits(list(topks), pks, scores, columns), limit, offset, list(columns))
    return hits.topks, hits.pks, hits.scores, hits.columns

"""The decay reranker (Milvus 2.6: a ``Function`` of type RERANK with ``reranker: "decay"``, given to
``search`` or ``hybrid_search`` as ``ranker=``): a hit's score is multiplied by how far a numeric
field's value is from an ``origin``.

Milvus's rules (``internal/util/function/rerank/decay_function.go``), followed here: one input field,
INT8..INT64, FLOAT or DOUBLE; ``function`` "gauss", "exp" or "linear"; ``origin`` and ``scale`` (> 0)
required, ``offset`` (>= 0, default 0) and ``decay`` (in (0, 1), default 0.5). With ``d`` =
``max(0, |value - origin| - offset)``:

- gauss: ``exp(ln(decay) * d^2 / scale^2)``
- exp: ``exp(ln(decay) * d / scale)``
- linear: ``max(decay, 1 - (1 - decay) * d / scale)``

so a value ``scale`` past the offset keeps ``decay`` of its score. Scores are first made larger-is-
better (distances: ``1 - 2 atan(d) / pi``); a key several requests returned keeps its best one. A
null value of a nullable field decays its hit's score to 0 (Milvus 3.0's decay chain: a null decay
factor combines as zero, ``ScoreCombineNullAsZero``), so such hits sink below every valued one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vecdb import errors
from vecdb.schema import CollectionSchema, DataType, valid_key

FUNCTIONS = ("gauss", "linear", "exp")
_NUMERIC = {DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT, DataType.DOUBLE}


@dataclass(frozen=True)
class Decay:
    field: str
    function: str
    origin: float
    scale: float
    offset: float = 0.0
    decay: float = 0.5
    nullable: bool = False

    def factors(self, values: np.ndarray) -> np.ndarray:
        """The multiplier of each value (float64 math, as Milvus's); NaN (a null, ``values_of``): 0."""
        d = np.maximum(0.0, np.abs(values.astype(np.float64) - self.origin) - self.offset)
        if self.function == "gauss":
            out = np.exp(math.log(self.decay) * d * d / (self.scale * self.scale))
        elif self.function == "exp":
            out = np.exp(math.log(self.decay) * d / self.scale)
        else:
            out = np.maximum(self.decay, 1.0 - (1.0 - self.decay) / self.scale * d)
        return np.nan_to_num(out, nan=0.0)

    def fetch(self, fetch: list[str]) -> list[str]:
        """``fetch`` with the field (and a nullable one's validity mask) read too."""
        names = [self.field, valid_key(self.field)] if self.nullable else [self.field]
        return [*fetch, *[n for n in names if n not in fetch]]

    def values_of(self, columns: dict) -> np.ndarray | None:
        """The field's value of each hit (``columns``, read with ``fetch``), a null one as NaN."""
        col = columns.get(self.field)
        valid = columns.get(valid_key(self.field))
        if col is None or valid is None or bool(np.all(valid)):
            return col
        out = col.astype(np.float64)
        out[~np.asarray(valid, bool)] = np.nan
        return out


def fetched(decay: Decay | None, fetch: list[str]) -> list[str]:
    """What a search reads for ``fetch`` with ``decay`` (a decay ranker's field too; none: ``fetch``)."""
    return fetch if decay is None else decay.fetch(fetch)


def _number(params: dict[str, str], key: str) -> float | None:
    raw = params.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise errors.InvalidParameter(f"Param {key}:{raw} is not a number") from None
    if not math.isfinite(value):
        raise errors.InvalidParameter(f"Param {key}:{raw} is not a number")
    return value


def parse_decay(schema: CollectionSchema, inputs: list[str], raw: dict[str, str]) -> Decay:
    """A decay reranker from a Function's input fields and params (keys in any case), checked as
    Milvus does (InvalidParameter)."""
    params = {k.lower(): v for k, v in raw.items()}
    if len(inputs) != 1:
        raise errors.InvalidParameter(f"Decay function only supports single input, but gets {inputs} input")
    field = schema.field(inputs[0])
    if field is None:
        raise errors.InvalidParameter(f"Function input field not found: {inputs[0]}")
    if field.dtype not in _NUMERIC:
        raise errors.InvalidParameter(
            f"Decay rerank: unsupported input field type:{field.dtype.name}, only support numberic field")
    origin, scale = _number(params, "origin"), _number(params, "scale")
    offset, decay = _number(params, "offset"), _number(params, "decay")
    if origin is None:
        raise errors.InvalidParameter("Decay function lost param: origin")
    if scale is None:
        raise errors.InvalidParameter("Decay function lost param: scale")
    if scale <= 0:
        raise errors.InvalidParameter(f"Decay function param: scale must > 0, but got {scale:f}")
    offset = 0.0 if offset is None else offset
    if offset < 0:
        raise errors.InvalidParameter(f"Decay function param: offset must >= 0, but got {offset:f}")
    decay = 0.5 if decay is None else decay
    if not 0 < decay < 1:
        raise errors.InvalidParameter(f"Decay function param: decay must 0 < decay < 1, but got {decay:f}")
    function = params.get("function", "")
    if function not in FUNCTIONS:
        raise errors.InvalidParameter(f"Invalid decay function: {function}, only support [{','.join(FUNCTIONS)}]")
    return Decay(field.name, function, origin, scale, offset, decay, field.nullable)

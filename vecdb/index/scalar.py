"""Scalar indexes: INVERTED, BITMAP, STL_SORT, Trie (and AUTOINDEX on a scalar field).

``validate_scalar_index`` accepts an index type on exactly the field types Milvus 2.6 allows
(``internal/util/indexparamcheck``) and refuses the rest with Milvus's message (1100):

- STL_SORT: numeric, VARCHAR and TIMESTAMPTZ fields (Milvus 2.5: numeric only; 2.6 added the others);
- Trie: VARCHAR only;
- BITMAP: BOOL, integers, VARCHAR and ARRAY of those; never the primary key;
- INVERTED: BOOL, numeric, VARCHAR, TIMESTAMPTZ, ARRAY and JSON (JSON with ``json_cast_type`` and
  ``json_path``);
- RTREE: GEOMETRY only (Milvus 2.6.4), and no other type on a GEOMETRY field but AUTOINDEX. It is
  taken and described, and builds nothing: spatial filters scan the segment's cached shapely
  geometries (vecdb.geometry), whose prepared query geometry does the pruning an R-tree would;
- NGRAM: VARCHAR, and JSON with ``json_cast_type`` VARCHAR (Milvus 2.6: an n-gram index for
  ``like``), ``min_gram`` and ``max_gram`` integers with 1 <= min <= max. Built per sealed segment as
  n-gram posting lists (vecdb.index.ngram), which ``like`` filters read (vecdb.expr.ngram_like);
- AUTOINDEX: any scalar field (Milvus picks a scalar index itself).

What one is used for (``SortedIndex``): a sealed segment's column, sorted once (its values and
the row ids in that order), answers ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against a
constant and ``in [...]`` on the indexed field with ``np.searchsorted`` instead of comparing every
row: one binary search per bound and a scatter of the matching row ids. It is built when a sealed
segment is loaded or sealed on a query node (``vecdb.querynode.node``) for every BOOL, numeric or
VARCHAR field with a scalar index, nullable ones too (``accelerates``), whichever of the four types it
is (the answer is the same: the index only pays for it). An ARRAY field's index is
vecdb.index.array_elements', a JSON field's INVERTED index on a path vecdb.index.json_path's.
Results equal the scan's: searchsorted and the comparison cast the constant the same way (NumPy 2's
rules: a Python float against a FLOAT column is compared as float32, against an integer column as
float64).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.schema import DataType, FieldSchema

SCALAR_INDEX_TYPES = ("INVERTED", "BITMAP", "STL_SORT", "Trie", "RTREE", "NGRAM", "AUTOINDEX")
_ATOI = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi takes
JSON_CAST_TYPES = ("BOOL", "DOUBLE", "VARCHAR", "ARRAY_BOOL", "ARRAY_DOUBLE", "ARRAY_VARCHAR", "JSON")


def _type_name(dtype: DataType) -> str:
    """The data type as Milvus's messages name it (``VarChar``, ``Float``, ``JSON``)."""
    try:
        return schema_pb2.DataType.Name(int(dtype))
    except ValueError:
        return dtype.name


def _bitmap_ok(dtype: DataType) -> bool:
    return dtype == DataType.BOOL or dtype.is_integer or dtype == DataType.VARCHAR


def validate_scalar_index(index_type: str, field: FieldSchema, params: dict) -> str:
    """The canonical index type (``Trie`` for any spelling of it), or InvalidParameter."""
    t = "Trie" if index_type.upper() == "TRIE" else index_type.upper()
    dt = field.dtype
    if dt == DataType.TEXT:  # Milvus 3.0: its only index is the match index enable_match keeps
        raise InvalidParameter(f"TEXT field does not support user-created scalar index, field: {field.name}")
    if t not in SCALAR_INDEX_TYPES:
        raise InvalidParameter(f"index type {index_type} is not supported for scalar field {field.name}")
    if t == "STL_SORT":
        if not (dt.is_numeric or dt in (DataType.VARCHAR, DataType.TIMESTAMPTZ)):
            raise InvalidParameter(
                f"STL_SORT are only supported on numeric, varchar or timestamptz field, got {_type_name(dt)}")
    elif t == "RTREE":  # Milvus 2.6.4's rtree_checker.go
        if dt != DataType.GEOMETRY:
            raise InvalidParameter(f"RTREE index can only be built on geometry field, got {_type_name(dt)}")
    elif t == "Trie":
        if dt != DataType.VARCHAR:
            raise InvalidParameter("TRIE are only supported on varchar field")
    elif t == "BITMAP":
        if field.is_primary:
            raise InvalidParameter("create bitmap index on primary key not supported")
        if not (_bitmap_ok(dt) or dt == DataType.ARRAY):
            raise InvalidParameter("bitmap index are only supported on bool, int, string and array field")
        if dt == DataType.ARRAY and not _bitmap_ok(field.element_type):
            raise InvalidParameter("bitmap index are only supported on bool, int, string for array field")
    elif t == "NGRAM":  # Milvus 2.6's ngram_index_checker.go, its order and words
        _check_ngram(dt, params)
    elif t == "INVERTED":
        if not (dt == DataType.BOOL or dt.is_numeric
                or dt in (DataType.VARCHAR, DataType.ARRAY, DataType.JSON, DataType.TIMESTAMPTZ)):
            raise InvalidParameter(f"INVERTED are not supported on {_type_name(dt)} field")
    if dt == DataType.JSON and t != "AUTOINDEX":
        cast = params.get("json_cast_type")
        if cast is None:
            raise InvalidParameter("json index must specify cast type: missing parameter[json_cast_type]")
        if str(cast).upper() not in JSON_CAST_TYPES:
            raise InvalidParameter(f"json_cast_type {cast} is not supported")
        if "json_path" not in params:
            raise InvalidParameter("json index must specify json path: missing parameter[json_path]")
    return t


def _check_ngram(dt: DataType, params: dict) -> None:
    if dt not in (DataType.VARCHAR, DataType.JSON):
        raise InvalidParameter("Ngram index can only be created on VARCHAR or JSON field")
    if dt == DataType.JSON:
        cast = params.get("json_cast_type")
        if cast is None:
            raise InvalidParameter("JSON field with ngram index must specify json_cast_type")
        if str(cast).strip().upper() != "VARCHAR":
            raise InvalidParameter(f"JSON field with ngram index only supports VARCHAR cast type, got: "
                                   f"{str(cast).strip().upper()}")
    if "min_gram" not in params or "max_gram" not in params:
        raise InvalidParameter("Ngram index must specify both min_gram and max_gram")
    grams = []
    for key in ("min_gram", "max_gram"):
        raw = str(params[key])
        if not _ATOI.fullmatch(raw):
            raise InvalidParameter(f"{key} for Ngram index must be an integer, got: {raw}")
        grams.append(int(raw))
    lo, hi = grams
    if lo <= 0 or hi <= 0 or lo > hi:
        raise InvalidParameter(f"invalid min_gram or max_gram value for Ngram index, min_gram: {lo}, max_gram: {hi}")


def accelerates(field: FieldSchema) -> bool:
    """Whether a scalar index on ``field`` is served by a ``SortedIndex`` (else filters scan). A nullable
    field's null rows are sorted with their placeholder (0, false, ""), as the scan compares them: every
    predicate reading the field is ANDed with its validity mask (vecdb.expr.compiler), either way."""
    dt = field.dtype
    return dt == DataType.BOOL or dt.is_numeric or dt in (DataType.VARCHAR, DataType.TIMESTAMPTZ)


BROAD = 16  # a numeric comparison scattering more than n/BROAD rows scans instead

_SIDES: dict[str, tuple[Literal["left", "right"], bool]] = {
    "<": ("left", False), "<=": ("right", False), ">": ("right", True), ">=": ("left", True)}


class SortedIndex:
    """A column's values sorted (``values``) with their row ids (``order``); ``n`` rows."""

    __slots__ = ("values", "order", "n")

    def __init__(self, column: np.ndarray):
        col = np.asarray(column)
        self.n = len(col)
        self.order = np.argsort(col, kind="stable").astype(np.int64 if self.n > 2**31 - 1 else np.int32)
        self.values = col[self.order]

    @property
    def nbytes(self) -> int:
        return int(self.order.nbytes + (self.values.nbytes if self.values.dtype != object else 0))

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        res = np.zeros(self.n, dtype=bool)
        if hi > lo:
            res[self.order[lo:hi]] = True
        return res

    def cast(self, value):
        """``value`` as a comparison with the column casts it (0.1 or 16777217 against a FLOAT column)."""
        v = self.values
        if v.dtype != object and (np.result_type(v.dtype, value) == v.dtype or
                                  (v.dtype == np.float32 and isinstance(value, np.integer))):
            return v.dtype.type(value)
        return value

    def bounds(self, op: str, value) -> tuple[int, int]:
        """The positions of ``values`` holding ``value`` (``==``, ``!=``: the run of equal values) or on
        ``op``'s side of it (an ordering), ``value`` cast already."""
        v = self.values
        if op in ("==", "!="):
            return int(np.searchsorted(v, value, "left")), int(np.searchsorted(v, value, "right"))
        side, upper = _SIDES[op]
        cut = int(np.searchsorted(v, value, side))
        return (cut, len(v)) if upper else (0, cut)

    def compare(self, op: str, value) -> np.ndarray | None:
        """Rows where ``column op value`` (the column on the left); None where a scan is cheaper: a
        numeric column where more than ``1/BROAD`` of the rows would be scattered (a comparison of a
        numeric column is one vectorised pass; scattering random row ids costs more per row). The
        side of a range with fewer rows is the one scattered (then inverted)."""
        lo, hi = self.bounds(op, self.cast(value))
        invert = op == "!="
        if op not in ("==", "!=") and hi - lo > self.n // 2:  # scatter the smaller side (a range ends at an end)
            lo, hi = (hi, self.n) if lo == 0 else (0, lo)
            invert = True
        if self.values.dtype != object and (hi - lo) * BROAD > self.n:
            return None
        res = self._rows(lo, hi)
        if invert:
            np.logical_not(res, out=res)
        return res

    def isin(self, values: np.ndarray) -> np.ndarray:
        """Rows whose value is one of ``values``."""
        v = self.values
        if len(values) == 0 or self.n == 0:
            return np.zeros(self.n, dtype=bool)
        lo = np.searchsorted(v, values, "left")
        hi = np.searchsorted(v, values, "right")
        keep = hi > lo
        lo, hi = lo[keep], hi[keep]
        res = np.zeros(self.n, dtype=bool)
        if len(lo):
            lengths = hi - lo
            # positions lo[i] .. hi[i]-1 for every i, without a Python loop
            starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
            res[self.order[starts + np.arange(int(lengths.sum()))]] = True
        return res


def kept_index(seg, slot: str, key, build=None):
    """The index of ``key`` kept on sealed segment ``seg`` under ``slot`` (a kind of index); with
    ``build`` (made of ``key``), built once if it is not there or covers fewer rows than ``seg``."""
    cache = seg.__dict__.setdefault(slot, {}) if build is not None else seg.__dict__.get(slot, {})
    idx = cache.get(key)
    if build is not None and (idx is None or idx.n != seg.n):
        idx = cache[key] = build(key)
    return idx


def segment_scalar_index(seg, name: str) -> SortedIndex | None:
    """The index kept on sealed segment ``seg`` for column ``name``, if built."""
    return kept_index(seg, "_scalar_indexes", name)


def build_segment_scalar_index(seg, name: str) -> SortedIndex:
    """Build (once) and keep the index of a sealed segment's column ``name``."""
    return kept_index(seg, "_scalar_indexes", name, lambda k: SortedIndex(seg.column(k)))

"""Create an index from (validated) parameters, or load one from its file."""

from __future__ import annotations

from vecdb.errors import IoFailed
from vecdb.index.base import MINHASH_METRIC, VectorIndex
from vecdb.index.binary import BinaryIndex
from vecdb.index.faiss_index import FaissIndex
from vecdb.index.gpu import create_gpu_index
from vecdb.index.index_file import read_index_file, read_meta
from vecdb.index.minhash import MinHashIndex
from vecdb.index.nullable import index_valid_rows, split_saved, wrap_saved
from vecdb.index.params import index_spec, validate_index_params
from vecdb.schema import DataType


def create_index(
    index_type: str, metric_type: str, dim: int, params: dict, vector_type: DataType
) -> VectorIndex:
    """Validate the build parameters (AUTOINDEX resolved) and return an empty index.

    ``params`` may be raw user params or the output of validate_index_params.
    GPU types raise IndexNotSupported when no GPU is available.
    """
    p = validate_index_params(index_type, metric_type, vector_type, dim, params)
    itype, metric = p.pop("index_type"), p.pop("metric_type")
    spec = index_spec(itype)
    if spec.gpu:
        return create_gpu_index(itype, metric, dim, p, vector_type)
    if metric == MINHASH_METRIC:  # MINHASH_LSH, or BIN_FLAT searched exactly
        return MinHashIndex(itype, metric, dim, p, vector_type)
    if spec.binary:
        return BinaryIndex(itype, metric, dim, p, vector_type)
    return FaissIndex(itype, metric, dim, p, vector_type)


def load_index(path: str, mmap: bool = False) -> VectorIndex:
    """Load an index written by ``save``; ``mmap`` maps vectors/lists instead of reading them (read-only).
    A file built over a nullable vector field's valid rows comes back as that ``ValidRowsIndex``; one
    without (every file written before those, placeholders included) as the plain index it holds.
    A DISKANN file is always mapped: its vectors and graph stay on disk (vecdb.index.faiss_quantized)."""
    meta = read_meta(path)
    mmap = mmap or meta.get("index_type") == "DISKANN"
    meta, index, arrays = read_index_file(path, mmap=mmap, meta=meta)
    rows, n = split_saved(meta, arrays)
    return wrap_saved(_load_inner(path, meta, index, arrays, mmap), rows, n, mmap)


def _load_inner(path: str, meta: dict, index, arrays: dict, mmap: bool) -> VectorIndex:
    if meta.get("kind") == "faiss":
        return FaissIndex.from_saved(meta, index, mmap)
    if meta.get("kind") == "binary":
        return BinaryIndex.from_saved(meta, index, arrays, mmap)
    if meta.get("kind") == "minhash":
        return MinHashIndex.from_saved(meta, arrays, mmap)
    if meta.get("kind") == "gpu":
        from vecdb.index.gpu import gpu_index_from_saved  # noqa: PLC0415 - CuPy only when needed

        return gpu_index_from_saved(meta, arrays)
    raise IoFailed(f"{path}: unknown index kind {meta.get('kind')!r}")


def new_index(idx, field, vectors, valid=None, growing: bool = False) -> VectorIndex:
    """A built index of ``field`` as ``idx`` (the catalog's IndexInfo) describes it, over ``vectors``.

    ``valid`` is a nullable vector field's validity mask over the rows: the null rows' placeholders
    stay out of the index, as in Milvus (``vecdb.index.nullable``); ``growing`` wraps even when no row
    is null yet (a growing index, whose later rows may be)."""
    import numpy as np

    index = create_index(idx.index_type, idx.metric_type, field.dim, idx.params, field.dtype)
    return index_valid_rows(index, np.ascontiguousarray(vectors), valid, always=growing)

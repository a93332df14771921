"""The index layer: one interface over every Milvus 2.3 index type.

See ``VectorIndex`` (base.py) for the rules all indexes follow, ``params.py``
for parameter checks, ``bruteforce.py`` for the exact reference.
"""

from vecdb.index.base import VectorIndex, check_range_params, is_similarity
from vecdb.index.bruteforce import brute_force_range, brute_force_search
from vecdb.index.factory import create_index, load_index, new_index
from vecdb.index.gpu import gpu_available
from vecdb.index.params import (
    CPU_INDEX_TYPES,
    GPU_INDEX_TYPES,
    validate_index_params,
    validate_search_params,
)
from vecdb.index.threads import configure_threads

__all__ = [
    "CPU_INDEX_TYPES",
    "GPU_INDEX_TYPES",
    "VectorIndex",
    "brute_force_range",
    "brute_force_search",
    "check_range_params",
    "configure_threads",
    "create_index",
    "gpu_available",
    "is_similarity",
    "load_index",
    "new_index",
    "validate_index_params",
    "validate_search_params",
]

"""The request and schema limits: Milvus's defaults, each a setting (``vecdb.config.LimitsSettings``,
``limits:`` in the config file, ``VECDB_LIMITS__<NAME>``).

``LIMITS`` holds this process's values; code reads them when it checks (``LIMITS.max_nq``), so the
settings a process starts with (``configure``, called by the command line and by ``Standalone``)
apply everywhere. The filter language's own bounds are in ``vecdb.expr.limits``; the request size
and the query window are the proxy's settings (``proxy.max_request_bytes``, ``max_query_window``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vecdb.config import LimitsSettings


@dataclass
class Limits:
    max_nq: int = 16384  # quotaAndLimits.limits.nq (query vectors per search)
    max_topk: int = 16384  # quotaAndLimits.limits.topK (limit + offset of a search)
    max_dim: int = 32768  # proxy.maxDimension
    max_fields: int = 64  # proxy.maxFieldNum
    max_shards: int = 16  # proxy.maxShardNum
    max_partitions: int = 4096  # rootCoord.maxPartitionNum (per collection)
    max_collections: int = 65536  # quotaAndLimits.limits.maxCollectionNum (all databases)


LIMITS = Limits()


def configure(settings: LimitsSettings) -> None:
    """Take ``settings``' values as this process's limits."""
    for f in fields(Limits):
        setattr(LIMITS, f.name, int(getattr(settings, f.name)))

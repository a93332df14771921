"""Hybrid timestamps, as Milvus uses them: physical milliseconds << 18 | logical counter.

Every row and every delete carries one. A reader at snapshot ``T`` sees a row when
``row_ts <= T < delete_ts`` (MVCC); that rule is what consistency levels, iterators
and CDC ordering are built on.
"""

from __future__ import annotations

import time

LOGICAL_BITS = 18
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_TIMESTAMP = (1 << 64) - 1


def compose(physical_ms: int, logical: int = 0) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def physical_ms(ts: int) -> int:
    return ts >> LOGICAL_BITS


def now_ms() -> int:
    return int(time.time() * 1000)

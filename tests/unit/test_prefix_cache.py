"""vecdb.prefix_cache: which views count as a prefix of their base array, and the cache's bounds: an
entry goes with its array, the oldest when full, and a tag keeps results of one array apart."""

from __future__ import annotations

import gc

import numpy as np

from vecdb.prefix_cache import ArrayCache, prefix_root


def test_prefix_root_only_for_views_of_an_arrays_first_rows():
    base = np.array(["a", "b", "c", "d"], object)
    assert prefix_root(base) is base and prefix_root(base[:2]) is base and prefix_root(base[:2][:1]) is base
    assert prefix_root(base[1:]) is None  # another start
    assert prefix_root(base[::2]) is None  # another layout
    gathered = base[[0, 1]]
    assert prefix_root(gathered) is gathered  # a gather is an array of its own
    assert prefix_root(np.zeros((2, 2))) is None


def test_entries_go_with_their_array_and_the_oldest_when_full():
    cache = ArrayCache(2)
    a, b, c = (np.arange(3) for _ in range(3))
    cache.put(a, "a")
    cache.put(a, "a-upper", tag="upper")
    assert cache.get(a) == "a" and cache.get(a, "upper") == "a-upper" and cache.get(b) is None
    cache.put(b, "b")  # full: the oldest (a, untagged) goes
    assert cache.get(a) is None and cache.get(a, "upper") == "a-upper" and cache.get(b) == "b"
    del b
    gc.collect()
    assert len(cache) == 1  # b's entry went with b
    cache.put(c, "c")
    assert cache.get(c) == "c" and len(cache) == 2

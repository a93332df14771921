"""vecdb.str_keys: VARCHAR values as fixed-width NumPy strings without merging values that end in NUL."""

from __future__ import annotations

import numpy as np

from vecdb import str_keys
from vecdb.group_partials import group_ids, ranks
from vecdb.querynode.compaction import match_rows


def _obj(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


def test_plain_strings_take_the_fixed_width_form():
    values = _obj(["b", "a", "é😀", ""])
    assert str_keys.sortable(values).dtype.kind == "U"
    assert str_keys.exact(values).dtype.kind == "U"
    assert not str_keys.loses_trailing_nuls(_obj([]), _obj([]).astype(str))


def test_trailing_nuls_stay_distinct():
    values = _obj(["x", "x\x00", "x\x00\x00", "\x00", "", "x"])
    keys = str_keys.sortable(values)
    assert len(set(keys.tolist())) == 5 and keys[0] == keys[5]
    assert str_keys.exact(values) is values  # compared as Python strings
    rank, uniq = ranks(values, None)
    assert uniq.tolist() == ["", "\x00", "x", "x\x00", "x\x00\x00"]
    assert [uniq[r] for r in rank] == values.tolist()
    _, gid, g = group_ids([(values, None)], len(values))
    assert g == 5 and gid[0] == gid[5] and len(set(gid[:5].tolist())) == 5


def test_compacted_rows_match_their_own_source_rows():
    class _Seg:  # the two columns match_rows reads of a source segment
        def __init__(self, pks, ts):
            self._pks, self._ts = pks, ts

        def pks(self):
            return self._pks

        def ts(self):
            return self._ts

    pks = _obj(["x", "x\x00", "x\x00\x00"])
    ts = np.full(3, 7, np.uint64)  # one insert batch: one timestamp
    src_index, superseded = match_rows([_Seg(pks, ts)], pks[::-1].copy(), ts)
    assert src_index.tolist() == [2, 1, 0] and not superseded.any()


def test_order_keys_sort_in_code_point_order_as_milvus():
    values = _obj(["x\x01", "x\x00", "x", "x\x00\x00", "", "\x00", "x\x00"])
    milvus = sorted(values.tolist())  # Python's str order: code points, the UTF-8 bytes' order
    assert milvus == ["", "\x00", "x", "x\x00", "x\x00", "x\x00\x00", "x\x01"]
    keys = str_keys.order_keys(values)
    assert keys.dtype == np.int64 and keys[1] == keys[6]
    assert values[np.argsort(keys, kind="stable")].tolist() == milvus
    assert values[np.argsort(str_keys.sortable(values), kind="stable")].tolist() != milvus  # (equalities only)
    plain = _obj(["b", "a", "é"])
    assert str_keys.order_keys(plain).dtype.kind == "U"
    assert plain[np.argsort(str_keys.order_keys(plain))].tolist() == ["a", "b", "é"]

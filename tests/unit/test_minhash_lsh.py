"""MINHASH_LSH / MHJACCARD (vecdb.index.minhash) against the exact MinHash reference: scores, LSH
recall on sets of known Jaccard overlap, filters, persistence and Milvus's parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from vecdb.errors import InvalidParameter, OperationNotSupported
from vecdb.index import (
    VectorIndex,
    brute_force_range,
    brute_force_search,
    create_index,
    load_index,
    validate_index_params,
    validate_search_params,
)
from vecdb.index.minhash import band_keys, similarities
from vecdb.schema import DataType

PRIME = (1 << 61) - 1
L, WIDTH, BAND = 128, 64, 32  # 128 uint64 hashes, 32 bands of 4
DIM = L * WIDTH
BUILD = {"mh_element_bit_width": WIDTH, "mh_lsh_band": BAND, "with_raw_data": True}
JACCARD = {"mh_search_with_jaccard": True}


def signatures(sets: list[set[int]], length: int = L, seed: int = 1) -> np.ndarray:
    """MinHash signatures (universal hashing mod 2^61-1) packed as BINARY_VECTOR rows of uint64s."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, PRIME, length, dtype=np.uint64)
    b = rng.integers(0, PRIME, length, dtype=np.uint64)
    out = np.empty((len(sets), length), np.uint64)
    for j, s in enumerate(sets):
        x = np.fromiter(sorted(s), np.uint64)
        out[j] = ((x[:, None] % np.uint64(1 << 30) * a[None, :] + b[None, :]) % np.uint64(PRIME)).min(axis=0)
    return out.view(np.uint8).reshape(len(sets), -1)


def corpus(n: int = 1500, nq: int = 40, overlap: float = 0.8, seed: int = 7):
    """``n`` random 200-element sets, and ``nq`` queries each sharing ``overlap`` of set q's elements
    (so its Jaccard similarity to set q is about overlap / (2 - overlap), to the others about 0)."""
    rng = np.random.default_rng(seed)
    sets = [set(rng.choice(1 << 29, 200, replace=False).tolist()) for _ in range(n)]
    queries = []
    for s in sets[:nq]:
        keep = sorted(s)[: int(200 * overlap)]
        queries.append(set(keep) | set(rng.choice(1 << 29, 200 - len(keep), replace=False).tolist()))
    return signatures(sets), signatures(queries), sets, queries


def reference(x: np.ndarray, q: np.ndarray, width: int = WIDTH // 8) -> np.ndarray:
    """Share of equal elements, one pair at a time (the definition)."""
    xe, qe = x.reshape(len(x), -1, width), q.reshape(len(q), -1, width)
    return np.array([[np.mean([bytes(a) == bytes(b) for a, b in zip(qr, xr, strict=True)]) for xr in xe]
                     for qr in qe], np.float32)


def lsh_index(x: np.ndarray, **params) -> VectorIndex:
    index = create_index("MINHASH_LSH", "MHJACCARD", x.shape[1] * 8, {**BUILD, **params}, DataType.BINARY_VECTOR)
    index.build(x)
    return index


# --- scores ------------------------------------------------------------------
@pytest.mark.parametrize("width", [1, 2, 3, 4, 8])
def test_similarity_is_the_share_of_equal_elements(width):
    rng = np.random.default_rng(width)
    x = rng.integers(0, 3, (30, 24 * width), dtype=np.uint8)  # few values: many equal elements
    q = rng.integers(0, 3, (4, 24 * width), dtype=np.uint8)
    np.testing.assert_allclose(similarities(x, q, width), reference(x, q, width), rtol=1e-6)


def test_estimate_follows_the_sets_jaccard_and_larger_is_closer():
    rng = np.random.default_rng(3)
    base = set(rng.choice(1 << 29, 400, replace=False).tolist())
    keep = sorted(base)
    variants = [set(keep[: int(400 * f)]) | set(rng.choice(1 << 29, 400 - int(400 * f)).tolist())
                for f in (0.3, 0.9, 0.6)]  # Jaccard to ``base`` about 0.18, 0.82, 0.43
    x, q = signatures(variants, length=256), signatures([base], length=256)
    d, i = brute_force_search(x, q, 3, "MHJACCARD", params={**JACCARD, "mh_element_bit_width": WIDTH})
    assert i[0].tolist() == [1, 2, 0]  # larger is closer: best first
    truth = [len(base & variants[j]) / len(base | variants[j]) for j in i[0]]
    assert np.abs(d[0] - truth).max() < 0.1  # a 256-hash estimate


def test_identical_signature_scores_one_and_disjoint_rows_are_no_hit():
    x = np.zeros((3, 16), np.uint8)
    x[1] = 1
    x[2, :8] = 1  # half of its two 64-bit elements equal to row 1's
    d, i = brute_force_search(x, x[1:2], 3, "MHJACCARD", params={**JACCARD, "mh_element_bit_width": 64})
    assert i[0].tolist() == [1, 2, -1] and d[0, :2].tolist() == [1.0, 0.5] and d[0, 2] == -np.inf


# --- the index against brute force ------------------------------------------
def test_lsh_finds_near_duplicates_with_exact_scores():
    x, q, *_ = corpus(overlap=0.8)  # Jaccard ~0.67: P(candidate) = 1 - (1 - 0.67^4)^32 > 0.9999
    index = lsh_index(x)
    d, i = index.search(q, 10, JACCARD)
    assert (i[:, 0] == np.arange(len(q))).all()
    bd, bi = brute_force_search(x, q, 1, "MHJACCARD", params={**JACCARD, **BUILD})
    np.testing.assert_array_equal(d[:, 0], bd[:, 0])
    found = i >= 0  # every hit's score is exact, and only LSH candidates (shared band) come back
    qrows, rows = np.nonzero(found)[0], i[found]
    exact = [reference(x[r:r + 1], q[j:j + 1])[0, 0] for j, r in zip(qrows, rows, strict=True)]
    np.testing.assert_allclose(d[found], exact, rtol=1e-6)
    shared = (band_keys(x, BAND)[rows] == band_keys(q, BAND)[qrows]).any(axis=1)
    assert shared.all()


@pytest.mark.parametrize("overlap,band", [(0.8, 32), (0.67, 32), (0.67, 64), (0.5, 64)])
def test_recall_at_one_against_brute_force(overlap, band):
    """Recall follows LSH's S-curve: a pair of Jaccard s is a candidate with p = 1 - (1 - s^r)^b."""
    x, q, *_ = corpus(overlap=overlap)
    index = lsh_index(x, mh_lsh_band=band)
    _, i = index.search(q, 1, JACCARD)
    _, bi = brute_force_search(x, q, 1, "MHJACCARD", params={**JACCARD, **BUILD})
    s = overlap / (2 - overlap)
    expected = 1 - (1 - s ** (L // band)) ** band
    assert np.mean(i[:, 0] == bi[:, 0]) >= expected - 0.12, expected


def test_without_jaccard_hits_score_one_like_knowhere_and_match_the_exact_lsh():
    x, q, *_ = corpus(overlap=0.8)
    x[5] = x[3]  # two rows in query 3's buckets
    d, i = lsh_index(x).search(q, 4, {})
    bd, bi = brute_force_search(x, q, 4, "MHJACCARD", params=BUILD)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(d, bd)
    assert set(d[i >= 0].tolist()) == {1.0}
    assert i[3, :2].tolist() == [3, 5]  # same shared bands: ties by offset


def test_filter_and_short_mask():
    x, q, *_ = corpus(overlap=0.8)
    x[7] = x[0]
    index = lsh_index(x)
    valid = np.ones(len(x), bool)
    valid[0] = False
    _, i = index.search(q[:1], 3, JACCARD, valid=valid)
    assert i[0, 0] == 7 and 0 not in i[0]
    _, i = index.search(q, 1, JACCARD, valid=np.ones(5, bool))  # rows past the mask are filtered out
    assert set(i[:, 0].tolist()) <= {-1, 0, 1, 2, 3, 4}
    assert (index.search(q, 2, JACCARD, valid=np.zeros(len(x), bool))[1] == -1).all()


def test_padding_with_fewer_rows_than_k_and_empty_index():
    x, q, *_ = corpus(n=3, nq=2)
    d, i = lsh_index(x).search(q, 5, JACCARD)
    assert d.shape == i.shape == (2, 5) and (i[:, 3:] == -1).all() and (d[:, 3:] == -np.inf).all()
    empty = lsh_index(np.empty((0, x.shape[1]), np.uint8))
    assert (empty.search(q, 2, JACCARD)[1] == -1).all()


def test_add_continues_offsets():
    x, q, *_ = corpus(overlap=0.8)
    index = lsh_index(x[:700])
    index.add(x[700:])
    assert index.ntotal == len(x)
    _, i = index.search(q, 1, JACCARD)
    assert (i[:, 0] == np.arange(len(q))).all()


def test_bin_flat_with_mhjaccard_is_the_exact_search():
    x, q, *_ = corpus(n=300, nq=5)
    index = create_index("BIN_FLAT", "MHJACCARD", DIM, {}, DataType.BINARY_VECTOR)
    index.build(x)
    params = {**JACCARD, "mh_element_bit_width": WIDTH}
    d, i = index.search(q, 5, params)
    bd, bi = brute_force_search(x, q, 5, "MHJACCARD", params=params)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(d, bd)


def test_protocol_freeze_and_raw_vectors():
    x, q, *_ = corpus(n=200, nq=3)
    index = lsh_index(x)
    assert isinstance(index, VectorIndex)
    raw = index.raw_vectors()
    assert raw is not None and not raw.flags.writeable
    np.testing.assert_array_equal(raw, x)
    assert lsh_index(x, with_raw_data=False).raw_vectors() is None
    before = index.search(q, 3, JACCARD)
    index.freeze()
    np.testing.assert_array_equal(index.search(q, 3, JACCARD)[1], before[1])
    with pytest.raises(OperationNotSupported):
        index.add(x[:1])


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("raw", [True, False])
def test_save_load_round_trip(tmp_path, mmap, raw):
    x, q, *_ = corpus(n=400, nq=10)
    index = lsh_index(x, with_raw_data=raw)
    params = JACCARD if raw else {}
    path = str(tmp_path / "mh.idx")
    index.save(path)
    loaded = load_index(path, mmap=mmap)
    assert (loaded.index_type, loaded.metric_type, loaded.ntotal) == ("MINHASH_LSH", "MHJACCARD", len(x))
    for a, b in zip(index.search(q, 5, params), loaded.search(q, 5, params), strict=True):
        np.testing.assert_array_equal(a, b)
    if mmap:
        with pytest.raises(OperationNotSupported):
            loaded.add(x[:1])


# --- parameters (Milvus 2.6 / knowhere rules) --------------------------------
def _build(dim=DIM, metric="MHJACCARD", vt=DataType.BINARY_VECTOR, **params):
    return validate_index_params("MINHASH_LSH", metric, vt, dim, {**BUILD, **params})


def test_build_params_defaults_and_types():
    p = validate_index_params("MINHASH_LSH", "", DataType.BINARY_VECTOR, 256, {})
    assert p == {"index_type": "MINHASH_LSH", "metric_type": "MHJACCARD", "mh_element_bit_width": 8,
                 "mh_lsh_band": 1, "with_raw_data": False, "mh_lsh_code_in_mem": True,
                 "mh_lsh_shared_bloom_filter": False, "mh_lsh_aligned_block_size": 4096,
                 "mh_lsh_bloom_false_positive_prob": 0.01}
    p = _build(mh_element_bit_width="32", mh_lsh_band="16", with_raw_data="true")
    assert (p["mh_element_bit_width"], p["mh_lsh_band"], p["with_raw_data"]) == (32, 16, True)


@pytest.mark.parametrize("kwargs,message", [
    ({"metric": "HAMMING"}, "metric type HAMMING not found or not supported, supported: [MHJACCARD]"),
    ({"vt": DataType.FLOAT_VECTOR, "dim": 128}, "data type FLOAT_VECTOR can't build with this index MINHASH_LSH"),
    ({"mh_element_bit_width": 4}, "mh_element_bit_width out of range: [8, 256]"),
    ({"mh_element_bit_width": 12}, "mh_element_bit_width (12) should be a multiple of 8"),
    ({"dim": 8 * 100, "mh_element_bit_width": 64}, "should be a multiple of mh_element_bit_width (64)"),
    ({"mh_lsh_band": 3}, "(128 = dim / mh_element_bit_width) should be divisible by mh_lsh_band (3)"),
    ({"mh_lsh_band": 0}, "mh_lsh_band out of range"),
    ({"mh_lsh_band": "x"}, "param 'mh_lsh_band' ('x') should be integer"),
    ({"with_raw_data": "maybe"}, "should be a boolean"),
    ({"mh_lsh_bloom_false_positive_prob": 2}, "mh_lsh_bloom_false_positive_prob' (2.0) should be in range"),
])
def test_build_params_refused_with_milvus_messages(kwargs, message):
    with pytest.raises(InvalidParameter) as e:
        _build(**kwargs)
    assert message in str(e.value) and e.value.code == 1100


def test_mhjaccard_only_on_minhash_lsh_and_bin_flat():
    for itype in ("BIN_FLAT", "MINHASH_LSH"):
        assert validate_index_params(itype, "MHJACCARD", DataType.BINARY_VECTOR, 256, {})["metric_type"] == "MHJACCARD"
    with pytest.raises(InvalidParameter, match="supported: \\[HAMMING JACCARD\\]"):
        validate_index_params("BIN_IVF_FLAT", "MHJACCARD", DataType.BINARY_VECTOR, 256, {})


def test_search_params():
    sp = validate_search_params("MINHASH_LSH", "MHJACCARD", {"mh_search_with_jaccard": "true", "refine_k": "20"}, 10)
    assert sp["mh_search_with_jaccard"] is True and sp["refine_k"] == 20 and sp["mh_lsh_batch_search"] is False
    assert validate_search_params("MINHASH_LSH", "", {}, 10)["mh_search_with_jaccard"] is False
    with pytest.raises(InvalidParameter, match="param 'refine_k' \\(0\\) should be in range"):
        validate_search_params("MINHASH_LSH", "MHJACCARD", {"refine_k": 0}, 10)
    with pytest.raises(InvalidParameter, match="Type conflict in json: param 'mh_search_with_jaccard'"):
        validate_search_params("MINHASH_LSH", "MHJACCARD", {"mh_search_with_jaccard": "abc"}, 10)
    with pytest.raises(InvalidParameter, match="metric type HAMMING not found"):
        validate_search_params("MINHASH_LSH", "HAMMING", {}, 10)


def test_range_search_and_jaccard_without_raw_data_are_refused():
    x, q, *_ = corpus(n=50, nq=2)
    with pytest.raises(InvalidParameter, match="range search is not supported for metric type MHJACCARD"):
        validate_search_params("MINHASH_LSH", "MHJACCARD", {}, 10, range_search=True)
    with pytest.raises(InvalidParameter, match="range search is not supported"):
        lsh_index(x).range_search(q, 0.5, None, {})
    with pytest.raises(InvalidParameter, match="range search is not supported"):
        brute_force_range(x, q, 0.5, None, "MHJACCARD")
    with pytest.raises(InvalidParameter, match="without raw data"):
        lsh_index(x, with_raw_data=False).search(q, 2, JACCARD)
    with pytest.raises(InvalidParameter, match="divisible by mh_lsh_band"):  # BIN_FLAT: the search's layout
        brute_force_search(x, q, 2, "MHJACCARD", params={"mh_element_bit_width": 64, "mh_lsh_band": 3})

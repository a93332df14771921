"""XXH3_64bits (xxHash 0.8, seed 0, default secret) of many byte strings at once, with NumPy.

Milvus's MinHash function hashes each shingle with ``XXH3_64bits`` (vecdb.minhash_function); this
gives the same 64-bit values without a C extension. The strings are slices ``(start, length)`` of
one byte buffer; each length class of the algorithm (0, 1-3, 4-8, 9-16, 17-128, 129-240) is hashed
for all its slices together. Longer slices (> 240 bytes: the striped "long" path) are rare for
shingles and are hashed one by one with Python integers (``_long``).

Checked against the reference C implementation (tests/unit/test_minhash_function.py holds values
it printed).
"""

from __future__ import annotations

import numpy as np

_M64 = (1 << 64) - 1
_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e")
P32_1, P32_2, P32_3 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D
P64_1, P64_2, P64_3, P64_4, P64_5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                     0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
PRIME_MX1, PRIME_MX2 = 0x165667919E3779F9, 0x9FB21C651E98DF25


def _s64(off: int) -> int:
    return int.from_bytes(_SECRET[off:off + 8], "little")


def _s32(off: int) -> int:
    return int.from_bytes(_SECRET[off:off + 4], "little")


def _u(x: int) -> np.uint64:
    return np.uint64(x & _M64)


# --- vectorized pieces (uint64 arrays wrap modulo 2**64) ----------------------------------------
def _read64(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return buf[pos[:, None] + np.arange(8)].view("<u8").ravel()


def _read32(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return buf[pos[:, None] + np.arange(4)].view("<u4").ravel().astype(np.uint64)


def _fold64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """XXH3_mul128_fold64: the 128-bit product's low and high halves xor-ed."""
    m32 = np.uint64(0xFFFFFFFF)
    a_lo, a_hi, b_lo, b_hi = a & m32, a >> np.uint64(32), b & m32, b >> np.uint64(32)
    lo_lo, hi_lo, lo_hi, hi_hi = a_lo * b_lo, a_hi * b_lo, a_lo * b_hi, a_hi * b_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & m32) + lo_hi
    upper = (hi_lo >> np.uint64(32)) + (cross >> np.uint64(32)) + hi_hi
    lower = (cross << np.uint64(32)) | (lo_lo & m32)
    return lower ^ upper


def _xorshift(h: np.ndarray, s: int) -> np.ndarray:
    return h ^ (h >> np.uint64(s))


def _avalanche(h: np.ndarray) -> np.ndarray:
    return _xorshift(_xorshift(h, 37) * _u(PRIME_MX1), 32)


def _xxh64_avalanche(h: np.ndarray) -> np.ndarray:
    h = _xorshift(h, 33) * _u(P64_2)
    h = _xorshift(h, 29) * _u(P64_3)
    return _xorshift(h, 32)


def _rotl(h: np.ndarray, r: int) -> np.ndarray:
    return (h << np.uint64(r)) | (h >> np.uint64(64 - r))


def _mix16(buf: np.ndarray, pos: np.ndarray, secret_off: int) -> np.ndarray:
    return _fold64(_read64(buf, pos) ^ _u(_s64(secret_off)), _read64(buf, pos + 8) ^ _u(_s64(secret_off + 8)))


def _len_1to3(buf, pos, n):
    c1, c2, c3 = buf[pos].astype(np.uint64), buf[pos + (n >> 1)].astype(np.uint64), buf[pos + n - 1].astype(np.uint64)
    combined = (c1 << np.uint64(16)) | (c2 << np.uint64(24)) | c3 | (n.astype(np.uint64) << np.uint64(8))
    return _xxh64_avalanche(combined ^ _u(_s32(0) ^ _s32(4)))


def _len_4to8(buf, pos, n):
    lo, hi = _read32(buf, pos), _read32(buf, pos + n - 4)
    keyed = (hi + (lo << np.uint64(32))) ^ _u(_s64(8) ^ _s64(16))
    ln = n.astype(np.uint64)
    keyed = keyed ^ _rotl(keyed, 49) ^ _rotl(keyed, 24)
    keyed = keyed * _u(PRIME_MX2)
    keyed = keyed ^ ((keyed >> np.uint64(35)) + ln)
    keyed = keyed * _u(PRIME_MX2)
    return _xorshift(keyed, 28)


def _len_9to16(buf, pos, n):
    lo = _read64(buf, pos) ^ _u(_s64(24) ^ _s64(32))
    hi = _read64(buf, pos + n - 8) ^ _u(_s64(40) ^ _s64(48))
    acc = n.astype(np.uint64) + lo.byteswap() + hi + _fold64(lo, hi)
    return _avalanche(acc)


def _len_17to128(buf, pos, n):
    acc = n.astype(np.uint64) * _u(P64_1)
    for lower, secret_off in ((96, 96), (64, 64), (32, 32), (0, 0)):  # pairs of 16-byte blocks, from the ends
        on = n > lower if lower else np.ones(len(n), bool)
        if not on.any():
            continue
        p, m = pos[on], n[on]
        k = lower // 2
        acc[on] += _mix16(buf, p + k, secret_off) + _mix16(buf, p + m - 16 - k, secret_off + 16)
    return _avalanche(acc)


def _len_129to240(buf, pos, n):
    acc = n.astype(np.uint64) * _u(P64_1)
    for i in range(8):
        acc += _mix16(buf, pos + 16 * i, 16 * i)
    acc = _avalanche(acc)
    acc += _mix16(buf, pos + n - 16, 136 - 17)
    rounds = n // 16
    for i in range(8, int(rounds.max())):
        on = rounds > i
        acc[on] += _mix16(buf, pos[on] + 16 * i, 16 * (i - 8) + 3)
    return _avalanche(acc)


# --- the long path, one input at a time -----------------------------------------------------------
def _fold_int(a: int, b: int) -> int:
    p = a * b
    return (p & _M64) ^ (p >> 64)


def _avalanche_int(h: int) -> int:
    h ^= h >> 37
    h = (h * PRIME_MX1) & _M64
    return h ^ (h >> 32)


def _long(data: bytes) -> int:
    n = len(data)
    acc = [P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1]

    def stripe(at: int, secret_off: int) -> None:
        for i in range(8):
            val = int.from_bytes(data[at + 8 * i:at + 8 * i + 8], "little")
            key = val ^ _s64(secret_off + 8 * i)
            acc[i ^ 1] = (acc[i ^ 1] + val) & _M64
            acc[i] = (acc[i] + (key & 0xFFFFFFFF) * (key >> 32)) & _M64

    stripes_per_block = (len(_SECRET) - 64) // 8
    block = 64 * stripes_per_block
    blocks = (n - 1) // block
    for b in range(blocks):
        for s in range(stripes_per_block):
            stripe(b * block + 64 * s, 8 * s)
        for i in range(8):  # scramble
            a = acc[i] ^ (acc[i] >> 47) ^ _s64(len(_SECRET) - 64 + 8 * i)
            acc[i] = (a * P32_1) & _M64
    for s in range(((n - 1) - block * blocks) // 64):
        stripe(blocks * block + 64 * s, 8 * s)
    stripe(n - 64, len(_SECRET) - 64 - 7)
    result = (n * P64_1) & _M64
    for i in range(4):
        result += _fold_int(acc[2 * i] ^ _s64(11 + 16 * i), acc[2 * i + 1] ^ _s64(11 + 16 * i + 8))
    return _avalanche_int(result & _M64)


def xxh3_64(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """XXH3_64bits of each slice ``buf[starts[i]:starts[i] + lengths[i]]`` (uint8 buffer), as uint64."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    out = np.empty(len(starts), np.uint64)
    padded = np.concatenate([np.asarray(buf, np.uint8), np.zeros(16, np.uint8)])  # reads past a slice's end
    with np.errstate(over="ignore"):
        empty = lengths == 0
        if empty.any():
            out[empty] = _xxh64_avalanche(np.full(int(empty.sum()), _s64(56) ^ _s64(64), np.uint64))
        for lo, hi, fn in ((1, 3, _len_1to3), (4, 8, _len_4to8), (9, 16, _len_9to16),
                           (17, 128, _len_17to128), (129, 240, _len_129to240)):
            sel = np.flatnonzero((lengths >= lo) & (lengths <= hi))
            if len(sel):
                out[sel] = fn(padded, starts[sel], lengths[sel])
        for i in np.flatnonzero(lengths > 240):
            out[i] = _long(padded[starts[i]:starts[i] + lengths[i]].tobytes())
    return out

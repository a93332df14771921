"""Record framing shared by the WAL and the metadata journal.

A record is a 20-byte header followed by the payload::

    magic  4 bytes  b"\\xe2vdb"
    length u32      payload length
    seq    u64      position (WAL) or journal sequence number
    crc    u32      crc32 of payload, then of (length u32, seq u64)

All integers are little-endian. A file is a run of records with consecutive
``seq``. ``scan`` walks a file image and tells a torn tail (the last write was
cut short by a crash: no valid record follows the bad bytes, safe to cut)
from corruption (a bad record followed by a valid one: acknowledged data was
damaged, which must never be skipped silently and raises ``IoFailed``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from vecdb.errors import IoFailed, ParameterTooLarge

MAGIC = b"\xe2vdb"
HEADER = struct.Struct("<4sIQI")
HEADER_SIZE = HEADER.size
_LEN_SEQ = struct.Struct("<IQ")
MAX_PAYLOAD = 0xFFFFFFFF


def record_crc(length: int, seq: int, payload_crc: int) -> int:
    """CRC of a record from the crc32 of its payload (which can be computed
    before the record's seq is known, outside any lock)."""
    return zlib.crc32(_LEN_SEQ.pack(length, seq), payload_crc)


def _check_size(n: int) -> None:
    if n > MAX_PAYLOAD:
        raise ParameterTooLarge(f"record of {n} bytes exceeds the limit of {MAX_PAYLOAD} bytes")


def encode(seq: int, payload) -> bytes:
    """Header + payload of one record."""
    n = len(payload)
    _check_size(n)
    return HEADER.pack(MAGIC, n, seq, record_crc(n, seq, zlib.crc32(payload))) + payload


class Batch:
    """Records framed ahead of time; ``stamp`` fills in their seqs later.

    Copying payloads and their crc32 happen in the constructor, so a writer
    can do them before taking its lock and only stamp 20-byte headers under
    it.
    """

    __slots__ = ("buf", "_meta")

    def __init__(self, payloads: list[bytes]):
        total = 0
        for p in payloads:
            _check_size(len(p))
            total += HEADER_SIZE + len(p)
        self.buf = bytearray(total)
        self._meta: list[tuple[int, int, int]] = []  # (header offset, length, payload crc)
        off = 0
        for p in payloads:
            n = len(p)
            self.buf[off + HEADER_SIZE : off + HEADER_SIZE + n] = p
            self._meta.append((off, n, zlib.crc32(p)))
            off += HEADER_SIZE + n

    def __len__(self) -> int:
        return len(self._meta)

    def stamp(self, first_seq: int) -> bytearray:
        """Give the records seqs first_seq, first_seq + 1, ...; return the bytes."""
        for i, (off, n, pcrc) in enumerate(self._meta):
            seq = first_seq + i
            HEADER.pack_into(self.buf, off, MAGIC, n, seq, record_crc(n, seq, pcrc))
        return self.buf


def parse_at(buf, off: int) -> tuple[int, int, int] | None:
    """(seq, payload_start, payload_end) of a valid record at ``off`` in
    ``buf``, or None when the bytes there are not a whole valid record."""
    if off + HEADER_SIZE > len(buf):
        return None
    magic, length, seq, crc = HEADER.unpack_from(buf, off)
    start = off + HEADER_SIZE
    end = start + length
    if magic != MAGIC or end > len(buf):
        return None
    if record_crc(length, seq, zlib.crc32(memoryview(buf)[start:end])) != crc:
        return None
    return seq, start, end


@dataclass
class ScanResult:
    records: list[tuple[int, int, int]]  # (seq, payload_start, payload_end)
    end: int  # offset just past the last good record
    torn: bool  # bytes after ``end`` were a torn tail (caller cuts them)


def scan(buf, path: str, first_seq: int | None = None) -> ScanResult:
    """Validate every record of a file image.

    ``first_seq``: the seq the first record must carry (None: any); each next
    record must carry the previous seq + 1. Raises ``IoFailed`` (naming the
    file and offset) when a bad record is followed by a valid one.
    """
    records: list[tuple[int, int, int]] = []
    off = 0
    expected = first_seq
    size = len(buf)
    while off < size:
        rec = parse_at(buf, off)
        if rec is None or (expected is not None and rec[0] != expected):
            last_seq = records[-1][0] if records else (first_seq - 1 if first_seq is not None else -1)
            bad = _valid_record_after(buf, off + 1, last_seq)
            if bad is not None:
                raise IoFailed(
                    f"corrupt record in {path} at offset {off}: a valid record follows at offset {bad}"
                )
            return ScanResult(records, off, True)
        records.append(rec)
        expected = rec[0] + 1
        off = rec[2]
    return ScanResult(records, off, False)


def _valid_record_after(buf, off: int, last_seq: int) -> int | None:
    """Offset of the first valid record at or after ``off`` whose seq is
    above ``last_seq``, or None."""
    data = buf if hasattr(buf, "find") else bytes(buf)  # bytes, bytearray, mmap
    while True:
        hit = data.find(MAGIC, off)
        if hit < 0:
            return None
        rec = parse_at(data, hit)
        if rec is not None and rec[0] > last_seq:
            return hit
        off = hit + 1

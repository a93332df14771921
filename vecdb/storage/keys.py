"""Argument checks and name encodings shared by the storage backends, so the
reference and the real implementations reject exactly the same input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vecdb.errors import InvalidParameter, LogConflict

# Characters kept as they are in an encoded channel directory name; every
# other byte of the UTF-8 name becomes %XX. '.' is escaped so no encoded
# name is '.', '..' or starts with '.' (reserved for our own temp names).
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_MAX_NAME_BYTES = 240


def check_channel(channel: str) -> str:
    if not isinstance(channel, str) or not channel:
        raise InvalidParameter(f"invalid channel name {channel!r}: must be a non-empty string")
    return channel


def check_position(position: int, what: str = "position") -> int:
    if isinstance(position, bool) or not isinstance(position, int):
        raise InvalidParameter(f"invalid {what} {position!r}: must be an int")
    return position


def check_read(channel: str, start: int, end: int | None) -> None:
    """The arguments of a ``Log.read``."""
    check_channel(channel)
    check_position(start, "start")
    if end is not None:
        check_position(end, "end")


def check_expected_last(channel: str, last: int, expect_last: int | None) -> None:
    """An append's ``expect_last`` condition (see ``Log.append_batch``)."""
    if expect_last is not None and last != expect_last:
        raise LogConflict(f"channel {channel!r} ends at position {last}, not {expect_last}")


def check_payload(payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise InvalidParameter(f"payload must be bytes, got {type(payload).__name__}")


def payload_parts(data) -> Iterator[memoryview]:
    """An object's bytes as buffers in order: ``data`` is one bytes-like object or an iterable of
    them (parts are streamed, so a large object never has to be one buffer in memory)."""
    parts: Iterable
    if isinstance(data, (bytes, bytearray, memoryview)):
        parts = (data,)
    elif isinstance(data, str) or not isinstance(data, Iterable):
        raise InvalidParameter(f"payload must be bytes or an iterable of bytes, got {type(data).__name__}")
    else:
        parts = data
    for part in parts:
        try:
            view = memoryview(part)
        except TypeError:
            raise InvalidParameter(f"payload part must be bytes-like, got {type(part).__name__}") from None
        yield view if view.ndim == 1 and view.itemsize == 1 else view.cast("B")


def check_meta_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidParameter(f"invalid key {key!r}: must be a non-empty string")
    return key


def check_expect(expect: dict | None) -> dict[str, bytes | None]:
    """A txn's expected values: key -> bytes, or None for "absent"."""
    return {check_meta_key(k): (None if v is None else check_payload(v)) for k, v in (expect or {}).items()}


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise InvalidParameter(f"invalid prefix {prefix!r}: must be a string")
    return prefix


def check_object_key(key: str) -> str:
    """A relative '/'-separated path that cannot escape the store's root."""
    if not isinstance(key, str) or not key:
        raise InvalidParameter(f"invalid object key {key!r}: must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidParameter(f"invalid object key {key!r}: must be a relative path without '\\' or NUL")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith(".tmp-"):
            raise InvalidParameter(
                f"invalid object key {key!r}: empty, '.', '..' or '.tmp-' path segments are not allowed"
            )
    return key


def encode_channel(channel: str) -> str:
    """Reversible, filesystem-safe directory name for a channel name."""
    out = []
    for b in check_channel(channel).encode("utf-8"):
        out.append(chr(b) if b in _PLAIN else f"%{b:02X}")
    name = "".join(out)
    if len(name) > _MAX_NAME_BYTES:
        raise InvalidParameter(f"channel name too long: {channel[:50]!r}...")
    return name


def decode_channel(name: str) -> str | None:
    """Inverse of ``encode_channel``; None when ``name`` is not an encoding."""
    raw = bytearray()
    i = 0
    try:
        while i < len(name):
            c = name[i]
            if c == "%":
                raw.append(int(name[i + 1 : i + 3], 16))
                i += 3
            elif ord(c) in _PLAIN:
                raw.append(ord(c))
                i += 1
            else:
                return None
        channel = raw.decode("utf-8")
        return channel if channel and encode_channel(channel) == name else None
    except (ValueError, UnicodeDecodeError, InvalidParameter):
        return None

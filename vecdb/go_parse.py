"""Values read as Milvus reads them: Go's ``strconv`` parsers.

A search's ``topk``, ``offset`` and ``round_decimal``, a query's ``limit`` and ``offset`` and a hybrid
search's rank ``limit``/``offset`` are ``strconv.ParseInt(s, 0, 64)``: an optional sign, ``0x``/``0o``/``0b``
prefixes, a leading ``0`` for octal (``"010"`` is 8), underscores between digits, no spaces, ASCII digits
only, within int64. ``ignore_growing`` and ``partitionkey.isolation`` (lower-cased) are
``strconv.ParseBool``. Python's ``int()`` takes ``" 5"``,
``"１"`` and ``"010"`` as 5, 1 and 10, which Milvus refuses or reads otherwise (Milvus 2.3.5, run).
"""

from __future__ import annotations

import re

_INT = re.compile(r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+"
                  r"|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64 = 1 << 63
_MAX_DIGITS = 66  # "0b" and 64 binary digits


def go_int(raw: str) -> int | None:
    """``raw`` as ``strconv.ParseInt(raw, 0, 64)`` reads it; None where Go returns an error."""
    if not isinstance(raw, str) or not _INT.fullmatch(raw):
        return None
    text = raw.replace("_", "")
    body = text.lstrip("+-")
    if len(body) > _MAX_DIGITS:  # past int64 in any base (and past Python's int() digit limit)
        return None
    value = int(body, 8) if len(body) > 1 and body[0] == "0" and body[1].isdigit() else int(body, 0)
    value = -value if text.startswith("-") else value
    return value if -_INT64 <= value < _INT64 else None


def go_bool(raw: str) -> bool | None:
    """``raw`` as ``strconv.ParseBool`` reads it; None where Go returns an error."""
    return True if raw in _TRUE else False if raw in _FALSE else None

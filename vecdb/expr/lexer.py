"""Tokenizer for the Milvus boolean expression language.

Token kinds: ``INT``, ``FLOAT``, ``STR``, ``BOOL``, ``IDENT`` (incl. ``$meta``, ``$namespace_id``),
``SUBFIELD`` (``$[name]``, a struct element's sub-field, value ``name``; no spaces
inside, as Milvus lexes it), ``KW`` (keywords, value lower-cased), ``OP``
(punctuation and operators), ``EOF``. Every token carries ``pos``, its 0-based offset in the expression;
error messages print it 1-based as "column".

Rules (after Milvus ``planparserv2/Plan.g4``):

- keywords are spelled all lower or all upper case (``and``/``AND``, ``not``,
  ``in``, ``like``, ``exists``, ``is``, ``null``, ``or``); booleans also
  ``True``/``False``. ``&&``, ``||`` and ``!`` spell and/or/not.
- integers: decimal, ``0x`` hex, ``0b`` binary, ``0o`` or leading-``0`` octal.
  Floats: ``1.5``, ``.5``, ``1.``, ``1e3``, ``2.5E-3`` and C hex floats.
- strings in ``'...'`` or ``"..."`` with C/Go escapes (``\\n``, ``\\t``,
  ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``, octal ``\\NNN``, ``\\'``, ``\\"``,
  ``\\\\``); an unknown escape such as ``\\%`` keeps its backslash, so LIKE
  patterns can escape ``%`` and ``_``. ``r"..."`` is a raw string.
- ``>>``/``<<``/``&``/``|``/``^``/``~`` are not supported, so they are not
  tokens: ``a >> 3`` fails at the second ``>``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vecdb.errors import InvalidParameter

KEYWORDS = frozenset({"and", "or", "not", "in", "like", "exists", "is", "null"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
BOOL_WORDS = frozenset(_BOOLS)

_OPS = ("==", "!=", "<=", ">=", "&&", "||", "**", "<", ">", "+", "-", "*", "/", "%", "(", ")",
        "[", "]", ",", "{", "}", "!", "=")  # "=": only a call's keyword argument (text_match's option)
_IDENT_RE = re.compile(r"\$meta\b|\$namespace_id\b|[A-Za-z_][A-Za-z0-9_]*")
_SUBFIELD_RE = re.compile(r"\$\[([A-Za-z_][A-Za-z0-9_]*)\]")  # Milvus 3.0's StructSubFieldIdentifier
_HEXFLOAT_RE = re.compile(r"0[xX](?:[0-9a-fA-F]*\.[0-9a-fA-F]+|[0-9a-fA-F]+\.?)[pP][+-]?[0-9]+")
_FLOAT_RE = re.compile(r"(?:[0-9]*\.[0-9]+|[0-9]+\.)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+")
_INT_RE = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO]?[0-7]+|[1-9][0-9]*|0")
_NUM_TAIL_RE = re.compile(r"[A-Za-z0-9_.]")
_SIMPLE_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", "'": "'", '"': '"', "?": "?"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_MIN_MAGNITUDE = 2**63  # the literal of -9223372036854775808, before its minus


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    # by kind: STR/IDENT/SUBFIELD/KW/OP str, INT int, FLOAT float, BOOL bool, EOF None
    value: str | int | float | bool | None
    pos: int
    text: str

    @property
    def word(self) -> str:
        """``value`` of a token whose value is text (STR, IDENT, SUBFIELD, KW, OP)."""
        if not isinstance(self.value, str):
            raise TypeError(f"a {self.kind} token has no text value")
        return self.value


def syntax_error(expr: str, detail: str) -> InvalidParameter:
    return InvalidParameter(f"cannot parse expression: {clip(expr, 1000)}, error: {detail}")


def clip(text: str, limit: int = 64) -> str:
    """``text`` as echoed in an error message: long input (up to the 1 MiB an expression may
    have) is cut, so a bad request doesn't come back as a megabyte of error text."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def tokenize(expr: str) -> list[Token]:
    """Split ``expr`` into tokens; raise InvalidParameter at the first bad character."""
    toks: list[Token] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'" or (c in "rR" and i + 1 < n and expr[i + 1] in "\"'"):
            value, end = _read_string(expr, i)
            toks.append(Token("STR", value, i, expr[i:end]))
            i = end
            continue
        if c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            tok = _read_number(expr, i)
            toks.append(tok)
            i += len(tok.text)
            continue
        m = _SUBFIELD_RE.match(expr, i) if c == "$" else None
        if m:
            toks.append(Token("SUBFIELD", m.group(1), i, m.group()))
            i = m.end()
            continue
        m = _IDENT_RE.match(expr, i)
        if m:
            word = m.group()
            if word in _BOOLS:
                toks.append(Token("BOOL", _BOOLS[word], i, word))
            elif word.lower() in KEYWORDS and (word.islower() or word.isupper()):
                toks.append(Token("KW", word.lower(), i, word))
            else:
                toks.append(Token("IDENT", word, i, word))
            i = m.end()
            continue
        for op in _OPS:
            if expr.startswith(op, i):
                toks.append(Token("OP", op, i, op))
                i += len(op)
                break
        else:
            raise syntax_error(expr, f"unexpected character {c!r} at column {i + 1}")
    toks.append(Token("EOF", None, n, ""))
    return toks


def _read_number(expr: str, i: int) -> Token:
    text, kind = "", ""
    for rx, rx_kind in ((_HEXFLOAT_RE, "FLOAT"), (_FLOAT_RE, "FLOAT"), (_INT_RE, "INT")):
        m = rx.match(expr, i)
        if m and not _NUM_TAIL_RE.match(expr, m.end()):
            text, kind = m.group(), rx_kind
            break
    if not text:
        # the caller saw a digit or "." at i, so this matches at least one character
        bad = re.compile(r"[0-9A-Za-z_.]+").match(expr, i)
        raise syntax_error(expr, f"invalid number {clip(bad.group() if bad else expr[i])!r} at column {i + 1}")
    if kind == "FLOAT":
        try:
            fvalue = float.fromhex(text) if text[:2] in ("0x", "0X") else float(text)
        except OverflowError:  # fromhex refuses what float() turns into inf
            fvalue = math.inf
        if math.isinf(fvalue):  # like Go's ParseFloat in Milvus: out of range, not infinity
            raise syntax_error(expr, f"float {clip(text)} out of range at column {i + 1}")
        return Token(kind, fvalue, i, text)
    try:
        if len(text) > 1 and text[0] == "0" and text[1] not in "xXbBoO":
            ivalue = int(text, 8)
        else:
            ivalue = int(text, 0)
    except ValueError:  # over Python's 4300-digit limit for decimal int(): far out of range anyway
        ivalue = INT64_MAX + 1
    # 2**63 only as the operand of a unary minus (the parser's ``_unary``; otherwise its
    # ``_primary`` refuses it): INT64_MIN is written -9223372036854775808, as Milvus's parser takes it
    if ivalue > INT64_MAX and not (ivalue == INT64_MIN_MAGNITUDE and text == str(INT64_MIN_MAGNITUDE)):
        raise int_out_of_range(expr, text, i)
    return Token(kind, ivalue, i, text)


def int_out_of_range(expr: str, text: str, i: int) -> InvalidParameter:
    return syntax_error(expr, f"integer {clip(text)} out of int64 range at column {i + 1}")


def _read_string(expr: str, start: int) -> tuple[str, int]:
    raw = expr[start] in "rR"
    i = start + 1 if raw else start
    quote = expr[i]
    i += 1
    out: list[str] = []
    n = len(expr)
    while i < n:
        c = expr[i]
        if c == quote:
            return _text("".join(out), expr, start), i + 1
        if c in "\r\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        if raw:
            out.append(expr[i : i + 2])
            i += 2
            continue
        i = _read_escape(expr, i, out)
    raise syntax_error(expr, f"unterminated string literal at column {start + 1}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(s: str, expr: str, start: int) -> str:
    """A string literal's value: ``\\ud83d\\ude00``-style escaped surrogate pairs become the one
    character they encode (as in JSON); a lone surrogate is not text and is refused."""
    if not _SURROGATE.search(s):
        return s
    s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if _SURROGATE.search(s):
        raise syntax_error(expr, f"string literal at column {start + 1} holds a lone surrogate (not valid unicode)")
    return s


def _read_escape(expr: str, i: int, out: list[str]) -> int:
    """Decode the escape at ``expr[i] == '\\\\'``; append to ``out``; return the next index."""
    e = expr[i + 1]
    if e in _SIMPLE_ESC:
        out.append(_SIMPLE_ESC[e])
        return i + 2
    for prefix, width in (("x", 2), ("u", 4), ("U", 8)):
        if e == prefix:
            digits = expr[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
                cp = int(digits, 16)
                if cp <= 0x10FFFF:
                    out.append(chr(cp))
                    return i + 2 + width
            raise syntax_error(expr, f"invalid escape sequence at column {i + 1}")
    if e in "01234567":
        j = i + 1
        while j < i + 4 and j < len(expr) and expr[j] in "01234567":
            j += 1
        out.append(chr(int(expr[i + 1 : j], 8)))
        return j
    # unknown escape (e.g. LIKE's \% and \_): keep it verbatim
    out.append("\\" + e)
    return i + 2

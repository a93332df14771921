"""Text analyzers for full-text search (Milvus 2.5's ``enable_analyzer`` / ``analyzer_params``).

An analyzer turns a text into tokens: a tokenizer, then filters. What vecdb builds of Milvus's
analyzer parameters (``analyzer_params`` on a VARCHAR field, a JSON object):

- ``{"type": "standard"}`` (the default when none is given): the standard tokenizer and the
  ``lowercase`` filter; ``"stop_words": [...]`` adds a stop filter (``"_english_"`` expands to
  the English list), ``"max_token_length"`` a length filter.
- ``{"type": "english"}``: the standard analyzer, the English Snowball stemmer, English stop words.
- ``{"tokenizer": "standard" | "whitespace", "filter": [...]}``: a tokenizer and filters; each
  filter a name (``"lowercase"``, ``"asciifolding"``, ``"alphanumonly"``) or an object
  (``{"type": "stop", "stop_words": [...]}``, ``{"type": "length", "max": N}``,
  ``{"type": "stemmer", "language": "english"}``: Snowball stemmers, the ``snowballstemmer`` package).

Anything else (the ``"chinese"`` type, jieba, lindera, ...) is refused at create time (1100),
never silently replaced.

The standard tokenizer follows Unicode word boundaries (UAX #29) for the common cases with one
regular expression: runs of letters, digits and ``_``, joined across a ``'`` or ``.`` between
word characters ("don't", "u.s.a", "3.14") and a ``,`` between digits ("1,000"); everything
else (spaces, punctuation, symbols) separates tokens.

A token's term id is Milvus's: ``crc32(first 100 UTF-8 bytes) % (2^32 - 1)``
(``typeutil.HashString2LessUint32``), so the term-frequency vectors vecdb stores are the ones
Milvus's BM25 function writes for the same tokens.
"""

from __future__ import annotations

import json
import re
import unicodedata
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from vecdb import sparse
from vecdb.errors import InvalidParameter

_W = r"(?:\w[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*)+"  # combining marks extend
_STANDARD = re.compile(_W + r"(?:(?:['\u2019.]|(?<=\d),(?=\d))" + _W + ")*")
_WHITESPACE = re.compile(r"\S+")
MAX_HASHED_BYTES = 100  # Milvus hashes a token's first 100 bytes
_U32_MAX = 2**32 - 1

# Lucene's / tantivy's English stop words (Milvus's "_english_")
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split())

_TOKENIZERS = {"standard": _STANDARD, "whitespace": _WHITESPACE}
_SIMPLE_FILTERS = ("lowercase", "asciifolding", "alphanumonly")


@dataclass(frozen=True)
class Analyzer:
    tokenizer: str = "standard"
    lowercase: bool = True
    asciifolding: bool = False
    alphanumonly: bool = False
    stop_words: frozenset[str] = field(default_factory=frozenset)
    max_length: int | None = None  # tokens longer (in characters) are dropped
    stemmer: str | None = None  # a Snowball language: tokens stemmed (before the stop words, as Milvus)

    def tokens(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.asciifolding:
            text = _fold(text)
        toks = _TOKENIZERS[self.tokenizer].findall(text)
        if self.alphanumonly:
            toks = [t for t in toks if t.isascii() and t.isalnum()]
        if self.max_length is not None:
            toks = [t for t in toks if len(t) <= self.max_length]
        if self.stemmer is not None:
            stem = _stem_fn(self.stemmer)
            toks = [stem(t) for t in toks]
        if self.stop_words:
            toks = [t for t in toks if t not in self.stop_words]
        return toks

    def emit(self, token: str) -> str | None:
        """What the filters after the tokenizer make of ``token`` (None: dropped), as ``tokens`` does."""
        if self.alphanumonly and not (token.isascii() and token.isalnum()):
            return None
        if self.max_length is not None and len(token) > self.max_length:
            return None
        if self.stemmer is not None:
            token = _stem_fn(self.stemmer)(token)
        return None if token in self.stop_words else token

    def char_spans(self, text: str) -> list[tuple[str, int, int, int]]:
        """``(token, start, end, position)`` of each kept token: character offsets in ``text`` (the
        characters the token came from, ``text[start:end]``) and the token's place in the tokenizer's
        stream. Tokens are the ones ``tokens`` makes. Where lowercasing or folding changes the text's
        length ("İ", ligatures, characters folding drops), offsets map back character by character."""
        src = text.lower() if self.lowercase else text
        if self.asciifolding:
            src = _fold(src)
        back = None if len(src) == len(text) else _origins(text, src, self.lowercase, self.asciifolding)
        out = []
        for pos, m in enumerate(_TOKENIZERS[self.tokenizer].finditer(src)):
            token = self.emit(m.group())
            if token is not None:
                start, end = m.span() if back is None else (back[m.start()], back[m.end() - 1] + 1)
                out.append((token, start, end, pos))
        return out

    def spans(self, text: str) -> list[tuple[str, int, int, int]]:
        """``char_spans`` with UTF-8 byte offsets in ``text``, as Milvus's RunAnalyzer reports them."""
        out = []
        for token, start, end, pos in self.char_spans(text):
            first = len(text[:start].encode("utf-8", "surrogatepass"))
            out.append((token, first, first + len(text[start:end].encode("utf-8", "surrogatepass")), pos))
        return out

    def term_frequencies(self, texts: Sequence[str]) -> np.ndarray:
        """The sparse column (vecdb.sparse's form) of each text's term counts: what Milvus's BM25
        function stores in its output field. Term ids are hashed once per distinct token."""
        per_row = [self.tokens(t) for t in texts]
        counts = np.fromiter(map(len, per_row), np.int64, len(per_row))
        flat = [t for toks in per_row for t in toks]
        if not flat:
            return sparse.column([b""] * len(per_row))
        # distinct tokens by a dict (a fixed-width string array would cost the longest token per token)
        vocab: dict[str, int] = {}
        inverse = np.fromiter((vocab.setdefault(t, len(vocab)) for t in flat), np.int64, len(flat))
        ids = term_ids(list(vocab))
        row = np.repeat(np.arange(len(per_row), dtype=np.int64), counts)
        term = ids[inverse].astype(np.int64)
        # count (row, term) pairs: one key per pair, sorted, so each row's indices come out increasing
        key = row << 32 | term
        uniq, n = np.unique(key, return_counts=True)
        pairs = np.empty(len(uniq), sparse.PAIR)
        pairs["i"] = (uniq & 0xFFFFFFFF).astype(np.uint32)
        pairs["v"] = n.astype(np.float32)
        nnz = np.bincount((uniq >> 32).astype(np.int64), minlength=len(per_row))
        return sparse.unpack(nnz, pairs.tobytes())

    def query_rows(self, texts: Sequence[str]) -> np.ndarray:
        """Search texts as term-frequency rows (Milvus analyzes query text with the same function)."""
        return self.term_frequencies(texts)


# --- text_match: which rows hold a term ------------------------------------------------------------
_MATCH_CACHE: dict[tuple, tuple] = {}
_MATCH_CACHE_MAX = 64


def term_rows(col: np.ndarray, analyzer: Analyzer) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, term ids)``: one pair per distinct (row, term) of a column of texts. Kept for the
    column's base array (a sealed segment's column, read again by every filter; a growing segment's
    buffer, whose rows below its length never change) while that array lives: a filter analyzes
    each row once, a longer prefix of the same array only its new rows."""
    root = col
    while isinstance(root.base, np.ndarray):
        root = root.base
    prefix = (col.ndim == 1 and root.ndim == 1 and root.strides == col.strides
              and root.__array_interface__["data"][0] == col.__array_interface__["data"][0])
    n = len(col)
    if not prefix:
        return _term_rows(col, 0, analyzer)
    key = (id(root), analyzer)
    hit = _MATCH_CACHE.get(key)
    if hit is None or hit[0]() is not root:  # (the entry goes with its array)
        hit = (weakref.ref(root, _forget(key)), 0, np.empty(0, np.int64), np.empty(0, np.uint32))
    done, rows, ids = hit[1], hit[2], hit[3]
    if done < n:  # analyze the rows past the ones done
        more_rows, more_ids = _term_rows(col[done:n], done, analyzer)
        rows, ids = np.concatenate([rows, more_rows]), np.concatenate([ids, more_ids])
        if key not in _MATCH_CACHE and len(_MATCH_CACHE) >= _MATCH_CACHE_MAX:
            _MATCH_CACHE.pop(next(iter(_MATCH_CACHE)))
        _MATCH_CACHE[key] = (hit[0], n, rows, ids)
    elif done > n:
        keep = rows < n
        rows, ids = rows[keep], ids[keep]
    return rows, ids


def _forget(key: tuple):
    def drop(_ref) -> None:
        _MATCH_CACHE.pop(key, None)

    return drop


def _term_rows(col: np.ndarray, first: int, analyzer: Analyzer) -> tuple[np.ndarray, np.ndarray]:
    csr = sparse.to_csr(analyzer.term_frequencies(col.tolist()))
    return np.repeat(np.arange(first, first + csr.n, dtype=np.int64), np.diff(csr.indptr)), csr.indices


def match_any(col: np.ndarray, analyzer: Analyzer, query_ids: np.ndarray, least: int = 1) -> np.ndarray:
    """Rows whose text holds any of ``query_ids`` (distinct; Milvus's text_match: any query token),
    or at least ``least`` of them (its ``minimum_should_match``)."""
    out = np.zeros(len(col), bool)
    if not len(query_ids) or not len(col) or least > len(query_ids):
        return out
    rows, ids = term_rows(col, analyzer)
    held = rows[np.isin(ids, query_ids)]  # (term_rows: one pair per distinct row and term)
    if least <= 1:
        out[held] = True
        return out
    return np.bincount(held, minlength=len(col)) >= least


def match_phrase(col: np.ndarray, analyzer: Analyzer, phrase: list[str], slop: int) -> np.ndarray:
    """Rows holding ``phrase`` (its tokens) within ``slop`` (Milvus's phrase_match, see
    ``vecdb.expr.predicates.PhraseMatch``): the rows holding every token of it, from the column's
    cached term index, then only their texts' token positions checked."""
    out = np.zeros(len(col), bool)
    if not phrase or not len(col):
        return out
    rows, ids = term_rows(col, analyzer)
    candidates = None
    for term in np.unique(term_ids(phrase)).tolist():
        with_term = np.unique(rows[ids == term])
        candidates = with_term if candidates is None else np.intersect1d(candidates, with_term, assume_unique=True)
        if not len(candidates):
            return out
    assert candidates is not None
    for row in candidates.tolist():
        out[row] = phrase_within(analyzer.tokens(str(col[row])), phrase, slop)
    return out


def phrase_within(tokens: list[str], phrase: list[str], slop: int) -> bool:
    """Whether ``tokens`` hold ``phrase`` at positions ``p_i`` whose offsets ``p_i - i`` span at most
    ``slop``: the narrowest window over the offsets that holds one of each phrase token."""
    where: dict[str, list[int]] = {}
    for i, t in enumerate(tokens):
        where.setdefault(t, []).append(i)
    offsets = [[p - j for p in where.get(q, ())] for j, q in enumerate(phrase)]
    if not all(offsets):
        return False
    if slop == 0:
        return bool(set(offsets[0]).intersection(*offsets[1:]))
    events = sorted((o, j) for j, os_ in enumerate(offsets) for o in os_)
    count, have, left = [0] * len(phrase), 0, 0
    for o, j in events:
        have += count[j] == 0
        count[j] += 1
        while have == len(phrase):
            if o - events[left][0] <= slop:
                return True
            lj = events[left][1]
            count[lj] -= 1
            have -= count[lj] == 0
            left += 1
    return False


# Milvus's stemmer languages (tantivy's rust-stemmers), all Snowball algorithms
STEMMER_LANGUAGES = ("arabic", "danish", "dutch", "english", "finnish", "french", "german", "greek", "hungarian",
                     "italian", "norwegian", "portuguese", "romanian", "russian", "spanish", "swedish", "tamil",
                     "turkish")
_STEMS: dict[str, Callable[[str], str]] = {}


def _stem_fn(language: str) -> Callable[[str], str]:
    """A Snowball stemmer (the snowballstemmer package), each distinct word stemmed once."""
    fn = _STEMS.get(language)
    if fn is None:
        import snowballstemmer  # type: ignore[import-untyped]  # noqa: PLC0415 - only stemming analyzers need it

        fn = _STEMS[language] = lru_cache(maxsize=200_000)(snowballstemmer.stemmer(language).stemWord)
    return fn


def _stemmer(language, where: str) -> str:
    lang = str(language).lower()
    if lang not in STEMMER_LANGUAGES:
        raise InvalidParameter(f"unsupported stemmer language {language!r}{where} (supported: "
                               f"{', '.join(STEMMER_LANGUAGES)})")
    try:
        _stem_fn(lang)
    except ImportError:
        raise InvalidParameter(f"the stemmer{where} needs the snowballstemmer package") from None
    return lang


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _origins(text: str, src: str, lowercase: bool, fold: bool) -> list[int]:
    """For each character of ``src`` (``text`` lowercased and/or folded, of another length), the index
    of the character of ``text`` it came from, by transforming each character alone. Both transforms
    act per character but for context rules (a final sigma) that keep lengths; should the lengths
    still differ, the map is cut or padded with the last character."""
    back: list[int] = []
    for i, c in enumerate(text):
        if lowercase:
            c = c.lower()
        if fold:
            c = _fold(c)
        back.extend([i] * len(c))
    return (back + [len(text) - 1] * len(src))[:len(src)]


def term_ids(tokens: Sequence[str]) -> np.ndarray:
    """Milvus's term id of each token (uint32)."""
    return np.fromiter(
        (zlib.crc32(t.encode("utf-8", "surrogatepass")[:MAX_HASHED_BYTES]) % _U32_MAX for t in tokens),
        np.uint32, len(tokens))


def parse_params(raw: str | dict | None, field_name: str = "") -> Analyzer:
    """An Analyzer from a field's ``analyzer_params`` (JSON text or a dict); 1100 on what vecdb
    does not build."""
    where = f" of field ({field_name})" if field_name else ""
    if raw is None or raw == "":
        return Analyzer()
    if isinstance(raw, str):
        try:
            params = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidParameter(f"analyzer params{where} are not valid JSON: {raw[:200]!r}") from None
    else:
        params = raw
    if not isinstance(params, dict):
        raise InvalidParameter(f"analyzer params{where} must be a JSON object, got {raw!r}")
    unknown = set(params) - {"type", "tokenizer", "filter", "stop_words", "max_token_length"}
    if unknown:
        raise InvalidParameter(f"unknown analyzer params{where}: {sorted(unknown)}")
    if "type" in params:
        if "tokenizer" in params or "filter" in params:
            raise InvalidParameter(f"analyzer params{where}: type cannot be given with tokenizer or filter")
        kind = params["type"]
        if kind not in ("standard", "english"):
            raise InvalidParameter(
                f"analyzer type {kind!r}{where} is not supported by vecdb (supported: standard, english; "
                "the chinese analyzer needs jieba)")
        words = _stop_words(params.get("stop_words", []), where)
        mtl = params.get("max_token_length")
        max_length = None if mtl is None else _positive(mtl, "max_token_length", where)
        if kind == "english":  # Milvus's: standard, lowercase, the English stemmer, English stop words
            return Analyzer(stop_words=words | ENGLISH_STOP_WORDS, max_length=max_length,
                            stemmer=_stemmer("english", where))
        return Analyzer(stop_words=words, max_length=max_length)
    for k in ("stop_words", "max_token_length"):
        if k in params:
            raise InvalidParameter(f"analyzer params{where}: {k} is a param of the standard analyzer type")
    tok = params.get("tokenizer", "standard")
    if isinstance(tok, dict):
        tok = tok.get("type")
    if not isinstance(tok, str) or tok not in _TOKENIZERS:
        raise InvalidParameter(
            f"tokenizer {tok!r}{where} is not supported by vecdb (supported: {', '.join(_TOKENIZERS)})")
    filters = params.get("filter", [])
    if not isinstance(filters, list):
        raise InvalidParameter(f"analyzer filter{where} must be a list, got {filters!r}")
    opts: dict = {"tokenizer": tok, "lowercase": False}
    stop: set[str] = set()
    for f in filters:
        if isinstance(f, str):
            if f not in _SIMPLE_FILTERS:
                raise InvalidParameter(f"filter {f!r}{where} is not supported by vecdb "
                                       f"(supported: {', '.join(_SIMPLE_FILTERS)}, stop, length, stemmer)")
            opts[f] = True
        elif isinstance(f, dict) and f.get("type") == "stop":
            stop |= _stop_words(f.get("stop_words", []), where)
        elif isinstance(f, dict) and f.get("type") == "length":
            opts["max_length"] = _positive(f.get("max"), "length filter max", where)
        elif isinstance(f, dict) and f.get("type") == "stemmer":
            opts["stemmer"] = _stemmer(f.get("language", ""), where)
        else:
            raise InvalidParameter(f"filter {f!r}{where} is not supported by vecdb "
                                   f"(supported: {', '.join(_SIMPLE_FILTERS)}, stop, length, stemmer)")
    return Analyzer(stop_words=frozenset(stop), **opts)


def _stop_words(words, where: str) -> frozenset[str]:
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InvalidParameter(f"stop_words{where} must be a list of strings, got {words!r}")
    out: set[str] = set()
    for w in words:
        out |= ENGLISH_STOP_WORDS if w == "_english_" else {w}
    return frozenset(out)


def _positive(v, what: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise InvalidParameter(f"{what}{where} must be a positive integer, got {v!r}")
    return v

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

- ``{"type": "chinese"}``: the jieba tokenizer (search mode, HMM, the default dictionary) and the
  ``cnalphanumonly`` filter, as Milvus's ``chinese_analyzer``; ``"stop_words"`` adds a stop filter.
- ``{"tokenizer": "jieba" | {"type": "jieba", "dict": [...], "mode": "search" | "exact", "hmm": bool}}``:
  Milvus's jieba tokenizer (tantivy-binding's ``jieba_tokenizer.rs`` over jieba-rs), here over the
  PyPI ``jieba`` package, which jieba-rs ports (the same dictionary, DAG, HMM and search-mode
  n-grams; ``vecdb.jieba_text``). Filters ``cnalphanumonly`` / ``cncharonly`` keep the tokens that
  hold a Han character or an ASCII letter or digit / a Han character.
- ``{"tokenizer": "icu" | {"type": "icu"}}``: Milvus's icu tokenizer (ICU's word break rules; Milvus
  runs ICU4X, vecdb ICU4C through the PyPI ``icu4py`` package: ``vecdb.icu_text``). Every segment is a
  token, spaces and punctuation too; the ``removepunct`` filter (any tokenizer) drops the tokens that
  hold a punctuation or white space character, as Milvus's ``[\\p{Punct}\\s]+`` test does.
- ``{"tokenizer": {"type": "lindera", "dict_kind": "ipadic" | "ko-dic", "filter": [...]}}``: Milvus's
  lindera tokenizer (Japanese and Korean morphemes; Lindera in Milvus, MeCab over the same dictionaries
  here, the ``vecdb[lindera]`` extra: ``vecdb.lindera_text``), with Lindera's tag filters in its own
  ``filter`` list; a token's position is its index in the tokenizer's stream.

- Filters ``{"type": "regex", "expr": ...}`` (tokens the pattern matches anywhere in kept),
  ``{"type": "decompounder", "word_list": [...]}`` (tantivy's SplitCompoundWords) and
  ``{"type": "synonym", "synonyms": [...], "expand": bool}`` (Milvus 2.6's synonym filter): an analyzer
  with one of them runs its filters in their listed order (``Analyzer.steps``); decompounded parts and
  synonyms share their token's position.

Files (Milvus 3.0's file resources, ``vecdb.file_resources``): a jieba tokenizer's ``extra_dict_file``
(lines ``word [frequency [tag]]``), a stop filter's ``stop_words_file`` (a word a line), a synonym filter's
``synonyms_file`` (a rule a line) and a decompounder's ``word_list_file`` (a word a line), each
``{"type": "remote", "resource_name": ..., "file_name": ...}``, add to the words or rules given inline; the
file is read when the analyzer is built (a missing resource or file: 1100 at create time).

Anything else (the other tokenizers and filters, ...) is refused at create time (1100), never
silently replaced.

The standard tokenizer is Milvus's default one (tantivy's ``SimpleTokenizer``; tantivy-binding's
``standard_tokenizer.rs`` without ``uax29``): runs of the characters Rust's ``char::is_alphanumeric``
takes (Unicode Alphabetic or Numeric), every other character a separator: "don't" is ``don``, ``t``,
"a_b" ``a``, ``b``, "3.14" ``3``, ``14``, "日本語" one token. The whitespace tokenizer (tantivy's) splits
at ASCII white space only (``char::is_ascii_whitespace``: space, tab, newline, form feed, carriage
return; a vertical tab or a no-break space is part of a token).

A token's term id is Milvus's: ``crc32(first 100 UTF-8 bytes) % (2^32 - 1)``
(``typeutil.HashString2LessUint32``), so the term-frequency vectors vecdb stores are the ones
Milvus's BM25 function writes for the same tokens.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import regex  # type: ignore[import-untyped]

from vecdb import file_resources, icu_text, jieba_text, lindera_text, sparse, str_keys
from vecdb.errors import InvalidParameter
from vecdb.jieba_text import DictFile, JiebaSpec
from vecdb.lindera_text import LinderaSpec
from vecdb.prefix_cache import ArrayCache, prefix_root

# Milvus's standard tokenizer (the module doc): Unicode Alphabetic or Numeric runs, as Rust's is_alphanumeric
_STANDARD = regex.compile(r"[\p{Alphabetic}\p{N}]+")
_WHITESPACE = re.compile(r"[^ \t\n\f\r]+")  # tantivy's WhitespaceTokenizer: char::is_ascii_whitespace
MAX_HASHED_BYTES = 100  # Milvus hashes a token's first 100 bytes
_U32_MAX = 2**32 - 1

# Lucene's / tantivy's English stop words (Milvus's "_english_")
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split())

_TOKENIZERS = {"standard": _STANDARD, "whitespace": _WHITESPACE}
_TOKENIZER_NAMES = (*_TOKENIZERS, "jieba", "icu", "lindera")
_SIMPLE_FILTERS = ("lowercase", "asciifolding", "alphanumonly", "cnalphanumonly", "cncharonly", "removepunct")
# Unicode's Han script (Rust regex's \p{Han}, which Milvus's cnalphanumonly / cncharonly filters use)
_HAN_SCRIPT = ("\u2e80-\u2e99\u2e9b-\u2ef3\u2f00-\u2fd5\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf"
               "\u4e00-\u9fff\uf900-\ufa6d\ufa70-\ufad9\U00016fe2\U00016fe3\U00016ff0\U00016ff1"
               "\U00020000-\U0002a6df\U0002a700-\U0002b739\U0002b740-\U0002b81d\U0002b820-\U0002cea1"
               "\U0002ceb0-\U0002ebe0\U0002ebf0-\U0002ee5d\U0002f800-\U0002fa1d\U00030000-\U0003134a"
               "\U00031350-\U000323af")
_CN_ALNUM = re.compile(f"[{_HAN_SCRIPT}a-zA-Z0-9]")  # a token holding one is kept (Milvus: is_match)
_CN_CHAR = re.compile(f"[{_HAN_SCRIPT}]")
# Unicode's White_Space (Rust regex's \s; str.isspace also takes U+001C..U+001F)
_WHITE_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                         "\u200a\u2028\u2029\u202f\u205f\u3000")


@lru_cache(maxsize=100_000)
def _byte_offsets(text: str) -> np.ndarray | None:
    """The UTF-8 byte offset of each character offset of ``text`` (``len(text) + 1`` of them; a lone
    surrogate counts 3 bytes, as ``surrogatepass`` writes it); None for ASCII text, whose offsets are
    the same. One pass over the text, however many tokens point into it."""
    if text.isascii():
        return None
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    width = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)
    return np.concatenate(([0], np.cumsum(width)))


def _utf8_len(token: str) -> int:
    """A token's length as Milvus's length filter counts it: UTF-8 bytes ("café" is 5)."""
    return len(token) if token.isascii() else len(token.encode("utf-8", "surrogatepass"))


def _has_punct(token: str) -> bool:
    """Whether Milvus's removepunct filter drops ``token``: its regex ``[\\p{Punct}\\s]+`` matches
    anywhere in it, so one punctuation (general category P) or white space character is enough."""
    return any(c in _WHITE_SPACE or unicodedata.category(c)[0] == "P" for c in token)


@dataclass(frozen=True)
class Analyzer:
    tokenizer: str = "standard"
    lowercase: bool = True
    asciifolding: bool = False
    alphanumonly: bool = False
    stop_words: frozenset[str] = field(default_factory=frozenset)
    max_length: int | None = None  # tokens longer in UTF-8 bytes are dropped (tantivy's RemoveLongFilter)
    stemmer: str | None = None  # a Snowball language: tokens stemmed (before the stop words, as Milvus)
    cn_alnum_only: bool = False  # cnalphanumonly: tokens holding a Han character or an ASCII letter / digit
    cn_char_only: bool = False  # cncharonly: tokens holding a Han character
    jieba: JiebaSpec | None = None  # the jieba tokenizer's params (tokenizer "jieba"; vecdb.jieba_text)
    remove_punct: bool = False  # removepunct: tokens holding punctuation or white space dropped
    lindera: LinderaSpec | None = None  # the lindera tokenizer's params (tokenizer "lindera"; vecdb.lindera_text)
    # An ordered analyzer (one with a regex, decompounder or synonym filter): its filters in their listed
    # order, but for a leading lowercase / asciifolding (the flags above); the other fields their defaults.
    steps: tuple[Step, ...] = ()
    # the steps over one token, memoized per distinct token (built from ``steps``; not pickled)
    _chain: Callable[[str], tuple[str, ...]] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self):
        if self.steps:
            object.__setattr__(self, "_chain", _make_chain(self.steps))

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_chain", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def expands(self) -> bool:
        """Whether a filter may put several tokens at one position (decompounder, synonym)."""
        return any(s.kind in _EXPANDING for s in self.steps)

    def _run(self, token: str) -> tuple[str, ...]:
        """The ordered filters over one token of the tokenizer: the tokens it becomes."""
        assert self._chain is not None
        return self._chain(token)

    def phrase(self, text: str) -> tuple[list[str], list[int] | None]:
        """``text``'s tokens and each one's position for ``phrase_within``. With the regex tokenizers, a
        token's place in the tokenizer's stream (tantivy's positions: a token a filter drops, a stop word
        or a long token, keeps its place, so "dogs running" is no exact phrase of "dogs are running"; the
        tokens one tokenizer token becomes share its place). With jieba, icu and lindera, where a filter
        puts several at one position, the rank of the tokenizer tokens that keep a token; None: each
        token's index."""
        if not self.segmenting:
            spans = self.char_spans(text)
            return [t for t, *_ in spans], [pos for *_, pos in spans]
        if not self.expands:
            return self.tokens(text), None
        spans = self.char_spans(text)
        positions, last, rank = [], None, -1
        for _, _, _, pos in spans:
            if pos != last:
                rank, last = rank + 1, pos
            positions.append(rank)
        return [t for t, *_ in spans], positions

    @property
    def segmenting(self) -> bool:
        """Whether the tokenizer segments the text (jieba, icu, lindera): the filters then act per token, and
        a token's position is its first character's index, its position length its width (lindera: its
        index in the tokenizer's stream, length 1)."""
        return self.jieba is not None or self.lindera is not None or self.tokenizer == "icu"

    def tokens(self, text: str) -> list[str]:
        if self.segmenting:
            return [t for t, *_ in self._segment_spans(text)]
        toks = self._cased(_TOKENIZERS[self.tokenizer].findall(text))
        if self.steps:
            return [o for t in toks for o in self._run(t)]
        if self.alphanumonly:
            toks = [t for t in toks if t.isascii() and t.isalnum()]
        if self.remove_punct:
            toks = [t for t in toks if not _has_punct(t)]
        if self.cn_alnum_only:
            toks = [t for t in toks if _CN_ALNUM.search(t)]
        if self.cn_char_only:
            toks = [t for t in toks if _CN_CHAR.search(t)]
        if self.max_length is not None:
            toks = [t for t in toks if _utf8_len(t) <= self.max_length]
        if self.stemmer is not None:
            stem = _stem_fn(self.stemmer)
            toks = [stem(t) for t in toks]
        if self.stop_words:
            toks = [t for t in toks if t not in self.stop_words]
        return toks

    def _cased(self, toks: list[str]) -> list[str]:
        """The tokenizer's tokens through ``lowercase`` and ``asciifolding``: token filters in Milvus, after
        the tokenizer ("İ" lowercases to "i" and a combining dot, which the tokenizer would cut; folding keeps
        what it cannot fold, "жук" stays "жук")."""
        if self.lowercase and toks:
            toks = " ".join(toks).translate(_LOWER_TABLE).split(" ")  # no token holds a space, nor its lower case
        if self.asciifolding:
            toks = [t if t.isascii() else t.translate(_FOLD_TABLE) for t in toks]
        return toks

    def emit(self, token: str) -> str | None:
        """What the filters after the tokenizer make of ``token`` (None: dropped), as ``tokens`` does."""
        if self.alphanumonly and not (token.isascii() and token.isalnum()):
            return None
        if self.remove_punct and _has_punct(token):
            return None
        if (self.cn_alnum_only and not _CN_ALNUM.search(token)) or (self.cn_char_only and not _CN_CHAR.search(token)):
            return None
        if self.max_length is not None and _utf8_len(token) > self.max_length:
            return None
        if self.stemmer is not None:
            token = _stem_fn(self.stemmer)(token)
        return None if token in self.stop_words else token

    def char_spans(self, text: str) -> list[tuple[str, int, int, int]]:
        """``(token, start, end, position)`` of each kept token: character offsets in ``text`` (the
        characters the token came from, ``text[start:end]``) and the token's place in the tokenizer's
        stream. Tokens are the ones ``tokens`` makes. Where lowercasing or folding changes the text's
        length ("İ", ligatures, characters folding drops), offsets map back character by character.
        A jieba or icu token's position is its start character (Milvus's tokenizers report that)."""
        if self.segmenting:
            return self._segment_spans(text)
        matches = list(_TOKENIZERS[self.tokenizer].finditer(text))
        out: list[tuple[str, int, int, int]] = []
        for pos, (m, word) in enumerate(zip(matches, self._cased([m.group() for m in matches]))):
            if self.steps:
                toks = self._run(word)
            else:
                token = self.emit(word)
                toks = () if token is None else (token,)
            if toks:
                start, end = m.span()
                out.extend((token, start, end, pos) for token in toks)
        return out

    def spans(self, text: str) -> list[tuple[str, int, int, int, int]]:
        """``char_spans`` with UTF-8 byte offsets in ``text`` and each token's position length, as
        Milvus's RunAnalyzer reports them (1, but a jieba or icu token's width in characters)."""
        out = []
        plens: list[int] = []
        spans = self._segment_spans(text, plens) if self.segmenting else self.char_spans(text)
        at = _byte_offsets(text) if spans else None
        for i, (token, start, end, pos) in enumerate(spans):
            first, last = (start, end) if at is None else (int(at[start]), int(at[end]))
            out.append((token, first, last, pos, plens[i] if self.segmenting else 1))
        return out

    def _segment_spans(self, text: str, plens: list[int] | None = None) -> list[tuple[str, int, int, int]]:
        """jieba's, icu's or lindera's tokens through the filters: lowercase and asciifolding per token
        (they come after the tokenizer in Milvus; folding keeps the characters it cannot fold), then
        ``emit``; each kept token's position length appended to ``plens`` when given."""
        if self.lindera is not None:
            words = lindera_text.tokenize(self.lindera, text)
        else:
            cut = icu_text.tokenize(text) if self.jieba is None else jieba_text.tokenize(self.jieba, text)
            words = [(w, s, e, s, e - s) for w, s, e in cut]
        out: list[tuple[str, int, int, int]] = []
        for word, start, end, pos, plen in words:
            if self.lowercase:
                word = word.translate(_LOWER_TABLE)
            if self.asciifolding:
                word = word.translate(_FOLD_TABLE)
            if self.steps:
                kept = self._run(word)
                out.extend((token, start, end, pos) for token in kept)
                if plens is not None:
                    plens.extend([plen] * len(kept))
                continue
            token = self.emit(word)
            if token is not None:
                out.append((token, start, end, pos))
                if plens is not None:
                    plens.append(plen)
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
_MATCH_CACHE = ArrayCache(64)  # (done, rows, term ids) per column array and analyzer


def term_rows(col: np.ndarray, analyzer: Analyzer) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, term ids)``: one pair per distinct (row, term) of a column of texts, kept for the
    column's base array while it lives (``vecdb.prefix_cache``): a filter analyzes each row once, a
    longer prefix of the same array only its new rows."""
    root, n = prefix_root(col), len(col)
    if root is None:
        return _term_rows(col, 0, analyzer)
    done, rows, ids = _MATCH_CACHE.get(root, analyzer) or (0, np.empty(0, np.int64), np.empty(0, np.uint32))
    if done < n:  # analyze the rows past the ones done
        more_rows, more_ids = _term_rows(col[done:n], done, analyzer)
        rows, ids = np.concatenate([rows, more_rows]), np.concatenate([ids, more_ids])
        _MATCH_CACHE.put(root, (n, rows, ids), analyzer)
    elif done > n:
        keep = rows < n
        rows, ids = rows[keep], ids[keep]
    return rows, ids


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


def match_phrase(col: np.ndarray, analyzer: Analyzer, phrase: list[str], slop: int,
                 positions: list[int] | None = None) -> np.ndarray:
    """Rows holding ``phrase`` (its tokens) within ``slop`` (Milvus's phrase_match, see
    ``vecdb.expr.predicates.PhraseMatch``): the rows holding every token of it, from the column's
    cached term index, then only their texts' token positions checked. ``positions``: the phrase
    tokens' positions (``Analyzer.phrase``), None: their indices."""
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
        if analyzer.expands or not analyzer.segmenting:
            tokens, token_pos = analyzer.phrase(str(col[row]))
            out[row] = phrase_within(tokens, phrase, slop, token_pos, positions)
        else:
            out[row] = phrase_within(analyzer.tokens(str(col[row])), phrase, slop)
    return out


def phrase_within(tokens: list[str], phrase: list[str], slop: int, token_pos: list[int] | None = None,
                  phrase_pos: list[int] | None = None) -> bool:
    """Whether ``tokens`` hold ``phrase`` at positions ``p_i`` whose offsets ``p_i - i`` span at most
    ``slop``: the narrowest window over the offsets that holds one of each phrase token. Positions are
    the indices, or ``token_pos`` / ``phrase_pos`` where given (tokens sharing a position: each needed)."""
    where: dict[str, list[int]] = {}
    for i, t in enumerate(tokens):
        where.setdefault(t, []).append(i if token_pos is None else token_pos[i])
    offsets = [[p - (j if phrase_pos is None else phrase_pos[j]) for p in where.get(q, ())]
               for j, q in enumerate(phrase)]
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


# --- the filters that apply in their listed order (Milvus's regex, decompounder, synonym) ------------
ORDERED_KINDS = ("regex", "decompounder", "synonym")  # filters whose presence makes an analyzer ordered
_EXPANDING = ("decompounder", "synonym")  # filters that may put several tokens at one position
_REGEX_TIMEOUT_S = 1.0  # a match running longer keeps the token (fancy-regex's backtrack limit: is_match errs)


@dataclass(frozen=True)
class Step:
    """One token filter of an ordered analyzer: ``kind`` (a filter name) and ``arg`` (its hashable
    params), ``run`` a token to the tokens it becomes (none: dropped; several: at the token's place)."""

    kind: str
    arg: object = None
    run: Callable[[str], tuple[str, ...]] = field(default=None, compare=False, hash=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self):
        if self.run is None:
            object.__setattr__(self, "run", _step_fn(self.kind, self.arg))

    def __reduce__(self):  # pickled and copied by its params (``run`` is rebuilt)
        return Step, (self.kind, self.arg)


def _make_chain(steps: tuple[Step, ...]) -> Callable[[str], tuple[str, ...]]:
    """The steps one after the other over a token, each distinct token run once (they are pure)."""
    runs = [step.run for step in steps]

    @lru_cache(maxsize=200_000)
    def chain(token: str) -> tuple[str, ...]:
        toks: tuple[str, ...] = (token,)
        for run in runs:
            toks = run(toks[0]) if len(toks) == 1 else tuple(o for t in toks for o in run(t))
            if not toks:
                break
        return toks
    return chain


def _keep(pred: Callable[[str], object]) -> Callable[[str], tuple[str, ...]]:
    return lambda t: (t,) if pred(t) else ()


def _step_fn(kind: str, arg) -> Callable[[str], tuple[str, ...]]:
    if kind == "lowercase":
        return lambda t: (t.translate(_LOWER_TABLE),)
    if kind == "asciifolding":  # per token, as tantivy's AsciiFoldingFilter: what cannot fold is kept
        return lambda t: (t if t.isascii() else t.translate(_FOLD_TABLE),)
    if kind == "alphanumonly":
        return _keep(lambda t: t.isascii() and t.isalnum())
    if kind == "removepunct":
        return _keep(lambda t: not _has_punct(t))
    if kind == "cnalphanumonly":
        return _keep(_CN_ALNUM.search)
    if kind == "cncharonly":
        return _keep(_CN_CHAR.search)
    if kind == "length":
        return _keep(lambda t: _utf8_len(t) <= arg)
    if kind == "stemmer":
        stem = _stem_fn(arg)
        return lambda t: (stem(t),)
    if kind == "stop":
        return _keep(lambda t: t not in arg)
    if kind == "regex":
        return _keep(_regex_matcher(arg))
    if kind == "decompounder":
        return _decompounder(arg)
    if kind == "synonym":
        table = dict(arg)
        return lambda t: table.get(t) or (t,)
    raise AssertionError(kind)


# -- regex: Milvus's RegexFilter keeps the tokens its fancy-regex pattern matches anywhere in (is_match,
# not a full match); a pattern that fails to compile is refused at create time.
def _regex_compile(expr: str):
    """The pattern compiled by the ``regex`` package (Rust regex's ``\\p{Han}``, ``(?<name>..)``, atomic
    groups and possessive quantifiers, as fancy-regex); Rust's end-of-text ``\\z`` is Python's ``\\Z``.
    Raises ``ValueError`` (the engine's message)."""
    src = re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", expr)
    try:
        return regex.compile(src, regex.V0)
    except (regex.error, OverflowError, RecursionError, ValueError) as e:
        raise ValueError(str(e)) from None


@lru_cache(maxsize=256)
def _regex_matcher(expr: str) -> Callable[[str], bool]:
    pattern = _regex_compile(expr)

    def matches(token: str) -> bool:
        try:
            return pattern.search(token, timeout=_REGEX_TIMEOUT_S) is not None
        except TimeoutError:
            return True  # Milvus: a match error (fancy-regex's backtrack limit) keeps the token
    return matches


# -- decompounder: tantivy's SplitCompoundWords over an Aho-Corasick automaton (leftmost-longest): from
# the token's start, the longest dictionary word there, again and again; the token becomes these parts
# (each at its place and offsets) only if they cover it to its end, else it stays whole. Greedy: a
# shorter word that would have let the rest split is never tried (as tantivy).
def _decompounder(words: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    vocab = frozenset(w for w in words if w)  # an empty word never changes a split (see the tests)
    lengths = sorted({len(w) for w in vocab}, reverse=True)

    @lru_cache(maxsize=100_000)
    def split(token: str) -> tuple[str, ...]:
        parts, pos, n = [], 0, len(token)
        while pos < n:
            for size in lengths:
                if pos + size <= n and token[pos:pos + size] in vocab:
                    parts.append(token[pos:pos + size])
                    pos += size
                    break
            else:
                return (token,)
        return tuple(parts) or (token,)
    return split


# -- synonym: Milvus 2.6's SynonymFilter (tantivy-binding synonym_filter.rs): Solr-style rules, each
# "a, b, c" (equivalent words) or "a, b => x, y" (a and b become x and y).
def _synonym_rule(row: str, where: str) -> tuple[list[str], list[str], bool]:
    """One rule's words left and right of ``=>`` and whether it has one, read as Milvus does: words
    separated by ``,``; spaces around words skipped, a space inside one refused; ``\\`` escapes ``,``,
    ``\\``, a space and ``=>``."""
    left: list[str] = []
    right: list[str] = []
    word: list[str] = []
    mapping = spaced = False
    i, n = 0, len(row)

    def flush() -> None:
        if word:
            (right if mapping else left).append("".join(word))
            word.clear()

    while i < n:
        c = row[i]
        if c == "\\":
            if i + 1 >= n:
                raise InvalidParameter(f"invalid synonym escaped in the end: {row}{where}")
            nxt = row[i + 1]
            if nxt in ", \\":
                word.append(nxt)
                i += 2
            elif row.startswith("=>", i + 1):
                word.append("=>")
                i += 3
            else:
                raise InvalidParameter(f"invalid synonym escaped: \\{nxt} in {row}{where}")
            continue
        if c == " ":
            if word:  # a space after a word: the word ends (a word may still follow a "," or "=>")
                while i + 1 < n and row[i + 1] == " ":
                    i += 1
                spaced = True
            i += 1
            continue
        if c == ",":
            flush()
            spaced = False
            i += 1
            continue
        if row.startswith("=>", i):
            if mapping:
                raise InvalidParameter(f'read synonym dict failed, has more than one "=>" in {row}{where}')
            flush()
            mapping, spaced = True, False
            i += 2
            continue
        if spaced:
            raise InvalidParameter(f"read synonym dict failed, has space between words {row}, please use \\ to "
                                   f"escape space{where}")
        word.append(c)
        i += 1
    flush()
    return left, right, mapping


def _synonyms(f: dict, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The synonym filter's table: each word and the tokens it becomes. With ``expand`` (the default)
    a word of "a, b, c" becomes all three, and a word left of "=>" also stays; without, a word of
    "a, b, c" becomes "a" and one left of "=>" only the right words. A word of several rules gets the
    words of each (merged, as Milvus's dict)."""
    expand = f.get("expand", True)
    if not isinstance(expand, bool):
        raise InvalidParameter(f"create synonym filter failed, `expand` must be bool{where}")
    rows = f.get("synonyms", [])
    if not isinstance(rows, list):
        raise InvalidParameter(f"create synonym filter failed, `synonyms` must be array{where}")
    if "synonyms_file" in f:  # a file resource's lines, one rule each, after the listed rules
        lines = file_resources.read_lines(f["synonyms_file"], "synonyms_file (synonyms file)", where)
        rows = [*rows, *(r for r in lines if r)]
    table: dict[str, dict[str, None]] = {}

    def add(key: str, words: list[str]) -> None:
        if key in table:
            table[key].update(dict.fromkeys(words))
        else:
            table[key] = dict.fromkeys(words)
            if expand:
                table[key][key] = None

    for row in rows:
        if not isinstance(row, str):
            raise InvalidParameter(f"create synonym filter failed, item in `synonyms` must be string{where}")
        left, right, mapping = _synonym_rule(row, where)
        if mapping:
            for key in left:
                add(key, right)
        else:
            for key in left:
                add(key, left if expand else left[:1])
    return tuple((k, tuple(v)) for k, v in table.items())


def _filter_step(f, where: str) -> Step:
    """A filter of the ``filter`` list as a Step, checked (Milvus's messages for the ordered ones)."""
    supported = f"(supported: {', '.join(_SIMPLE_FILTERS)}, stop, length, stemmer, regex, decompounder, synonym)"
    if isinstance(f, str):
        if f not in _SIMPLE_FILTERS:
            raise InvalidParameter(f"filter {f!r}{where} is not supported by vecdb {supported}")
        return Step(f)
    kind = f.get("type") if isinstance(f, dict) else None
    if kind == "stop":
        stop = _stop_words(f.get("stop_words", []), where)
        if "stop_words_file" in f:  # a file resource's lines, one word each (taken as they are)
            stop |= frozenset(file_resources.read_lines(f["stop_words_file"], "stop_words_file (stop words dict file)",
                                                        where))
        return Step("stop", stop)
    if kind == "length":
        return Step("length", _positive(f.get("max"), "length filter max", where))
    if kind == "stemmer":
        return Step("stemmer", _stemmer(f.get("language", ""), where))
    if kind == "regex":
        if "expr" not in f:
            raise InvalidParameter(f"must set expr for regex filter{where}")
        expr = f["expr"]
        if not isinstance(expr, str):
            raise InvalidParameter(f"expr must be string{where}")
        try:
            _regex_matcher(expr)
        except ValueError as e:
            raise InvalidParameter(f"regex expression invalid, expr:{expr}, err: {e}{where}") from None
        return Step("regex", expr)
    if kind == "decompounder":
        words = f.get("word_list", [])
        if not isinstance(words, list):
            raise InvalidParameter(f"decompounder word list should be array{where}")
        if not all(isinstance(w, str) for w in words):
            raise InvalidParameter(f"decompounder word list item should be string{where}")
        if "word_list_file" in f:  # a file resource's lines, one word each, after the listed words
            words = [*words, *file_resources.read_lines(f["word_list_file"],
                                                        "word_list_file (decompounder word list file)", where)]
        if not words:
            raise InvalidParameter(f"decompounder word list is empty{where}")
        return Step("decompounder", tuple(words))
    if kind == "synonym":
        return Step("synonym", _synonyms(f, where))
    raise InvalidParameter(f"filter {f!r}{where} is not supported by vecdb {supported}")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


class _CharMap(dict):
    """A ``str.translate`` table that maps each character by ``fn`` on its first use."""

    def __init__(self, fn: Callable[[str], str]):
        super().__init__()
        self.fn = fn

    def __missing__(self, code: int) -> str:
        out = self[code] = self.fn(chr(code))
        return out


# Latin letters with an ASCII equivalent in tantivy's AsciiFoldingFilter that have no decomposition
_FOLDS = {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ð": "d",
          "Ð": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ı": "i", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T",
          "ŋ": "n", "Ŋ": "N", "ƒ": "f", "ſ": "s", "ĸ": "q"}
# tantivy's token filters act per character: lowercase as Rust's char::to_lowercase (no final-sigma rule),
# asciifolding keeping what it cannot fold
_LOWER_TABLE = _CharMap(str.lower)
_FOLD_TABLE = _CharMap(lambda c: _FOLDS.get(c) or _fold_char(c))


def _fold_char(c: str) -> str:
    """A character's ASCII form by its decomposition, as tantivy's table has it for accented letters,
    ligatures, full-width, circled and parenthesized forms; kept where the table leaves it: font and
    fraction variants, letterlike symbols ("ℂ", "½", "™"), Roman numerals, canonical singletons (the
    Kelvin sign), a decomposition to a space and a mark ("¨"), none at all (CJK, Cyrillic)."""
    dec = unicodedata.decomposition(c)
    if (dec.startswith(("<font>", "<fraction>")) or "\u2100" <= c <= "\u218f"
            or (dec and not dec.startswith("<") and " " not in dec)):
        return c
    folded = _fold(c)
    return folded if folded and " " not in folded else c


def term_ids(tokens: Sequence[str]) -> np.ndarray:
    """Milvus's term id of each token (uint32)."""
    return np.fromiter(
        (zlib.crc32(t.encode("utf-8", "surrogatepass")[:MAX_HASHED_BYTES]) % _U32_MAX for t in tokens),
        np.uint32, len(tokens))


@dataclass(frozen=True)
class MultiAnalyzer:
    """A field's ``multi_analyzer_params`` (Milvus 2.5.x / 2.6 multi-language analyzers): named analyzers,
    the field (``by_field``, a VARCHAR) whose value in a row names the one that analyzes the row's text,
    and aliases of the names. A name resolves as Milvus's ``MultiAnalyzerBM25FunctionRunner.getAnalyzer``
    does: through the alias map, then to the analyzer of that name, else to ``default`` (an empty or
    missing value too)."""

    by_field: str
    analyzers: tuple[tuple[str, Analyzer], ...]
    alias: tuple[tuple[str, str], ...] = ()

    def resolve(self, name: str | None) -> str:
        names, alias = dict(self.analyzers), dict(self.alias)
        for candidate in (name or "", "default"):
            candidate = alias.get(candidate, candidate)
            if candidate in names:
                return candidate
        return "default"

    def analyzer(self, name: str | None) -> Analyzer:
        """The analyzer ``name`` selects (a search's ``analyzer_name``, a row's ``by_field`` value)."""
        return dict(self.analyzers)[self.resolve(name)]

    def groups(self, names: Sequence) -> list[tuple[Analyzer, np.ndarray]]:
        """The rows (indices into ``names``, each row's ``by_field`` value; None: null) of each analyzer."""
        keys = np.fromiter((v if isinstance(v, str) else "" for v in names), object, len(names))
        if not len(keys):
            return []
        uniq, inverse = np.unique(str_keys.exact(keys), return_inverse=True)  # ("en\x00" is not "en")
        resolved = np.array([self.resolve(u) for u in uniq.tolist()], dtype=object)
        row_names = resolved[inverse]
        return [(self.analyzer(n), np.flatnonzero(row_names == n)) for n in dict.fromkeys(resolved.tolist())]

    def term_frequencies(self, texts: Sequence[str], names: Sequence) -> np.ndarray:
        """Each row's term counts (``Analyzer.term_frequencies``), every analyzer run once over its rows."""
        out = np.empty(len(texts), object)
        for analyzer, rows in self.groups(names):
            out[rows] = analyzer.term_frequencies([texts[i] for i in rows.tolist()])
        return out


MULTI_ANALYZER_KEYS = ("analyzers", "by_field", "alias")


def parse_multi_params(raw: str, field_name: str = "") -> MultiAnalyzer:
    """A MultiAnalyzer from a field's ``multi_analyzer_params`` (JSON text), checked as Milvus's
    ``validateMultiAnalyzerParams`` does, with its messages (1100), but for ``by_field``'s field, which
    the schema checks (vecdb.schema). Built once per params and file resources they read."""
    return _parse_multi_params(raw, field_name, file_resources.resource_key(raw))


@lru_cache(maxsize=256)
def _parse_multi_params(raw: str, field_name: str, _resources: tuple) -> MultiAnalyzer:
    where = f" of field ({field_name})" if field_name else ""
    try:
        params = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidParameter(f"multi analyzer params{where} are not valid JSON: {raw[:200]!r}") from None
    if not isinstance(params, dict):
        raise InvalidParameter(f"multi analyzer params{where} must be a JSON object, got {raw[:200]!r}")
    if "by_field" not in params:
        raise InvalidParameter("multi analyzer params now must set by_field to specify with field decide analyzer")
    by_field = params["by_field"]
    if not isinstance(by_field, str):
        raise InvalidParameter(f"multi analyzer params by_field must be string but now: {json.dumps(by_field)}")
    alias = params.get("alias", {})
    if alias is None:
        alias = {}
    if not isinstance(alias, dict) or not all(isinstance(v, str) for v in alias.values()):
        raise InvalidParameter(f"multi analyzer alias must be string map but now: {json.dumps(alias)}")
    if "analyzers" not in params:
        raise InvalidParameter("multi analyzer params must set analyzers ")
    analyzers = params["analyzers"]
    if not isinstance(analyzers, dict):
        raise InvalidParameter(f"unmarshal analyzers failed: analyzers must be a JSON object, got "
                               f"{json.dumps(analyzers)[:200]}")
    built = []
    for name, sub in analyzers.items():
        try:
            built.append((name, parse_params(sub if isinstance(sub, dict) else json.dumps(sub))))
        except InvalidParameter as e:
            raise InvalidParameter(f"analyzer {name} params invalid: {e.message}") from None
    if "default" not in analyzers:
        raise InvalidParameter("multi analyzer must set default analyzer for all unknown value")
    return MultiAnalyzer(by_field, tuple(built), tuple(alias.items()))


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
        if kind not in ("standard", "english", "chinese"):
            raise InvalidParameter(
                f"analyzer type {kind!r}{where} is not supported by vecdb (supported: standard, english, chinese)")
        words = _stop_words(params.get("stop_words", []), where)
        if kind == "chinese":  # Milvus's chinese_analyzer: jieba's defaults, cnalphanumonly, the stop words given
            if "max_token_length" in params:
                raise InvalidParameter(f"analyzer params{where}: max_token_length is not a param of the chinese "
                                       "analyzer")
            return Analyzer(tokenizer="jieba", lowercase=False, jieba=_jieba_spec({}, where), cn_alnum_only=True,
                            stop_words=words)
        mtl = params.get("max_token_length")
        max_length = None if mtl is None else _positive(mtl, "max_token_length", where)
        if kind == "english":  # Milvus's: standard, lowercase, the English stemmer, English stop words
            return Analyzer(stop_words=words | ENGLISH_STOP_WORDS, max_length=max_length,
                            stemmer=_stemmer("english", where))
        return Analyzer(stop_words=words, max_length=max_length)
    for k in ("stop_words", "max_token_length"):
        if k in params:
            raise InvalidParameter(f"analyzer params{where}: {k} is a param of the standard analyzer type")
    tok_params = params.get("tokenizer", "standard")
    tok = tok_params.get("type") if isinstance(tok_params, dict) else tok_params
    if not isinstance(tok, str) or tok not in _TOKENIZER_NAMES:
        raise InvalidParameter(
            f"tokenizer {tok!r}{where} is not supported by vecdb (supported: {', '.join(_TOKENIZER_NAMES)})")
    filters = params.get("filter", [])
    if not isinstance(filters, list):
        raise InvalidParameter(f"analyzer filter{where} must be a list, got {filters!r}")
    opts: dict = {"tokenizer": tok, "lowercase": False}
    if tok == "jieba":
        opts["jieba"] = _jieba_spec(tok_params if isinstance(tok_params, dict) else {}, where)
    elif tok == "icu":
        _icu_check(tok_params if isinstance(tok_params, dict) else {}, where)
    elif tok == "lindera":
        opts["lindera"] = _lindera_spec(tok_params if isinstance(tok_params, dict) else None, where)
    steps = [_filter_step(f, where) for f in filters]
    if any(step.kind in ORDERED_KINDS for step in steps):  # filters in their order (a leading lowercase /
        lead = 0                                            # asciifolding over the whole text, as below)
        while lead < len(steps) and steps[lead].kind in ("lowercase", "asciifolding"):
            opts[steps[lead].kind] = True
            lead += 1
        return Analyzer(steps=tuple(steps[lead:]), **opts)
    stop: set[str] = set()
    for step in steps:  # the fixed order of Analyzer.tokens, whatever the list's
        if step.kind == "stop":
            stop |= step.arg  # type: ignore[arg-type]
        elif step.kind in ("length", "stemmer"):
            opts["max_length" if step.kind == "length" else "stemmer"] = step.arg
        else:
            opts[_FILTER_FIELDS.get(step.kind, step.kind)] = True
    return Analyzer(stop_words=frozenset(stop), **opts)


_FILTER_FIELDS = {"cnalphanumonly": "cn_alnum_only", "cncharonly": "cn_char_only", "removepunct": "remove_punct"}


def _icu_check(params: dict, where: str) -> None:
    """The icu tokenizer takes no params (Milvus builds it from its name alone); icu4py must import."""
    unknown = set(params) - {"type"}
    if unknown:
        raise InvalidParameter(f"unknown icu tokenizer params{where}: {sorted(unknown)} (it takes none)")
    if not icu_text.available():
        raise InvalidParameter(f"the icu tokenizer{where} needs the icu4py package")


def _lindera_spec(params: dict | None, where: str) -> LinderaSpec:
    """A lindera tokenizer's params, checked as tantivy-binding's ``LinderaTokenizer::from_json`` does
    (its messages, in its order): ``dict_kind``, then the dictionary (vecdb has ``ipadic`` and ``ko-dic``;
    the others are refused as Milvus refuses a dictionary not compiled in), then ``sentence_split_chars``
    (Milvus 3.0.2; its messages not seen: tantivy-binding's ``get_string_list`` style), then the ``filter``
    list."""
    if params is None:
        raise InvalidParameter(f"lindera tokenizer must be costum{where}")
    unknown = set(params) - {"type", "dict_kind", "filter", "dict_build_dir", "download_urls", "sentence_split_chars"}
    if unknown:
        raise InvalidParameter(f"unknown lindera tokenizer params{where}: {sorted(unknown)} (vecdb takes dict_kind, "
                               "filter, dict_build_dir, download_urls and sentence_split_chars)")
    if "dict_kind" not in params:
        raise InvalidParameter(f"lindera tokenizer dict_kind must be set{where}")
    kind = params["dict_kind"]
    if not isinstance(kind, str):
        raise InvalidParameter(f"lindera tokenizer dict kind should be string{where}")
    if kind not in lindera_text.DICT_KINDS:
        raise InvalidParameter(f"unsupported lindera dict type: {kind}{where}")
    # Milvus 2.6's dictionary build directory and download addresses: checked as Milvus does, not used (vecdb's
    # dictionaries come with the vecdb[lindera] extra)
    if not isinstance(params.get("dict_build_dir", ""), str):
        raise InvalidParameter(f"dict build dir must be string{where}")
    urls = params.get("download_urls", [])
    if not isinstance(urls, list):
        raise InvalidParameter(f"lindera dict download urls should be array{where}")
    if not all(isinstance(u, str) for u in urls):
        raise InvalidParameter(f"lindera dict download urls list item should be string{where}")
    if kind not in lindera_text.AVAILABLE_KINDS:
        raise InvalidParameter(f"lindera tokenizer with invalid dict_kind{where} (vecdb has the ipadic and ko-dic "
                               f"dictionaries, not {kind})")
    missing = lindera_text.missing_package(kind)
    if missing:
        raise InvalidParameter(f"the lindera tokenizer{where} needs the {missing} package: install vecdb[lindera]")
    # Milvus 3.0.2's sentence_split_chars (milvus#52611): the characters the text is cut after, [] for none
    split = params.get("sentence_split_chars", list(lindera_text.SPLIT_CHARS))
    if not isinstance(split, list):
        raise InvalidParameter(f"lindera sentence split chars should be array{where}")
    if not all(isinstance(c, str) for c in split):
        raise InvalidParameter(f"lindera sentence split chars list item should be string{where}")
    bad = [c for c in split if len(c) != 1]  # (one character: a Rust char, a code point)
    if bad:
        raise InvalidParameter(f"lindera sentence split chars list item should be a single character{where}: "
                               f"{bad[0]!r}")
    filters = params.get("filter", [])
    if not isinstance(filters, list):
        raise InvalidParameter(f"lindera filters should be array{where}")
    return LinderaSpec(kind, tuple(_lindera_filter(f, where) for f in filters), lindera_text.split_set(split))


def _lindera_filter(f, where: str) -> lindera_text.Filter:
    """One of a lindera tokenizer's filters (tantivy-binding's ``fetch_lindera_token_filter``)."""
    if isinstance(f, str):
        name, params = f, None
    elif not isinstance(f, dict):
        raise InvalidParameter(f"lindera tokenizer filter params must be object{where}")
    elif "kind" not in f:
        raise InvalidParameter(f"lindera tokenizer filter must have type{where}")
    elif not isinstance(f["kind"], str):
        raise InvalidParameter(f"lindera tokenizer filter type should be string{where}")
    else:
        name, params = f["kind"], f
    if name not in lindera_text.FILTER_KINDS:
        raise InvalidParameter(f"unknown lindera filter type{where}")
    if params is None:
        what = name.replace("_", " ").replace("tags", "tags filter").replace("word", "word filter")
        raise InvalidParameter(f"lindera {what} must use with params{where}")
    if "tags" not in params:  # (Milvus's messages for every filter kind)
        raise InvalidParameter(f"lindera japanese stop tag filter tags must be set{where}")
    tags = params["tags"]
    if not isinstance(tags, list):
        raise InvalidParameter(f"lindera japanese stop tags filter tags must be array{where}")
    if not all(isinstance(t, str) for t in tags):
        raise InvalidParameter(f"lindera japanese stop tags filter tags must be string{where}")
    new_tag = params.get("new_tag") if name == "japanese_compound_word" else None
    if name == "japanese_compound_word" and "new_tag" in params and not isinstance(new_tag, str):
        raise InvalidParameter(f"lindera japanese compound word filter new_tag must be string{where}")
    return lindera_text.make_filter(name, tags, new_tag)


def _jieba_spec(params: dict, where: str) -> JiebaSpec:
    """A jieba tokenizer's params, checked as tantivy-binding's ``JiebaTokenizer::from_json`` does (its
    messages): ``dict`` a list of strings (``"_default_"``: the default dictionary; without ``dict``
    too; one system dictionary at most; empty words skipped), ``mode`` ``"exact"`` or ``"search"`` (the
    default), ``hmm`` a bool (default true). ``"_extend_default_"`` (Milvus's ``dict.txt.big``, which
    jieba-rs loads instead of ``dict.txt``: the default words and Traditional Chinese ones) is refused:
    the PyPI jieba package ships only ``dict.txt``, and the default dictionary alone would cut
    Traditional Chinese text otherwise than Milvus does."""
    unknown = set(params) - {"type", "dict", "mode", "hmm", "extra_dict_file"}
    if unknown:
        raise InvalidParameter(f"unknown jieba tokenizer params{where}: {sorted(unknown)} (vecdb takes dict, mode, "
                               "hmm, extra_dict_file)")
    words: list[str] = []
    system = "_default_" if "dict" not in params else None
    if system is None:
        raw = params["dict"]
        if not isinstance(raw, list):
            raise InvalidParameter(f"jieba tokenizer dict must be array{where}")
        for w in raw:
            if not isinstance(w, str):
                raise InvalidParameter(f"jieba tokenizer dict item must be string{where}")
            if w in ("_default_", "_extend_default_"):
                if system is not None:
                    raise InvalidParameter(f"jieba tokenizer dict can only set one system dict{where}")
                system = w
            elif w:
                words.append(w)
    if system == "_extend_default_":
        raise InvalidParameter(f"jieba dict _extend_default_{where} is not supported by vecdb (it needs "
                               "Milvus's dict.txt.big, which the jieba package does not ship)")
    default = system is not None
    mode = params.get("mode", "search")
    if not isinstance(mode, str):
        raise InvalidParameter(f"jieba tokenizer mode must be string{where}")
    if mode not in ("exact", "search"):
        raise InvalidParameter(f'jieba tokenizer mode must be "exact" or "search"{where}')
    hmm = params.get("hmm", True)
    if not isinstance(hmm, bool):
        raise InvalidParameter(f"jieba tokenizer hmm must be boolean{where}")
    try:
        import jieba  # noqa: F401, PLC0415 - present? (the dictionary loads on first use)
    except ImportError:
        raise InvalidParameter(f"the jieba tokenizer{where} needs the jieba package") from None
    dict_file = None
    if "extra_dict_file" in params:
        lines = file_resources.read_lines(params["extra_dict_file"], "extra_dict_file (jieba extra dict file)", where)
        dict_file = _jieba_dict_file(lines, where)
    return JiebaSpec(tuple(words), default, mode == "search", hmm, dict_file)


def _jieba_dict_file(lines: list[str], where: str) -> DictFile:
    """A jieba dictionary file's words, read as jieba-rs's ``load_dict`` does: per line ``word [frequency
    [tag]]`` separated by white space, blank lines skipped, a frequency that is no unsigned integer refused."""
    entries: list[tuple[str, int | None]] = []
    for no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        freq = None
        if len(parts) > 1:
            if not parts[1].isascii() or not parts[1].isdigit():
                raise InvalidParameter(f"jieba tokenizer load dict file failed with error: line {no}: its "
                                       f"frequency is not an unsigned integer{where}")
            freq = int(parts[1])
        entries.append((parts[0], freq))
    digest = hashlib.sha1(repr(entries).encode("utf-8", "surrogatepass")).hexdigest()
    return DictFile(tuple(entries), digest)


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

"""The jieba tokenizer of Milvus's analyzers (``{"tokenizer": "jieba"}``, the ``chinese`` analyzer).

Milvus tokenizes with jieba-rs through tantivy-binding's ``jieba_tokenizer.rs``; jieba-rs ports the
Python ``jieba`` package (the same ``dict.txt``, prefix DAG and route, HMM for unknown runs, search
mode's extra 2- and 3-grams), which vecdb runs here, with what jieba-rs does differently:

- blocks: jieba-rs's block pattern also takes the CJK extension ranges (A to F, compatibility
  ideographs), so those characters go through the dictionary as in Milvus;
- ``dict`` words are added as jieba-rs's ``add_word`` adds them (frequency from ``suggest_freq``,
  1 in an empty dictionary; a word given again replaces its frequency in the total);
- tokens: ``(word, start, end)`` in characters; Milvus reports a token's position as its start
  character and its position length as its width (``tokenize`` below).

The dictionary loads on first use (about a second, from jieba's cache file in the temp directory),
never at import; one tokenizer per distinct ``dict`` list, kept.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

# jieba-rs's RE_HAN_DEFAULT / RE_SKIP_DEFAULT (Python jieba's block pattern has \u4E00-\u9FD5 only)
_HAN = ("\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
        "\U0002b820-\U0002ceaf\U0002ceb0-\U0002ebef\U0002f800-\U0002fa1f")
_BLOCK = re.compile(f"([{_HAN}a-zA-Z0-9+#&._%\\-]+)")
_SKIP = re.compile(r"(\r\n|\s)")
_LOCK = threading.Lock()


@dataclass(frozen=True)
class JiebaSpec:
    """A jieba tokenizer's params: extra dictionary words, whether the default dictionary is loaded
    (``"_default_"`` in ``dict``, or no ``dict``), search mode (else exact) and HMM."""

    words: tuple[str, ...] = ()
    default_dict: bool = True
    search: bool = True
    hmm: bool = True
    # an ``extra_dict_file`` (a file resource, vecdb.file_resources), loaded after ``words``
    dict_file: DictFile | None = None


class DictFile:
    """The words of a jieba dictionary file, ``(word, frequency)``, loaded as jieba-rs's ``load_dict`` loads
    them (no frequency: as ``add_word``); hashed and compared by ``digest`` (its content's), once."""

    __slots__ = ("digest", "entries")

    def __init__(self, entries: tuple[tuple[str, int | None], ...], digest: str):
        self.entries, self.digest = entries, digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, DictFile) and other.digest == self.digest

    def __repr__(self) -> str:
        return f"DictFile({len(self.entries)} words, {self.digest[:12]})"


def tokenize(spec: JiebaSpec, text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` of each token, character offsets, in jieba-rs's ``tokenize`` order: each
    word of the cut, preceded in search mode (words longer than 2 characters) by its 2-grams and (longer
    than 3) its 3-grams that are dictionary words. Whitespace and punctuation come out as tokens too."""
    tok = _tokenizer(spec.words, spec.default_dict, spec.dict_file)
    freq = tok.FREQ
    out: list[tuple[str, int, int]] = []
    start = 0
    for w in _cut(tok, text, spec.hmm):
        width = len(w)
        if spec.search and width > 2:
            out.extend((w[i:i + 2], start + i, start + i + 2) for i in range(width - 1) if freq.get(w[i:i + 2]))
            if width > 3:
                out.extend((w[i:i + 3], start + i, start + i + 3) for i in range(width - 2) if freq.get(w[i:i + 3]))
        out.append((w, start, start + width))
        start += width
    return out


def _cut(tok, text: str, hmm: bool) -> Iterator[str]:
    """jieba's ``cut`` (accurate mode) with jieba-rs's block pattern."""
    block = tok._Tokenizer__cut_DAG if hmm else tok._Tokenizer__cut_DAG_NO_HMM  # (jieba's own cutters)
    for i, blk in enumerate(_BLOCK.split(text)):
        if not blk:
            continue
        if i % 2:  # a captured block: the dictionary's
            yield from block(blk)
            continue
        for j, x in enumerate(_SKIP.split(blk)):
            if j % 2:
                yield x
            else:
                yield from x


@lru_cache(maxsize=16)
def _tokenizer(words: tuple[str, ...], default_dict: bool, dict_file: DictFile | None = None):
    with _LOCK:
        if not words and dict_file is None and default_dict:
            return _default()
        import jieba  # noqa: PLC0415 - the dictionary is only for jieba analyzers

        tok = jieba.Tokenizer()
        tok.tmp_dir = tempfile.gettempdir()
        if default_dict:
            base = _default()
            tok.FREQ, tok.total = dict(base.FREQ), base.total
        else:
            tok.FREQ, tok.total = {}, 0
        tok.initialized = True
        for w in words:
            _add_word(tok, w)
        for w, freq in dict_file.entries if dict_file is not None else ():
            if freq is None:
                _add_word(tok, w)
            else:  # load_dict: the word's frequency is the file's
                tok.total += freq - (tok.FREQ.get(w) or 0)
                tok.FREQ[w] = freq
                for k in range(1, len(w)):
                    tok.FREQ.setdefault(w[:k], 0)
        if tok.total <= 0:  # no word at all: every character its own route (jieba-rs's ln(0) is -inf)
            tok.total = 1
        return tok


_DEFAULT: list = []


def _default():
    """The tokenizer over jieba's default dictionary, loaded once (the caller holds _LOCK)."""
    if not _DEFAULT:
        import jieba  # noqa: PLC0415

        jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict ..." lines
        tok = jieba.Tokenizer()
        tok.tmp_dir = tempfile.gettempdir()  # the cache file: a writable place whatever the working directory
        tok.initialize()
        _DEFAULT.append(tok)
    return _DEFAULT[0]


def _add_word(tok, word: str) -> None:
    """jieba-rs's ``add_word(word, None, None)``."""
    if not word:
        return
    freq = _suggest_freq(tok, word)
    old = tok.FREQ.get(word) or 0
    tok.FREQ[word] = freq
    tok.total += freq - old
    for k in range(1, len(word)):  # prefixes: the DAG walks them
        tok.FREQ.setdefault(word[:k], 0)


def _suggest_freq(tok, word: str) -> int:
    """jieba-rs's ``suggest_freq``: the product of the frequencies of the word's pieces (cut without
    HMM) over the total, times the total, + 1; at least the word's own frequency. An empty dictionary
    gives 1 (jieba-rs: ``ln(0)`` makes the estimate NaN, which casts to 0)."""
    own = tok.FREQ.get(word) or 1
    if tok.total <= 0:
        return own
    logtotal = math.log(tok.total)
    logfreq = sum(math.log(tok.FREQ.get(piece) or 1) - logtotal for piece in _cut(tok, word, False))
    try:
        estimate = int(math.exp(logfreq + logtotal))
    except OverflowError:
        estimate = 2**63
    return max(estimate + 1, own)

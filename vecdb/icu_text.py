"""The icu tokenizer of Milvus's analyzers (``{"tokenizer": "icu"}``, Milvus 2.5.11+).

Milvus segments with ICU4X's ``WordSegmenter::try_new_auto`` (tantivy-binding's ``icu_tokneizer.rs``);
vecdb with ICU4C's word break iterator (the ``icu4py`` package, ICU inside its wheel), the same
Unicode word break rules (UAX #29 with ICU's tailoring) and dictionaries for Chinese and Japanese.
What Milvus's tokenizer does with the segments, vecdb does too:

- every segment is a token, spaces and punctuation included ("Привет! Как дела?" gives
  ``Привет``, ``!``, `` ``, ``Как``, `` ``, ``дела``, ``?``; Milvus's ``removepunct`` filter drops
  them); a run of horizontal spaces is one segment, ``\\r\\n`` another;
- a token's position is its first character's index and its position length its width in
  characters (Milvus adds each token's character count to the position).

Where the two ICUs differ: ICU4X's ``auto`` segmenter breaks Thai, Lao, Khmer and Burmese with its
LSTM models, ICU4C with dictionaries, so words of those scripts can be cut differently; Chinese and
Japanese words too where the two dictionaries' data differ (Milvus's own test text, mixed English,
Chinese and Japanese, gives 24 tokens in Milvus and 26 here).

icu4py loads on first use (a few milliseconds), never at import.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """``(segment, start, end)`` of each word break segment of ``text``, character offsets, in order;
    together they cover ``text``. Lone surrogates (ICU takes UTF-8) are segmented as U+FFFD."""
    from icu4py.breakers import WordBreaker  # noqa: PLC0415 - only icu analyzers need ICU

    src = _SURROGATE.sub("\ufffd", text)
    out: list[tuple[str, int, int]] = []
    start = 0
    for seg in WordBreaker(src, "root"):  # segments() counts UTF-16 units; the strings count characters
        end = start + len(seg)
        out.append((text[start:end], start, end))
        start = end
    return out


def available() -> bool:
    """Whether icu4py imports (an analyzer with the icu tokenizer is refused without it)."""
    try:
        import icu4py.breakers  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True

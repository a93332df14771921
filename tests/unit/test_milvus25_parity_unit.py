"""Unit checks for the Milvus 2.5 parity fixes (see tests/e2e/test_milvus25_parity.py): phrase positions keep a
dropped word's place (tantivy's), and ``"*"`` output fields leave out a BM25 function's output."""

from __future__ import annotations

import numpy as np

from vecdb.analyzer import match_phrase, parse_params
from vecdb.proxy.fielddata import resolve_output_fields
from vecdb.schema import CollectionSchema, DataType, FieldSchema, FunctionSchema, FunctionType


def _match(analyzer, texts: list[str], phrase: str, slop: int) -> list[bool]:
    tokens, positions = analyzer.phrase(phrase)
    return match_phrase(np.array(texts, dtype=object), analyzer, tokens, slop, positions).tolist()


def test_phrase_positions_keep_a_dropped_word_place():
    an = parse_params({"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": ["are"]}]})
    assert an.phrase("Dogs are running") == (["dogs", "running"], [0, 2])
    texts = ["dogs are running", "dogs running", "running dogs"]
    assert _match(an, texts, "dogs running", 0) == [False, True, False]
    assert _match(an, texts, "dogs running", 1) == [True, True, False]
    assert _match(an, texts, "dogs running", 2) == [True, True, True]
    assert _match(an, texts, "dogs are running", 0) == [True, False, False]
    # the english analyzer (stemmer, stop words): "are" keeps its place between "dog" and "run"
    en = parse_params({"type": "english"})
    assert _match(en, ["Running dogs are running fast"], "dogs running", 0) == [False]
    assert _match(en, ["Running dogs are running fast"], "dogs running", 1) == [True]
    assert _match(en, ["Running dogs are running fast"], "running dogs", 0) == [True]


def test_star_leaves_out_a_bm25_output_but_a_name_reads_it():
    schema = CollectionSchema("c", fields=[
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("text", DataType.VARCHAR, max_length=100),
        FieldSchema("sparse", DataType.SPARSE_FLOAT_VECTOR, is_function_output=True),
        FieldSchema("dense", DataType.FLOAT_VECTOR, dim=2),
    ], functions=[FunctionSchema("bm", FunctionType.BM25, ["text"], ["sparse"])])
    assert resolve_output_fields(schema, ["*"]) == (["id", "text", "dense"], [])
    assert resolve_output_fields(schema, ["*", "sparse"]) == (["id", "text", "dense", "sparse"], [])
    assert resolve_output_fields(schema, ["sparse"]) == (["sparse"], [])

"""A schema function's output column computed from its input column, for rows written without it.

Rows written before ``add_function_field`` (Milvus 3.0's ``AlterCollectionSchema`` add request: a
BM25 or MinHash function with its new output field) have no output column: not in the segment files,
not in the log records, not in the query nodes' growing buffers. Wherever such rows are read
(a sealed segment's files, a log record at persist or replay, a segment taking the new schema) the
output is computed here from the input text, exactly as an insert computes it
(``vecdb.proxy.fielddata``), so every reader sees the same values; a compaction or an index build
then writes them like any other column. This is vecdb's backfill: Milvus's datanode rewrites each
segment in a backfill compaction; here the first read does the work and the next rewrite of the
segment persists it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vecdb.schema import CollectionSchema, FieldSchema, FunctionSchema, FunctionType


def producing_function(schema: CollectionSchema, field: FieldSchema) -> FunctionSchema | None:
    """The BM25 or MinHash function whose output is ``field``, if any."""
    if not field.is_function_output:
        return None
    return schema.bm25_function_of(field.name) or schema.minhash_function_of(field.name)


def function_output(schema: CollectionSchema, name: str, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Column ``name`` computed from ``columns`` when ``name`` is a function's output and ``columns``
    holds its input (and, for a multi-analyzer input, the field naming each row's analyzer when
    there is one); None otherwise."""
    field = schema.field(name)
    fn = None if field is None else producing_function(schema, field)
    if fn is None or fn.input_field_names[0] not in columns:
        return None
    if fn.type == FunctionType.MINHASH:
        from vecdb import minhash_function  # noqa: PLC0415 - analyzers are heavy; only backfills need them

        return minhash_function.signature_column(schema, fn, dict(columns))
    from vecdb import bm25  # noqa: PLC0415

    return bm25.term_frequencies(schema, fn, dict(columns))


def input_names(schema: CollectionSchema, name: str) -> list[str]:
    """The fields whose columns ``function_output`` needs for output field ``name`` ([] if it is none)."""
    field = schema.field(name)
    fn = None if field is None else producing_function(schema, field)
    if fn is None:
        return []
    names = list(fn.input_field_names)
    by = schema.field(fn.input_field_names[0])
    multi = by.type_params.get("multi_analyzer_params", "") if by is not None else ""
    if multi and fn.type == FunctionType.BM25:
        from vecdb.analyzer import parse_multi_params  # noqa: PLC0415

        names.append(parse_multi_params(multi).by_field)
    return names

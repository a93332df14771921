"""The Milvus boolean expression language: parser, type checker, numpy evaluator.

    flt = compile_filter('age > 18 and meta["tag"] in ["a", "b"]', schema)
    mask = flt.evaluate(columns, n)   # reads only flt.fields

Modules: ``lexer`` -> ``parser`` (syntax tree in ``ast``) -> ``compiler``
(names and types against the schema) -> a plan of ``nodes`` (values) and
``predicates`` (masks), evaluated over ``runtime`` values with JSON/ARRAY
helpers in ``rowdata``, LIKE in ``like`` and the array-of-struct operators
(``element_filter``, ``MATCH_*``) in ``element``; ``filter`` ties them together
with a cache. ``python -m bench.filter_throughput`` prints throughput.
"""

from vecdb.expr.filter import Filter, compile_filter

__all__ = ["Filter", "compile_filter"]

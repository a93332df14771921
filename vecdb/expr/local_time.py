"""``ISO '...'`` literals without a UTC offset, read in a time zone (Milvus 2.6 parses a filter with
the request's ``timezone``, else the collection's: ``ParserVisitorArgs.Timezone``).

The proxy rewrites such a literal as the instant it names there, in UTC (``'2025-01-01T00:00:00'``
in Asia/Shanghai becomes ``'2024-12-31T16:00:00Z'``), before it compiles the filter: the expression
then means the same wherever it is compiled again (a query node in another process gets its text),
and the parser and the filter cache need no zone. A literal with an offset, and one that does not
parse (the compile reports it), is left as it is.
"""

from __future__ import annotations

from vecdb.errors import InvalidParameter
from vecdb.expr.lexer import tokenize
from vecdb.timestamptz import DEFAULT_ZONE, format_one, parse_iso


def localize_iso_literals(expr: str, zone: str) -> str:
    """``expr`` with each offset-less ``ISO '...'`` literal read in ``zone`` (see the module)."""
    if zone == DEFAULT_ZONE or "iso" not in expr.lower():
        return expr
    try:
        tokens = tokenize(expr)
    except InvalidParameter:
        return expr  # compile_filter reports the error
    out: list[str] = []
    at = 0
    for word, text in zip(tokens, tokens[1:]):
        if not (word.kind == "IDENT" and word.word.upper() == "ISO" and text.kind == "STR"):
            continue
        try:
            local = parse_iso(text.word, zone)
            if local == parse_iso(text.word):  # an offset of its own (or none needed): as it is
                continue
        except InvalidParameter:
            continue
        out += [expr[at:text.pos], "'", format_one(local), "'"]
        at = text.pos + len(text.text)
    return "".join(out) + expr[at:] if out else expr

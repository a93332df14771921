"""Bounds on what one filter expression may cost to compile.

Milvus itself has no such limits (its ANTLR parser and Go visitor recurse
without bound, and a deep filter crashes its proxy: milvus-io/milvus#53404),
so these are ours, set well above any filter a person or a program writes:

- ``MAX_EXPR_LENGTH``: 1 MiB of expression text (an ``in`` list of ~150,000
  ids). Parsing is linear, ~1.5 s for 1 MiB in pure Python, which releases
  the GIL every few milliseconds, so other requests keep being served.
- ``MAX_NESTING``: constructs inside one another: parentheses, list brackets,
  function calls, unary ``not``/``-``/``+``/``exists`` and ``**``. The
  recursive-descent parser spends ~11 Python frames per parenthesis (one per
  precedence level), so 64 levels (~720 frames) stay inside Python's default
  recursion limit of 1,000 frames with room for the gRPC handler's stack.
- ``MAX_DEPTH``: the depth of the syntax tree, which chained operators grow
  without nesting (``a + b + c`` is ``(a + b) + c``); the compiler and the
  evaluator spend ~2 frames per level, so 256 levels cost ~520 frames. An
  ``and``/``or`` chain is flattened instead, so ``a == 1 or ... or
  a == 50000`` is one level.

Real filters nest a handful of levels deep. These are module constants rather
than settings for now: a filter is compiled in the proxy and again in every
query node process, by code that has no settings object at hand, and a higher
value would need a higher recursion limit anyway.
"""

from __future__ import annotations

MAX_EXPR_LENGTH = 1 << 20  # characters
MAX_NESTING = 64
MAX_DEPTH = 256

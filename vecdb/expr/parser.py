"""Recursive-descent parser: expression text -> ``vecdb.expr.ast`` tree.

Precedence, loosest first (Milvus's ``Plan.g4`` order, except that ``not``
binds looser than comparisons so ``not a > 1`` means ``not (a > 1)``; for
boolean operands both readings give the same result)::

    or  ||            and  &&            not  !
    == !=             < <= > >= (and ranges ``1 < a <= 5``, ``5 > a > 1``)
    in / not in, like, is null / is not null      (postfix on one operand)
    + -               * / %              unary - +, exists
    **                primary: literal, [list], {template}, (expr),
                      name[...][...], $[sub], function(args)

A range's middle operand must be a field, JSON path or ``$[sub]``, as in Milvus.

Cost is bounded (``vecdb.expr.limits``): the text is at most MAX_EXPR_LENGTH
characters; each construct that recurses (parentheses, lists, calls, unary
operators, ``**``) counts one nesting level on the way down and is refused
beyond MAX_NESTING before recursing further; the finished tree is at most
MAX_DEPTH deep, not counting the left spine of an ``and``/``or`` chain, which
the compiler flattens.
"""

from __future__ import annotations

import re

from vecdb.errors import InvalidParameter
from vecdb.expr import ast
from vecdb.expr.lexer import (
    BOOL_WORDS,
    INT64_MAX,
    INT64_MIN,
    INT64_MIN_MAGNITUDE,
    KEYWORDS,
    Token,
    int_out_of_range,
    syntax_error,
    tokenize,
)
from vecdb.expr.limits import MAX_DEPTH, MAX_EXPR_LENGTH, MAX_NESTING
from vecdb.timestamptz import parse_interval, parse_iso

_REL_OPS = ("<", "<=", ">", ">=")
_LOGIC = ("and", "or")


def parse(expr: str) -> ast.Node:
    """Parse ``expr``; raise InvalidParameter pointing at the first bad token."""
    if len(expr) > MAX_EXPR_LENGTH:
        raise syntax_error(expr, f"the expression is {len(expr)} characters long, "
                                 f"more than the limit of {MAX_EXPR_LENGTH}")
    plain = _plain_term(expr)
    if plain is not None:
        return plain
    tree = _Parser(expr).parse()
    _check_depth(expr, tree)
    return tree


# pymilvus's get, query and delete by ids send ``pk in [k1, k2, ...]`` with up to thousands of plain
# keys: such a filter is read with one regex into the tree the token-by-token parse builds (same nodes,
# same positions), ~20 us a key less (10,000 keys: 216 -> ~20 ms). Anything else takes the parser.
_ITEM = r"""-?(?:[1-9][0-9]{0,17}|0)(?![0-9A-Za-z_.])|"[^"\\\r\n\ud800-\udfff]*"|'[^'\\\r\n\ud800-\udfff]*'"""
# (a string as the lexer reads it without escapes: no CR, no LF, no lone surrogate, all three refused there)
_ITEM_RE = re.compile(_ITEM)
_PLAIN_TERM_RE = re.compile(rf"\s*([A-Za-z_][A-Za-z0-9_]*)\s+(?:(not|NOT)\s+)?(?:in|IN)\s*(\[)\s*"
                            rf"((?:{_ITEM})(?:\s*,\s*(?:{_ITEM}))*)\s*\]\s*\Z")


def _plain_term(expr: str) -> ast.In | None:
    m = _PLAIN_TERM_RE.match(expr)
    if m is None or m.group(1).lower() in KEYWORDS or m.group(1) in BOOL_WORDS:
        return None
    items: list[ast.Node] = []
    for item in _ITEM_RE.finditer(expr, m.start(4), m.end(4)):
        text, pos = item.group(), item.start()
        if text[0] in "\"'":
            items.append(ast.Literal(pos, text[1:-1]))
        elif text[0] == "-":
            items.append(ast.Unary(pos, "-", ast.Literal(pos + 1, int(text[1:]))))
        else:
            items.append(ast.Literal(pos, int(text)))
    name = ast.Name(m.start(1), m.group(1), ())
    return ast.In(name.pos, name, ast.ListLiteral(m.start(3), tuple(items)), m.group(2) is not None)


def _too_deep(expr: str, pos: int, what: str) -> Exception:
    return syntax_error(expr, f"the expression is nested too deeply ({what}) at column {pos + 1}")


def _check_depth(expr: str, tree: ast.Node) -> None:
    """Refuse a tree deeper than MAX_DEPTH (an explicit stack: the tree may be deep)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(expr, node.pos, f"its syntax tree is more than {MAX_DEPTH} levels deep")
        for kid in ast.children(node):
            flat = (isinstance(node, ast.Binary) and node.op in _LOGIC and kid is node.left
                    and isinstance(kid, ast.Binary) and kid.op == node.op)
            stack.append((kid, depth if flat else depth + 1))


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.toks = tokenize(expr)
        self.i = 0
        self.depth = 0  # nesting levels entered (see the module docstring)

    def _descend(self, t: Token) -> None:
        """Enter one more nesting level at token ``t``, refused past MAX_NESTING before recursing;
        the caller leaves it (``self.depth -= 1``) once the nested part is parsed. A parse that
        fails is thrown away, so an exception needn't restore the count."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _too_deep(self.expr, t.pos, f"more than {MAX_NESTING} levels")

    # --- token helpers -------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def _next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def _is(self, kind: str, *values) -> bool:
        t = self.toks[self.i]
        return t.kind == kind and (not values or t.value in values)

    def _accept(self, kind: str, *values) -> Token | None:
        return self._next() if self._is(kind, *values) else None

    def _expect(self, kind: str, value) -> Token:
        if not self._is(kind, value):
            raise self._unexpected(f"expected '{value}'")
        return self._next()

    def _unexpected(self, hint: str = "") -> Exception:
        t = self.tok
        suffix = f" ({hint})" if hint else ""
        if t.kind == "EOF":
            return syntax_error(self.expr, f"unexpected end of expression at column {t.pos + 1}{suffix}")
        if t.kind == "OP" and t.value == "=" and not hint:
            suffix = " (use '==' to compare)"
        return syntax_error(self.expr, f"unexpected token '{t.text}' at column {t.pos + 1}{suffix}")

    # --- grammar -------------------------------------------------------
    def parse(self) -> ast.Node:
        node = self._or()
        if not self._is("EOF"):
            raise self._unexpected()
        return node

    def _or(self) -> ast.Node:
        node = self._and()
        while self._accept("KW", "or") or self._accept("OP", "||"):
            node = ast.Binary(node.pos, "or", node, self._and())
        return node

    def _and(self) -> ast.Node:
        node = self._not()
        while self._accept("KW", "and") or self._accept("OP", "&&"):
            node = ast.Binary(node.pos, "and", node, self._not())
        return node

    def _not(self) -> ast.Node:
        t = self._accept("KW", "not") or self._accept("OP", "!")
        if t is not None:
            self._descend(t)
            node = ast.Unary(t.pos, "not", self._not())
            self.depth -= 1
            return node
        return self._equality()

    def _equality(self) -> ast.Node:
        node = self._relational()
        while self._is("OP", "==", "!="):
            op = self._next().word
            node = ast.Binary(node.pos, op, node, self._relational())
        return node

    def _relational(self) -> ast.Node:
        node = self._postfix()
        if not self._is("OP", *_REL_OPS):
            return node
        op1_tok = self._next()
        middle = self._postfix()
        if not self._is("OP", *_REL_OPS):
            return ast.Binary(node.pos, op1_tok.word, node, middle)
        op2_tok = self.tok
        ascending = op1_tok.value in ("<", "<=")
        if ascending != (op2_tok.value in ("<", "<=")):
            raise syntax_error(
                self.expr, f"invalid range at column {op2_tok.pos + 1}: both operators must be < / <= or > / >="
            )
        if not isinstance(middle, (ast.Name, ast.SubField)):
            raise syntax_error(
                self.expr, f"invalid range at column {middle.pos + 1}: the middle operand must be a field"
            )
        self._next()
        upper = self._postfix()
        if self._is("OP", *_REL_OPS):
            raise self._unexpected()
        return ast.Range(node.pos, node, op1_tok.word, middle, op2_tok.word, upper)

    def _postfix(self) -> ast.Node:
        node = self._additive()
        if self._is("KW", "in"):
            self._next()
            return ast.In(node.pos, node, self._term_list(), False)
        if self._is("KW", "not") and self.toks[self.i + 1].kind == "KW" and self.toks[self.i + 1].value == "in":
            self.i += 2
            return ast.In(node.pos, node, self._term_list(), True)
        if self._accept("KW", "like"):
            return ast.Like(node.pos, node, self._additive())
        if self._accept("KW", "is"):
            negate = self._accept("KW", "not") is not None
            if not self._accept("KW", "null"):
                raise self._unexpected("expected 'null'")
            return ast.IsNull(node.pos, node, negate)
        return node

    def _term_list(self) -> ast.Node:
        if self._is("OP", "[", "{"):
            return self._primary()
        raise self._unexpected("expected a list after 'in'")

    def _additive(self) -> ast.Node:
        node = self._multiplicative()
        while self._is("OP", "+", "-"):
            op = self._next().word
            node = ast.Binary(node.pos, op, node, self._multiplicative())
        return node

    def _multiplicative(self) -> ast.Node:
        node = self._unary()
        while self._is("OP", "*", "/", "%"):
            op = self._next().word
            node = ast.Binary(node.pos, op, node, self._unary())
        return node

    def _unary(self) -> ast.Node:
        if self._is("KW", "not") or self._is("OP", "!"):  # an operand negated: b == !true, as Milvus takes
            t = self._next()
            self._descend(t)
            node = ast.Unary(t.pos, "not", self._unary())
            self.depth -= 1
            return node
        if not (self._is("OP", "-", "+") or self._is("KW", "exists")):
            return self._power()
        t = self._next()
        nxt, after = self.tok, self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if t.word == "-" and nxt.kind == "INT" and nxt.value == INT64_MIN_MAGNITUDE and \
                not (after is not None and after.kind == "OP" and after.value == "**"):
            self._next()  # -9223372036854775808: INT64_MIN, whose magnitude alone is out of range
            return ast.Literal(t.pos, INT64_MIN)
        self._descend(t)
        operand = self._unary()
        self.depth -= 1
        return ast.Unary(t.pos, t.word, operand) if t.kind == "OP" else ast.Exists(t.pos, operand)

    def _power(self) -> ast.Node:
        node = self._primary()
        if self._is("OP", "**"):
            self._descend(self._next())
            node = ast.Binary(node.pos, "**", node, self._unary())
            self.depth -= 1
        return node

    def _primary(self) -> ast.Node:
        t = self.tok
        if t.kind in ("INT", "FLOAT", "STR", "BOOL"):
            if t.kind == "INT" and isinstance(t.value, int) and t.value > INT64_MAX:  # 2**63 without its minus
                raise int_out_of_range(self.expr, t.text, t.pos)
            self._next()
            return ast.Literal(t.pos, t.value)
        if t.kind == "SUBFIELD":
            self._next()
            return ast.SubField(t.pos, t.word)
        if t.kind == "OP" and t.value == "(":
            self._descend(self._next())
            node = self._or()
            self._expect("OP", ")")
            self.depth -= 1
            return node
        if t.kind == "OP" and t.value == "[":
            self._descend(self._next())
            node = ast.ListLiteral(t.pos, self._items("]"))
            self.depth -= 1
            return node
        if t.kind == "OP" and t.value == "{":
            self._next()
            name = self._accept("IDENT")
            if name is None:
                raise self._unexpected("expected a template variable name")
            self._expect("OP", "}")
            return ast.Template(t.pos, name.word)
        if t.kind == "IDENT":
            self._next()
            if t.word.upper() in ("ISO", "INTERVAL") and self.tok.kind == "STR":
                # TIMESTAMPTZ literals: ISO '...' an instant, INTERVAL '...' a duration, in microseconds
                text = self._next()
                iso = t.word.upper() == "ISO"
                try:
                    return ast.TimeLiteral(t.pos, (parse_iso if iso else parse_interval)(str(text.value)))
                except InvalidParameter as e:
                    detail = f"invalid ISO 8601 timestamp {text.value!r}" if iso else e.message
                    raise syntax_error(self.expr, f"{detail} at column {text.pos + 1}") from None
            if self._is("OP", "("):
                self._descend(self._next())
                node = ast.Call(t.pos, t.word.lower(), self._items(")", keywords=True))
                self.depth -= 1
                return node
            return ast.Name(t.pos, t.word, self._subscripts())
        raise self._unexpected()

    def _items(self, close: str, keywords: bool = False) -> tuple[ast.Node, ...]:
        """A list's items, or a call's arguments (``keywords``: ``name=value`` ones too)."""
        items: list[ast.Node] = []
        while not self._accept("OP", close):
            t, after = self.tok, self.toks[min(self.i + 1, len(self.toks) - 1)]
            if keywords and t.kind == "IDENT" and after.kind == "OP" and after.value == "=":
                self.i += 2
                items.append(ast.Keyword(t.pos, t.word.lower(), self._or()))
            else:
                items.append(self._or())
            if not self._accept("OP", ","):
                self._expect("OP", close)
                break
        return tuple(items)

    def _subscripts(self) -> tuple[str | int, ...]:
        path: list[str | int] = []
        while self._accept("OP", "["):
            key = self.tok
            if key.kind == "STR":
                path.append(key.word)
                self._next()
            elif key.kind == "INT" and isinstance(key.value, int) and key.text == str(key.value):
                path.append(key.value)
                self._next()
            else:
                raise self._unexpected("a JSON key must be a string or a non-negative integer")
            self._expect("OP", "]")
        return tuple(path)

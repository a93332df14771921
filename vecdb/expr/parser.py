"""Recursive-descent parser: expression text -> ``vecdb.expr.ast`` tree.

Precedence, loosest first (Milvus's ``Plan.g4`` order, except that ``not``
binds looser than comparisons so ``not a > 1`` means ``not (a > 1)``; for
boolean operands both readings give the same result)::

    or  ||            and  &&            not  !
    == !=             < <= > >= (and ranges ``1 < a <= 5``, ``5 > a > 1``)
    in / not in, like, is null / is not null      (postfix on one operand)
    + -               * / %              unary - +, exists
    **                primary: literal, [list], {template}, (expr),
                      name[...][...], function(args)

A range's middle operand must be a field or JSON path, as in Milvus.
"""

from __future__ import annotations

from vecdb.expr import ast
from vecdb.expr.lexer import Token, syntax_error, tokenize

_REL_OPS = ("<", "<=", ">", ">=")


def parse(expr: str) -> ast.Node:
    """Parse ``expr``; raise InvalidParameter pointing at the first bad token."""
    return _Parser(expr).parse()


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.toks = tokenize(expr)
        self.i = 0

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
            return ast.Unary(t.pos, "not", self._not())
        return self._equality()

    def _equality(self) -> ast.Node:
        node = self._relational()
        while self._is("OP", "==", "!="):
            op = self._next().value
            node = ast.Binary(node.pos, op, node, self._relational())
        return node

    def _relational(self) -> ast.Node:
        node = self._postfix()
        if not self._is("OP", *_REL_OPS):
            return node
        op1_tok = self._next()
        middle = self._postfix()
        if not self._is("OP", *_REL_OPS):
            return ast.Binary(node.pos, op1_tok.value, node, middle)
        op2_tok = self.tok
        ascending = op1_tok.value in ("<", "<=")
        if ascending != (op2_tok.value in ("<", "<=")):
            raise syntax_error(
                self.expr, f"invalid range at column {op2_tok.pos + 1}: both operators must be < / <= or > / >="
            )
        if not isinstance(middle, ast.Name):
            raise syntax_error(
                self.expr, f"invalid range at column {middle.pos + 1}: the middle operand must be a field"
            )
        self._next()
        upper = self._postfix()
        if self._is("OP", *_REL_OPS):
            raise self._unexpected()
        return ast.Range(node.pos, node, op1_tok.value, middle, op2_tok.value, upper)

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
            op = self._next().value
            node = ast.Binary(node.pos, op, node, self._multiplicative())
        return node

    def _multiplicative(self) -> ast.Node:
        node = self._unary()
        while self._is("OP", "*", "/", "%"):
            op = self._next().value
            node = ast.Binary(node.pos, op, node, self._unary())
        return node

    def _unary(self) -> ast.Node:
        if self._is("OP", "-", "+"):
            t = self._next()
            return ast.Unary(t.pos, t.value, self._unary())
        if self._is("KW", "exists"):
            t = self._next()
            return ast.Exists(t.pos, self._unary())
        return self._power()

    def _power(self) -> ast.Node:
        node = self._primary()
        if self._is("OP", "**"):
            self._next()
            node = ast.Binary(node.pos, "**", node, self._unary())
        return node

    def _primary(self) -> ast.Node:
        t = self.tok
        if t.kind in ("INT", "FLOAT", "STR", "BOOL"):
            self._next()
            return ast.Literal(t.pos, t.value)
        if t.kind == "OP" and t.value == "(":
            self._next()
            node = self._or()
            self._expect("OP", ")")
            return node
        if t.kind == "OP" and t.value == "[":
            self._next()
            return ast.ListLiteral(t.pos, self._items("]"))
        if t.kind == "OP" and t.value == "{":
            self._next()
            name = self._accept("IDENT")
            if name is None:
                raise self._unexpected("expected a template variable name")
            self._expect("OP", "}")
            return ast.Template(t.pos, name.value)
        if t.kind == "IDENT":
            self._next()
            if self._is("OP", "("):
                self._next()
                return ast.Call(t.pos, t.value.lower(), self._items(")"))
            return ast.Name(t.pos, t.value, self._subscripts())
        raise self._unexpected()

    def _items(self, close: str) -> tuple[ast.Node, ...]:
        items: list[ast.Node] = []
        while not self._accept("OP", close):
            items.append(self._or())
            if not self._accept("OP", ","):
                self._expect("OP", close)
                break
        return tuple(items)

    def _subscripts(self) -> tuple[str | int, ...]:
        path: list[str | int] = []
        while self._accept("OP", "["):
            key = self.tok
            if key.kind == "STR" or (key.kind == "INT" and key.text == str(key.value)):
                path.append(key.value)
                self._next()
            else:
                raise self._unexpected("a JSON key must be a string or a non-negative integer")
            self._expect("OP", "]")
        return tuple(path)

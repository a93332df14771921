"""Syntax tree -> typed plan (``vecdb.expr.nodes``), resolving names against a schema.

Name resolution: ``$meta[...]`` is the dynamic field; a schema field is
itself (JSON fields take ``["key"]``/``[0]`` paths, ARRAY fields one
``[index]``); any other name means ``$meta["name"]`` when the dynamic field
is enabled and is an error ("field x not exist") otherwise. ``$[sub]`` is a struct
element's sub-field, only inside ``element_filter`` / ``MATCH_*`` (``vecdb.expr.element``),
whose predicate reads no row-level field.

Type rules (errors at compile time, like Milvus's plan parser):

- comparisons need a common category: numbers (int and float mix), strings,
  booleans (only ``==``/``!=``), lists (only ``==``/``!=``, against JSON or
  ARRAY fields). A JSON path is compatible with all of them, decided per row.
- arithmetic takes numeric fields, numeric literals and JSON paths; ``**``
  only constants; a literal zero divisor is an error.
- ``like`` needs a VARCHAR field, a VARCHAR array element or a JSON path, and
  a string literal pattern; ``in`` needs a list literal whose elements fit the
  field's type; ``*_contains*`` need a JSON path or an ARRAY field;
  ``array_length`` an ARRAY field or JSON path; ``exists`` a JSON path.
- a bare BOOL field used as a predicate means ``== true``; a bare JSON path is no
  predicate (Milvus: "predicate is not a boolean expression ... JSON"), so ``not j["a"]``
  cannot select every row whose value is missing or not true.

Nullable fields (Milvus 2.5): a null row is false for every predicate that reads the field
(comparison, in, like, contains, ...: a predicate is ANDed with the validity masks of the
nullable fields it reads), and ``not`` keeps an unknown row false: as Milvus's NOT, it flips
the result and ANDs its operand's validity (``and`` / ``or`` are known where either side is;
``predicates.validity``). ``x is null`` / ``x is not null`` read the field's mask.
Every error is InvalidParameter("cannot parse expression: <expr>, error: ...
at column N").
"""

from __future__ import annotations

import math

import numpy as np

from vecdb.errors import InvalidParameter
from vecdb.expr import ast, element, nodes
from vecdb.expr import predicates as preds
from vecdb.expr.lexer import INT64_MAX, INT64_MIN, clip, syntax_error
from vecdb.expr.like import compile_like, match_one
from vecdb.expr.parser import parse
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType, FieldSchema, struct_sub_field_name, valid_key

TYPE_NAMES = {"int": "Int64", "float": "Double", "bool": "Bool", "str": "VarChar", "json": "JSON",
              "array": "Array", "list": "Array"}
_CATS = {"int": {"num"}, "float": {"num"}, "bool": {"bool"}, "str": {"str"}, "list": {"list"},
         "array": {"list"}, "json": {"num", "str", "bool", "list"}}
_CAT_ORDER = ("num", "str", "bool", "list")
_ORDERING = ("<", "<=", ">", ">=")
_REVERSED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_ARITH = ("+", "-", "*", "/", "%", "**")
_CONTAINS = {"json_contains": "one", "array_contains": "one", "json_contains_all": "all",
             "array_contains_all": "all", "json_contains_any": "any", "array_contains_any": "any"}
# GEOMETRY filters (Milvus 2.6; vecdb.geometry.SPATIAL_CALLS): the arguments each takes
_SPATIAL = {"st_equals": 2, "st_touches": 2, "st_overlaps": 2, "st_crosses": 2, "st_contains": 2,
            "st_intersects": 2, "st_within": 2, "st_dwithin": 3, "st_isvalid": 1}
_ELEM_DTYPES = {DataType.BOOL: np.bool_, DataType.INT8: np.int64, DataType.INT16: np.int64,
                DataType.INT32: np.int64, DataType.INT64: np.int64, DataType.FLOAT: np.float32,
                DataType.DOUBLE: np.float64, DataType.VARCHAR: object}


def static_type(dtype: DataType) -> str:
    if dtype.is_integer or dtype == DataType.TIMESTAMPTZ:  # TIMESTAMPTZ: microseconds, vs ISO '...' literals
        return "int"
    return {DataType.FLOAT: "float", DataType.DOUBLE: "float", DataType.BOOL: "bool",
            DataType.VARCHAR: "str", DataType.JSON: "json", DataType.ARRAY: "array"}.get(dtype, "")


def compile_expr(expr: str, schema: CollectionSchema, template_values: dict | None):
    """Return ``(root predicate, set of column names it reads)``."""
    c = _Compiler(expr, schema, template_values or {})
    tree = parse(expr)  # bounds the length and depth (vecdb.expr.limits)
    _top_level_samples(expr, tree)
    element.check_placement(expr, tree)
    try:
        root = c.predicate(tree)
    except RecursionError:  # a backstop: the depth limit keeps the compiler well inside the stack
        raise syntax_error(expr, "expression is nested too deeply") from None
    return root, frozenset(c.fields)


def _literal_type(v) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}[v.__class__]


def _literal_desc(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_literal_desc(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else repr(v)


def _path_desc(name: str, path: tuple) -> str:
    return name + "".join(f'["{k}"]' if isinstance(k, str) else f"[{k}]" for k in path)


class _Compiler:
    def __init__(self, expr: str, schema: CollectionSchema, template_values: dict):
        self.expr, self.schema, self.templates = expr, schema, template_values
        self.fields: set[str] = set()
        self.null_refs: set[str] = set()  # validity masks of the nullable fields read so far
        self.element: element.ElementScope | None = None  # inside element_filter / MATCH_*: its struct

    def error(self, detail: str, pos: int) -> InvalidParameter:
        return syntax_error(self.expr, f"{detail} at column {pos + 1}")

    @staticmethod
    def typed(v: nodes.ValueNode) -> str:
        return f"{v.desc} ({TYPE_NAMES[v.type]})"

    # --- predicates ----------------------------------------------------
    def predicate(self, node: ast.Node):
        """A predicate that is false on rows where a nullable field it reads is null (see the module doc)."""
        outer, self.null_refs = self.null_refs, set()
        try:
            p = self._predicate(node)
            structural = ((isinstance(node, ast.Binary) and node.op in ("and", "or"))
                          or (isinstance(node, ast.Unary) and node.op == "not"))
            if self.null_refs and not structural:  # and/or children and not are masked already
                p = preds.NonNull(p, tuple(sorted(self.null_refs)))
            return p
        finally:
            self.null_refs |= outer

    def _predicate(self, node: ast.Node):
        if self.element is not None:
            element.refuse_in_element(self, node)
        if isinstance(node, ast.Binary) and node.op in ("and", "or"):
            kids: list[preds.Pred] = []
            cls = preds.And if node.op == "and" else preds.Or
            for side in _chain(node):
                p = self.predicate(side)
                kids.extend(p.children if isinstance(p, cls) else [p])
            return cls(kids)
        if isinstance(node, ast.Unary) and node.op == "not":
            p = self.predicate(node.operand)
            if isinstance(p, preds.Not):
                return p.child
            if isinstance(p, preds.ConstPred):
                return preds.ConstPred(not p.value)
            return preds.Not(p)
        if isinstance(node, ast.Binary) and node.op in _REVERSED:
            self._check_timestamptz(node.left, node.right)
            self._check_timestamptz(node.right, node.left)
            return self.compare(node.op, self.value(node.left), self.value(node.right), node.pos)
        if isinstance(node, ast.Range):
            self._check_timestamptz(node.middle, node.lower)
            self._check_timestamptz(node.middle, node.upper)
            middle = self.value(node.middle)
            return preds.And([self.compare(node.op1, self.value(node.lower), middle, node.pos),
                              self.compare(node.op2, middle, self.value(node.upper), node.pos)])
        if isinstance(node, ast.In):
            return self.term(node)
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.Call) and node.name in _CONTAINS:
            return self.contains(node)
        if isinstance(node, ast.Call) and node.name == "text_match":
            return self.text_match(node)
        if isinstance(node, ast.Call) and node.name == "phrase_match":
            return self.phrase_match(node)
        if isinstance(node, ast.Call) and node.name == "text_match_fuzzy":
            return self.text_match_fuzzy(node)
        if isinstance(node, ast.Call) and node.name == "random_sample":
            return self.random_sample(node)
        if isinstance(node, ast.Call) and node.name in _SPATIAL:
            return self.spatial(node)
        if isinstance(node, ast.Call) and node.name in element.OPERATORS:
            return element.compile_match(self, node)
        if isinstance(node, ast.Exists):
            target = self.value(node.operand)
            if not isinstance(target, nodes.JsonPath):
                raise self.error(f"exists operations are only supported on json field, got {self.typed(target)}",
                                 node.pos)
            return preds.Exists(target)
        if isinstance(node, ast.IsNull):
            if not isinstance(node.operand, ast.Name):
                raise self.error("is null can only be applied to a field or a JSON path", node.pos)
            geo = self.schema.field(node.operand.name)
            if geo is not None and geo.dtype.is_vector and not node.operand.path:  # (Milvus 3.0 parser)
                raise self.error("IsNull/IsNotNull operations are not supported on vector fields", node.pos)
            if geo is not None and geo.dtype == DataType.GEOMETRY and not node.operand.path:
                if not geo.nullable:  # (a GEOMETRY field is no value here: only its mask says)
                    return preds.ConstPred(node.negate)
                self.fields.add(valid_key(geo.name))
                return preds.IsNull(nodes.Column(geo.name, "str", geo.name), node.negate, valid_key(geo.name))
            refs = set(self.null_refs)
            target = self.name(node.operand)
            self.null_refs = refs  # is null reads the mask itself: a null row is no unknown here
            f = self.schema.field(node.operand.name)
            mask = None
            if f is not None and f.nullable and not node.operand.path:
                mask = valid_key(f.name)
                self.fields.add(mask)
            return preds.IsNull(target, node.negate, mask)
        return self.to_predicate(self.value(node), node.pos)

    def to_predicate(self, v: nodes.ValueNode, pos: int):
        if isinstance(v, nodes.PredValue):
            return v.pred
        if isinstance(v, nodes.Const) and v.type == "bool":
            return preds.ConstPred(v.value)
        if v.type == "bool":
            return preds.Compare("==", v, nodes.Const(True, "bool", "true"), ("bool",))
        raise self.error(f"{self.typed(v)} is not a boolean expression", pos)

    def compare(self, op: str, left: nodes.ValueNode, right: nodes.ValueNode, pos: int):
        common = _CATS[left.type] & _CATS[right.type]
        if not common:
            raise self.error(
                f"comparison between {self.typed(left)} and {self.typed(right)} is not supported", pos)
        if op in _ORDERING:
            common -= {"bool", "list"}
            if not common:
                raise self.error(
                    f"operator {op} is not supported between {self.typed(left)} and {self.typed(right)}", pos)
        if isinstance(left, nodes.Const) and not isinstance(right, nodes.Const):
            left, right, op = right, left, _REVERSED[op]
        return preds.Compare(op, left, right, tuple(c for c in _CAT_ORDER if c in common))

    def _timestamptz_field(self, node: ast.Node) -> str | None:
        """The TIMESTAMPTZ field a comparison's side reads (``ts``, ``ts + INTERVAL '...'``); None otherwise."""
        if isinstance(node, ast.Binary) and node.op in ("+", "-"):
            node = node.left
        if isinstance(node, ast.Name) and not node.path:
            f = self.schema.field(node.name)
            if f is not None and f.dtype == DataType.TIMESTAMPTZ:
                return f.name
        return None

    def _check_timestamptz(self, side: ast.Node, other: ast.Node) -> None:
        """A TIMESTAMPTZ field is compared with ``ISO '...'`` instants (shifted by ``INTERVAL '...'``
        durations), as Milvus 2.6's grammar has it (``TimestamptzCompareForward/Reverse``): a plain
        number there (microseconds? seconds?) is refused, not read as microseconds."""
        name = self._timestamptz_field(side)
        if name is None:
            return
        numbers = [n for n in (other, side.right if isinstance(side, ast.Binary) else None,
                               *(other.items if isinstance(other, ast.ListLiteral) else ()))
                   if n is not None]
        for n in numbers:
            sign = ""
            if isinstance(n, ast.Unary) and n.op in ("-", "+"):
                sign, n = ("-" if n.op == "-" else ""), n.operand
            if isinstance(n, ast.Literal) and not isinstance(n, ast.TimeLiteral) and \
                    isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
                raise self.error(f"field '{name}' is a timestamptz field: compare it with an ISO 'timestamp' "
                                 f"literal (and shift it by INTERVAL 'duration'), not the number {sign}{n.value!r}",
                                 n.pos)

    def term(self, node: ast.In):
        self._check_timestamptz(node.value, node.items)
        value = self.value(node.value)
        items = self.value(node.items)
        if not (isinstance(items, nodes.Const) and items.type == "list"):
            raise self.error(f"the right side of 'in' must be a list, got {self.typed(items)}", node.items.pos)
        if value.type in ("array", "list"):
            raise self.error(f"'in' is not supported on {self.typed(value)}", node.pos)
        want = _CATS[value.type]
        for item in items.value:
            cat = _CATS[_literal_type(item)]
            if not cat & want:
                raise self.error(f"value {_literal_desc(item)} in the list is not compatible with "
                                 f"{self.typed(value)}", node.items.pos)
        return preds.In(value, items.value, node.negate)

    def like(self, node: ast.Like):
        value = self.value(node.value)
        pattern = self.value(node.pattern)
        if not (isinstance(pattern, nodes.Const) and pattern.type == "str"):
            raise self.error(f"the pattern of like must be a string literal, got {self.typed(pattern)}",
                             node.pattern.pos)
        if value.type not in ("str", "json"):
            raise self.error(f"like operation on non-string or no-json field is unsupported: {self.typed(value)}",
                             node.pos)
        if isinstance(value, nodes.Const):
            return preds.ConstPred(match_one(pattern.value, value.value))
        return preds.Like(value, compile_like(pattern.value))

    def contains(self, node: ast.Call):
        mode = _CONTAINS[node.name]
        if len(node.args) != 2:
            raise self.error(f"{node.name} takes 2 arguments, got {len(node.args)}", node.pos)
        target, arg = self.value(node.args[0]), self.value(node.args[1])
        if not isinstance(arg, nodes.Const):
            raise self.error(f"the second argument of {node.name} must be a constant, got {self.typed(arg)}",
                             node.args[1].pos)
        if mode == "one":
            values = [arg.value]
        elif arg.type != "list":
            raise self.error(f"{node.name} operation element must be an array, got {self.typed(arg)}",
                             node.args[1].pos)
        else:
            values = arg.value
        if isinstance(target, nodes.JsonPath):
            return preds.JsonContains(target, values, mode)
        if isinstance(target, nodes.ArrayColumn):
            for v in values:
                if not _CATS[_literal_type(v)] & _CATS[target.elem]:
                    raise self.error(f"value {_literal_desc(v)} is not compatible with the elements of "
                                     f"{target.desc} (Array of {TYPE_NAMES[target.elem]})", node.args[1].pos)
            f = self.schema.field(target.field)
            assert f is not None, "name() made the target from this field"
            return preds.ArrayContains(target.field, values, mode, f.element_type == DataType.FLOAT)
        raise self.error(f"{node.name} operation is only supported on json or array fields, "
                         f"got {self.typed(target)}", node.args[0].pos)

    def _match_args(self, node: ast.Call, most: int):
        """(field, its analyzer, the text) of ``text_match`` / ``phrase_match(field, 'text'[, ...])`` on a
        VARCHAR field with ``enable_match``."""
        from vecdb.bm25 import text_analyzer  # noqa: PLC0415 - only for text and phrase match

        if not 2 <= len(node.args) <= most:
            raise self.error(f"{node.name} takes {'2' if most == 2 else '2 or 3'} arguments, got {len(node.args)}",
                             node.pos)
        f = self._text_field(node.args[0])  # TEXT: no value of its own here, only its analyzed terms
        if f is None:
            target = self.value(node.args[0])
            if not isinstance(target, nodes.Column) or target.type != "str":
                raise self.error(f"{node.name} is only supported on VARCHAR fields (and TEXT), got "
                                 f"{self.typed(target)}", node.args[0].pos)
            f = self.schema.field(target.field)
            assert f is not None, "name() made the target from this field"
        arg = self.value(node.args[1])
        if f.type_params.get("enable_match", "").strip().lower() != "true":
            raise self.error(f"field \"{f.name}\" does not enable match", node.args[0].pos)
        if not isinstance(arg, nodes.Const) or arg.type != "str":
            raise self.error(f"the second argument of {node.name} must be a string, got {self.typed(arg)}",
                             node.args[1].pos)
        return f, text_analyzer(f), arg.value  # (enable_match excludes multi_analyzer_params: vecdb.schema)

    def _text_field(self, node: ast.Node) -> FieldSchema | None:
        """The TEXT field ``node`` names, read (with its validity mask) by the match it is the target of;
        None where ``node`` is anything else."""
        f = self.schema.field(node.name) if isinstance(node, ast.Name) and not node.path else None
        if f is None or f.dtype != DataType.TEXT or self.element is not None:
            return None
        self.fields.add(f.name)
        if f.nullable:
            self.null_refs.add(valid_key(f.name))
            self.fields.add(valid_key(f.name))
        return f

    def text_match(self, node: ast.Call):
        """``text_match(field, 'words'[, minimum_should_match=n])`` on a VARCHAR field with
        ``enable_match`` (Milvus 2.5; the option 2.6: rows holding at least n of the words' distinct
        tokens, 1..1,000)."""
        from vecdb.analyzer import term_ids  # noqa: PLC0415 - only for text_match

        least = 1
        if node.args and isinstance(node.args[-1], ast.Keyword):
            option = node.args[-1]
            if option.name != "minimum_should_match":
                raise self.error(f"text_match has no option {option.name}", option.pos)
            arg = self.value(option.value)
            if not isinstance(arg, nodes.Const) or arg.type != "int":
                raise self.error("minimum_should_match should be a const integer expression", option.value.pos)
            least = int(arg.value)
            if not 1 <= least <= 1000:
                raise self.error(f"minimum_should_match should be {'>= 1' if least < 1 else '<= 1000'}, got {least}",
                                 option.value.pos)
            node = ast.Call(node.pos, node.name, node.args[:-1])
        f, analyzer, text = self._match_args(node, 2)
        return preds.TextMatch(f.name, analyzer, np.unique(term_ids(analyzer.tokens(text))), least)

    def text_match_fuzzy(self, node: ast.Call):
        """``text_match_fuzzy(field, 'words', max_edit_distance=k)`` on a VARCHAR (or TEXT) field with
        ``enable_match`` (Milvus 3.0's Plan.g4 and parser_visitor.go): rows holding a term within k
        edits (0..2, an adjacent transposition one) of any of the words' tokens. The option is
        required, an integer constant, its name a soft keyword (any case; a field may be named so);
        k 0 is ``text_match``."""
        from vecdb.text_fuzzy import MAX_EDIT_DISTANCE  # noqa: PLC0415 - only for text_match_fuzzy

        args = node.args
        if len(args) != 3 or not isinstance(args[-1], ast.Keyword) or \
                any(isinstance(a, ast.Keyword) for a in args[:-1]):
            if len(args) == 3 and not isinstance(args[-1], ast.Keyword):
                raise self.error("text_match_fuzzy expected max_edit_distance=<integer> as its third argument "
                                 "(mismatched input, expecting Identifier '=')", args[2].pos)
            at = args[min(len(args), 3) - 1].pos if args else node.pos
            raise self.error("text_match_fuzzy takes (field, 'text', max_edit_distance=<integer>), got "
                             f"{len(args)} argument{'s' if len(args) != 1 else ''} (expecting ',')", at)
        option = args[-1]
        assert isinstance(option, ast.Keyword)
        if option.name != "max_edit_distance":
            raise self.error(f"text_match_fuzzy expected max_edit_distance, got {option.name}", option.pos)
        value: ast.Node = option.value
        sign = 1
        if isinstance(value, ast.Unary) and value.op in ("-", "+"):
            sign = -1 if value.op == "-" else 1
            value = value.operand
        if not isinstance(value, ast.Literal) or not isinstance(value.value, int) or isinstance(value.value, bool):
            raise self.error("max_edit_distance should be an integer constant (expecting IntegerConstant)",
                             option.value.pos)
        k = sign * value.value
        if not 0 <= k <= MAX_EDIT_DISTANCE:
            raise self.error(f"max_edit_distance should be in [0, {MAX_EDIT_DISTANCE}], got {k}", option.value.pos)
        target = args[0]
        f = self.schema.field(target.name) if isinstance(target, ast.Name) and not target.path else None
        if f is not None and not f.is_dynamic and f.dtype not in (DataType.VARCHAR, DataType.TEXT):
            raise self.error(f"text_match_fuzzy operation on non-string field {f.name} "
                             f"({f.dtype.name}) is unsupported", target.pos)
        query = self.value(args[1])
        if not isinstance(query, nodes.Const) or query.type != "str":
            raise self.error("text_match_fuzzy query should be a string literal or template variable, got "
                             f"{self.typed(query)}", args[1].pos)
        f, analyzer, text = self._match_args(ast.Call(node.pos, node.name, args[:2]), 2)
        tokens = analyzer.tokens(text)
        if k == 0:  # exactly a term match (Milvus takes text_match's path)
            from vecdb.analyzer import term_ids  # noqa: PLC0415 - only for text matches

            return preds.TextMatch(f.name, analyzer, np.unique(term_ids(tokens)))
        return preds.TextMatchFuzzy(f.name, analyzer, list(dict.fromkeys(tokens)), k)

    def random_sample(self, node: ast.Call):
        """``random_sample(f)`` (Milvus 2.6): each row the rest of the filter keeps, with probability ``f``
        in (0, 1); placed by ``_top_level_samples``."""
        arg = self.value(node.args[0]) if len(node.args) == 1 else None
        if not (isinstance(arg, nodes.Const) and arg.type in ("int", "float") and 0 < arg.value < 1):
            raise self.error("the sampling factor of random_sample must be a number in (0, 1), exclusive", node.pos)
        return preds.RandomSample(float(arg.value))

    def phrase_match(self, node: ast.Call):
        """``phrase_match(field, 'words'[, slop])`` (Milvus 2.5.17+): the words' tokens in order, at most
        ``slop`` positions apart in all (0 by default: adjacent)."""
        f, analyzer, text = self._match_args(node, 3)
        slop = 0
        if len(node.args) == 3:
            arg = self.value(node.args[2])
            if not isinstance(arg, nodes.Const) or arg.type != "int" or not 0 <= arg.value < 1 << 31:
                raise self.error(f"slop of phrase_match must be a non-negative integer, got {self.typed(arg)}",
                                 node.args[2].pos)
            slop = int(arg.value)
        phrase, positions = analyzer.phrase(text)  # positions: tantivy's (a dropped word keeps its place)
        return preds.PhraseMatch(f.name, analyzer, phrase, slop, positions)

    def spatial(self, node: ast.Call):
        """``ST_<OP>(field, 'wkt')``, ``ST_DWITHIN(field, 'POINT (lon lat)', meters)`` and
        ``ST_ISVALID(field)`` on a GEOMETRY field (Milvus 2.6's Plan.g4 and parser_visitor.go: the WKT a
        string, a literal or a template value, checked here; the distance a non-negative constant)."""
        from vecdb import geometry  # noqa: PLC0415 - shapely only where a spatial filter is used

        op, label = node.name, node.name.upper()
        if len(node.args) != _SPATIAL[op]:
            raise self.error(f"{label} takes {_SPATIAL[op]} argument{'s' if _SPATIAL[op] > 1 else ''}, "
                             f"got {len(node.args)}", node.pos)
        what = {"st_isvalid": "STIsValid", "st_dwithin": "ST_DWITHIN"}.get(op, "spatial")
        target = node.args[0]
        f = self.schema.field(target.name) if isinstance(target, ast.Name) and not target.path else None
        if f is None or f.dtype != DataType.GEOMETRY:
            if isinstance(target, ast.Name) and self.schema.field(target.name) is None \
                    and not self.schema.enable_dynamic_field:
                raise self.error(f"field {target.name} not exist", target.pos)
            got = _path_desc(target.name, target.path) if isinstance(target, ast.Name) else "an expression"
            raise self.error(f"{what} operation are only supported on geometry fields now, got: {label}({got})",
                             target.pos)
        self.fields.add(f.name)
        if f.nullable:
            self.null_refs.add(valid_key(f.name))
            self.fields.add(valid_key(f.name))
        if op == "st_isvalid":
            return preds.Spatial(op, f.name, None)
        wkt = self.value(node.args[1])
        if not isinstance(wkt, nodes.Const) or wkt.type != "str":
            raise self.error(f"the second argument of {label} must be a WKT string, got {self.typed(wkt)}",
                             node.args[1].pos)
        try:
            query = (geometry.query_point if op == "st_dwithin" else geometry.query_geometry)(wkt.value)
        except InvalidParameter as e:
            raise self.error(e.message, node.args[1].pos) from None
        if op != "st_dwithin":
            return preds.Spatial(op, f.name, query.wkb)
        dist = self.value(node.args[2])
        if not isinstance(dist, nodes.Const):
            raise self.error(f"distance parameter must be a constant numeric value, got: {dist.desc}",
                             node.args[2].pos)
        if dist.type not in ("int", "float"):
            raise self.error(f"distance parameter must be a numeric value (int or float), got: {dist.desc}",
                             node.args[2].pos)
        if dist.value < 0:
            raise self.error(f"distance parameter must be non-negative, got: {float(dist.value):f}", node.args[2].pos)
        return preds.Spatial(op, f.name, query.wkb, float(dist.value))

    # --- values --------------------------------------------------------
    def value(self, node: ast.Node) -> nodes.ValueNode:
        if isinstance(node, ast.Literal):
            return self.const(node.value, node.pos)
        if isinstance(node, ast.ListLiteral):
            values = [self.value(x) for x in node.items]
            items: list[nodes.Const] = []
            for x, item in zip(node.items, values, strict=True):
                if not isinstance(item, nodes.Const):
                    raise self.error(f"list elements must be constants, got {self.typed(item)}", x.pos)
                items.append(item)
            return self.const([x.value for x in items], node.pos)
        if isinstance(node, ast.Template):
            if node.name not in self.templates:
                raise self.error(f"the value of expression template variable {node.name} is not found", node.pos)
            return self.const(self._template_value(self.templates[node.name], node), node.pos)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.SubField):
            return self.sub_field(node)
        if self.element is not None and isinstance(node, ast.Call):
            element.refuse_in_element(self, node)
        if isinstance(node, ast.Keyword):  # (text_match takes its option before this)
            raise self.error(f"unexpected keyword argument {node.name}=", node.pos)
        if isinstance(node, ast.Unary) and node.op in ("-", "+"):
            return self.negate(node)
        if isinstance(node, ast.Binary) and node.op in _ARITH:
            return self.arith(node)
        if isinstance(node, ast.Call) and node.name == "array_length":
            if len(node.args) != 1:
                raise self.error(f"array_length takes 1 argument, got {len(node.args)}", node.pos)
            src = self.value(node.args[0])
            if not isinstance(src, (nodes.ArrayColumn, nodes.JsonPath)):
                raise self.error(f"array_length is only supported on array or json fields, got {self.typed(src)}",
                                 node.args[0].pos)
            return nodes.ArrayLength(src, f"array_length({src.desc})")
        if isinstance(node, ast.Call) and node.name not in _CONTAINS and node.name not in _SPATIAL and \
                node.name not in ("text_match", "text_match_fuzzy", "phrase_match", "random_sample") and \
                node.name not in element.OPERATORS:
            raise self.error(f"function {node.name}() is not supported", node.pos)
        return nodes.PredValue(self.predicate(node), "predicate")

    def const(self, value, pos: int) -> nodes.Const:
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise self.error(f"integer {value} out of int64 range", pos)
        return nodes.Const(value, _literal_type(value), _literal_desc(value))

    def _template_value(self, v, node: ast.Template):
        if isinstance(v, (np.generic, np.ndarray)):
            v = v.tolist()
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, list):
            return [self._template_value(x, node) for x in v]
        if isinstance(v, (bool, int, float, str)):
            return v
        raise self.error(f"unsupported value {clip(repr(v))} for template variable {node.name}", node.pos)

    def sub_field(self, node: ast.SubField) -> nodes.Column:
        """``$[sub]`` inside an element predicate: the element column of the struct's scalar sub-field."""
        scope = self.element
        if scope is None:
            raise self.error(f"$[{node.name}] syntax can only be used inside ElementFilter or MATCH_*", node.pos)
        full = struct_sub_field_name(scope.struct, node.name)
        f = self.schema.field(full)
        if f is None or f.struct_name != scope.struct:
            raise self.error(f"array field not found: {full}", node.pos)
        if f.dtype != DataType.ARRAY:
            raise self.error(f"vector sub-field {full} can't be used in a filter expression", node.pos)
        self.fields.add(full)
        scope.columns[full] = np.dtype(_ELEM_DTYPES[f.element_type])
        return nodes.Column(full, static_type(f.element_type), f"$[{node.name}]")

    def name(self, node: ast.Name) -> nodes.FieldNode:
        if self.element is not None:
            raise self.error(element.ROW_LEVEL, node.pos)
        name, path = node.name, node.path
        desc = _path_desc(name, path)
        dynamic = self.schema.enable_dynamic_field
        if name == DYNAMIC_FIELD:
            if not dynamic:
                raise self.error(f"field {name} not exist", node.pos)
            self.fields.add(DYNAMIC_FIELD)
            return nodes.JsonPath(DYNAMIC_FIELD, path, desc)
        f = self.schema.field(name)
        if f is None and self.schema.struct(name) is not None:  # (not a dynamic key, even where there are some)
            raise self.error(f"array-of-struct field {name} can only be filtered with element_filter or MATCH_*",
                             node.pos)
        if f is None or f.is_dynamic:
            if not dynamic:
                raise self.error(f"field {name} not exist", node.pos)
            self.fields.add(DYNAMIC_FIELD)
            return nodes.JsonPath(DYNAMIC_FIELD, (name, *path), desc)
        t = static_type(f.dtype)
        if f.dtype == DataType.TEXT:  # Milvus 3.0: only its analyzed terms are filtered on
            raise self.error(f"TEXT field {name} does not support scalar filter operators (comparison, range, "
                             "IN, LIKE, regex, IS NULL); filter it with text_match or phrase_match "
                             "(enable_analyzer and enable_match)", node.pos)
        if not t:
            raise self.error(f"field {name} of type {f.dtype.name} can't be used in a filter expression", node.pos)
        self.fields.add(name)
        if f.nullable:
            self.null_refs.add(valid_key(name))
            self.fields.add(valid_key(name))
        if t == "json":
            return nodes.JsonPath(name, path, desc)
        if t == "array":
            elem = static_type(f.element_type)
            if not path:
                return nodes.ArrayColumn(name, elem, desc)
            if len(path) == 1 and isinstance(path[0], int):
                return nodes.ArrayElem(name, path[0], elem, _ELEM_DTYPES[f.element_type], desc)
            raise self.error(f"array field {name} only supports one integer index", node.pos)
        if path:
            raise self.error(f"field {name} is not a json or array field and can't be indexed", node.pos)
        return nodes.Column(name, t, desc)

    def _numeric(self, v: nodes.ValueNode, op: str, pos: int) -> None:
        if v.type not in ("int", "float", "json"):
            raise self.error(f"arithmetic operator '{op}' is not supported on {self.typed(v)}", pos)

    def negate(self, node: ast.Unary) -> nodes.ValueNode:
        v = self.value(node.operand)
        self._numeric(v, node.op, node.pos)
        if node.op == "+":
            return v
        if isinstance(v, nodes.Const):
            return self.const(-v.value, node.pos)
        return nodes.Neg(v, f"-{v.desc}")

    def arith(self, node: ast.Binary) -> nodes.ValueNode:
        left, right = self.value(node.left), self.value(node.right)
        self._numeric(left, node.op, node.left.pos)
        self._numeric(right, node.op, node.right.pos)
        if isinstance(left, nodes.Const) and isinstance(right, nodes.Const):
            return self.const(self._fold(node.op, left.value, right.value, node), node.pos)
        if node.op == "**":
            raise self.error("power operator is only supported on constants", node.pos)
        if node.op in ("/", "%") and isinstance(right, nodes.Const) and right.value == 0:
            raise self.error("divide by zero" if node.op == "/" else "modulo by zero", node.right.pos)
        t = "int" if left.type == right.type == "int" else "float"
        return nodes.Arith(node.op, left, right, t, f"{left.desc} {node.op} {right.desc}")

    def _fold(self, op: str, a, b, node: ast.Binary):
        """``a op b`` on constants; a float result must be finite (``1e308 * 10`` is refused, as a
        literal out of float range is), an int result is range-checked by ``const``."""
        if op in ("/", "%") and b == 0:
            raise self.error("divide by zero" if op == "/" else "modulo by zero", node.right.pos)
        try:
            r = self._arith(op, a, b, node)
        except (OverflowError, ValueError, ZeroDivisionError):
            r = math.nan
        if isinstance(r, float) and not math.isfinite(r):
            raise self.error(f"invalid constant arithmetic {a} {op} {b}", node.pos)
        return r

    def _arith(self, op: str, a, b, node: ast.Binary):
        both_int = isinstance(a, int) and isinstance(b, int)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return trunc_div(a, b) if both_int else a / b
        if op == "%":
            return a - b * trunc_div(a, b) if both_int else math.fmod(a, b)
        return self._power(a, b, node)

    def _power(self, a, b, node: ast.Binary):
        """``a ** b`` on constants. int ** non-negative int stays an int, which must fit int64: its
        size, b * log2|a| bits, is checked before computing, so ``3 ** 10000000`` or ``9 ** 9 ** 9``
        fail at once instead of building a huge integer. Anything else is a float power: too large
        raises OverflowError, ``0 ** -1`` ZeroDivisionError, a negative base with a fractional
        exponent (a complex result) ValueError; ``_fold`` turns them into InvalidParameter."""
        if isinstance(a, int) and isinstance(b, int) and b >= 0:
            if abs(a) > 1 and b * math.log2(abs(a)) > 64:
                raise self.error(f"integer result of {a} ** {b} is out of int64 range", node.pos)
            return a**b  # at most ~2**64: const() then checks the exact int64 range
        r = float(a) ** b
        if isinstance(r, complex):
            raise ValueError
        return r


def _top_level_samples(expr: str, tree: ast.Node) -> None:
    """Refuse a ``random_sample`` call where Milvus 2.6 does not take one: it may be the whole filter,
    or an operand of its top-level ``and`` chain (then it samples the rows the rest keeps), once."""
    top = _chain(tree) if isinstance(tree, ast.Binary) and tree.op == "and" else [tree]
    allowed = {id(n) for n in top if isinstance(n, ast.Call) and n.name == "random_sample"}
    stack, found = [tree], []
    while stack:  # without recursing: the tree may be thousands of nodes deep in and / or chains
        node = stack.pop()
        if isinstance(node, ast.Call) and node.name == "random_sample":
            found.append(node)
        stack.extend(ast.children(node))
    for node in found:
        if id(node) not in allowed or len(found) > 1:
            raise syntax_error(expr, "random_sample can only be used once, on its own or and-ed with the rest "
                                     "of the filter at its top level")


def _chain(node: ast.Binary) -> list[ast.Node]:
    """The operands of a chain ``x or y or z`` (parsed left-deep: ((x or y) or z)), found
    without recursing, so a chain of thousands of terms doesn't exhaust the stack."""
    op, operands = node.op, []
    cur: ast.Node = node
    while isinstance(cur, ast.Binary) and cur.op == op:
        operands.append(cur.right)
        cur = cur.left
    operands.append(cur)
    return operands[::-1]


def trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q

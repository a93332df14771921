"""Partition key isolation: the ``partitionkey.isolation`` collection property (Milvus 2.4+).

Milvus builds one index per partition key value of such a collection, so a search must name exactly
one value: its filter holds ``key == v`` (ANDed with anything else) and no other test of the key.
vecdb keeps one index over all the rows and filters by the key, so isolation changes no result here;
what it takes from Milvus are the rules, so that code written against Milvus is refused and accepted
alike:

- create / alter: the value is a bool (Go's ParseBool); true needs a partition key field (105), and
  turning it on or off while a vector field has an index is refused (702: drop the index first);
- search (and each request of a hybrid search) on such a collection: its filter is checked as
  Milvus's ``ValidatePartitionKeyIsolation`` walks the plan (1100, Milvus's words): the key may be
  tested only by ``==`` against a constant, under ``and`` only (not ``or``, not ``not``), and at least
  once; an empty filter is refused. Queries and deletes are not checked (Milvus's are not).
"""

from __future__ import annotations

from collections.abc import Mapping

from vecdb import errors
from vecdb.expr import ast
from vecdb.expr.filter import Filter
from vecdb.expr.parser import parse
from vecdb.go_parse import go_bool
from vecdb.schema import CollectionSchema

ISOLATION_KEY = "partitionkey.isolation"
# Milvus's plan OpType names, as its refusals name them (a constant on the left reverses the comparison)
_OPS = {"==": "Equal", "!=": "NotEqual", "<": "LessThan", "<=": "LessEqual", ">": "GreaterThan", ">=": "GreaterEqual"}
_REVERSED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
NOT_FOUND = "partition key not found in expr or the expr is invalid when validating partition key isolation"


def enabled(properties: Mapping[str, str]) -> bool:
    """Whether the property is set true; InvalidParameter for a value Go's ParseBool refuses (Milvus
    parses the lower-cased value, and its error quotes that)."""
    raw = properties.get(ISOLATION_KEY)
    if raw is None:
        return False
    value = go_bool(raw.lower())
    if value is None:
        raise errors.InvalidParameter(f'failed to parse partition key isolation: strconv.ParseBool: parsing '
                                      f'"{raw.lower()}": invalid syntax')
    return value


def stored_enabled(properties: Mapping[str, str]) -> bool:
    """``enabled`` of a collection's stored properties: a value no bool (kept by a vecdb from before these
    rules, which took any text and ignored it) reads as off, so that collection stays searchable and
    its property can still be altered or dropped."""
    try:
        return enabled(properties)
    except errors.InvalidParameter:
        return False


def check_create(name: str, schema: CollectionSchema, properties: Mapping[str, str]) -> None:
    if enabled(properties) and schema.partition_key_field is None:
        raise errors.IllegalSchema("partition key isolation mode is enabled but no partition key field is set. Please "
                                   f"set the partition key first: illegal collection schema[collection={name}]")


def check_alter(name: str, schema: CollectionSchema, old: Mapping[str, str], properties: Mapping[str, str],
                delete_keys: list[str], indexed_vector: str | None) -> None:
    """An alter of ``name`` (its properties ``old``) setting ``properties`` and dropping ``delete_keys``;
    ``indexed_vector``: a vector field with an index, if any."""
    before = stored_enabled(old)
    if ISOLATION_KEY in properties:
        after = enabled(properties)
        check_create(name, schema, properties)
    elif ISOLATION_KEY in delete_keys:
        after = False
    else:
        return
    if after != before and indexed_vector is not None:
        raise errors.IndexDuplicate("can not alter partition key isolation mode if the collection already has a vector "
                                    f"index. Please drop the index first: index duplicates[indexName={indexed_vector}]")


def check_search_filter(schema: CollectionSchema, properties: Mapping[str, str], flt: Filter | None) -> None:
    """A search's compiled filter (None: none) on a collection with isolation on. The verdict is kept
    on the filter, which the filter cache shares: a search pays a dict hit, not a second parse (~80 us,
    300 ms for ``k == 1 and id in [10,000 keys]``)."""
    key = schema.partition_key_field
    if key is None or not stored_enabled(properties):
        return
    if flt is None:
        raise errors.InvalidParameter(NOT_FOUND)
    verdict = flt.memo.get((ISOLATION_KEY, key.name))
    if verdict is None:
        try:
            verdict = "" if _names_key(parse(flt.expr), key.name) else NOT_FOUND
        except errors.InvalidParameter as e:
            verdict = e.message
        flt.memo[(ISOLATION_KEY, key.name)] = verdict
    if verdict:
        raise errors.InvalidParameter(verdict)


def _is_key(node: ast.Node, key: str) -> bool:
    return isinstance(node, ast.Name) and node.name == key and not node.path


def _constant(node: ast.Node) -> bool:
    """A literal, a template value or arithmetic of them: what Milvus folds into a plan's constant."""
    if isinstance(node, (ast.Literal, ast.Template)):
        return True
    if isinstance(node, ast.Unary) and node.op in ("-", "+"):
        return _constant(node.operand)
    if isinstance(node, ast.Binary) and node.op in ("+", "-", "*", "/", "%", "**"):
        return _constant(node.left) and _constant(node.right)
    return False


def _refuse(what: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"partition key isolation does not support {what}")


def _names_key(node: ast.Node, key: str) -> bool:
    """Whether ``node`` pins the key (``key == constant`` under ``and``s); raises where Milvus refuses."""
    if isinstance(node, ast.Binary) and node.op in ("and", "or"):
        left, right = _names_key(node.left, key), _names_key(node.right, key)
        if node.op == "or" and (left or right):
            raise _refuse("OR")
        return left or right
    if isinstance(node, ast.Unary) and node.op == "not":
        if _names_key(node.operand, key):
            raise _refuse("NOT")
        return False
    if isinstance(node, ast.In):
        if _is_key(node.value, key):
            raise _refuse("IN")
        return False
    if isinstance(node, ast.Range):
        if _is_key(node.middle, key) and _constant(node.lower) and _constant(node.upper):
            raise _refuse("BinaryRange")
        return False
    if isinstance(node, ast.Like):
        if _is_key(node.value, key):
            raise _refuse(_like_op(node.pattern))
        return False
    if isinstance(node, ast.Binary) and node.op in _OPS:
        op = node.op
        if _is_key(node.left, key) and _constant(node.right):
            pass
        elif _is_key(node.right, key) and _constant(node.left):
            op = _REVERSED[op]
        else:
            return False
        if op != "==":
            raise _refuse(_OPS[op])
        return True
    return False


def _like_op(pattern: ast.Node) -> str:
    """The OpType Milvus's parser makes of ``key like pattern``."""
    text = pattern.value if isinstance(pattern, ast.Literal) and isinstance(pattern.value, str) else ""
    inner = text.strip("%")
    plain = "_" not in inner and "%" not in inner and "\\" not in inner
    if plain and text.endswith("%") and not text.startswith("%"):
        return "PrefixMatch"
    if plain and text.startswith("%") and not text.endswith("%"):
        return "PostfixMatch"
    if plain and text.startswith("%") and text.endswith("%") and len(text) > 1:
        return "InnerMatch"
    return "Match"

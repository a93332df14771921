"""What a review of the December 6 commits found, each kept as a regression test:

- the ``pk in [plain keys]`` fast path (vecdb.expr.parser._plain_term) took string literals the lexer
  refuses (a CR, a lone surrogate: REST's JSON can carry ``"\\ud800"``), so such a filter compiled
  where the parser answers "unterminated string literal" / "lone surrogate";
- ``partitionkey.isolation`` (vecdb.key_isolation): a value stored by a vecdb from before its rules (any
  text was taken, and ignored) made every search of the collection fail, and the property could be
  neither altered nor dropped; Milvus's ParseBool error quotes the lower-cased value; a search parsed
  its (cached) filter a second time on every call;
- the RBAC fence (vecdb.security.view) waited its whole bound on every RBAC call for a live proxy that
  publishes no applied revision (one from before the fence, in a rolling upgrade).
"""

from __future__ import annotations

import time

import pytest

from vecdb import key_isolation
from vecdb.config import SecuritySettings
from vecdb.errors import IndexDuplicate, InvalidParameter
from vecdb.expr import compile_filter
from vecdb.expr.parser import _Parser, _plain_term, parse
from vecdb.schema import CollectionSchema, DataType, FieldSchema
from vecdb.security import Security
from vecdb.security.view import APPLIED_PREFIX
from vecdb.storage.memory import MemoryMetaStore

ISO = key_isolation.ISOLATION_KEY


@pytest.mark.parametrize("expr", ["x in ['a\rb']", 'x in ["a\rb", "c"]', "x in ['\ud800']", "x in [1, 'a\udfffb']"])
def test_plain_term_leaves_to_the_parser_what_the_lexer_refuses(expr):
    assert _plain_term(expr) is None
    with pytest.raises(InvalidParameter) as want:
        _Parser(expr).parse()
    with pytest.raises(InvalidParameter) as got:
        parse(expr)
    assert got.value.message == want.value.message
    assert "unterminated string literal" in got.value.message or "lone surrogate" in got.value.message


def _schema() -> CollectionSchema:
    return CollectionSchema("c", [FieldSchema("id", DataType.INT64, 100, is_primary=True),
                                  FieldSchema("k", DataType.INT64, 101, is_partition_key=True),
                                  FieldSchema("x", DataType.INT64, 102),
                                  FieldSchema("v", DataType.FLOAT_VECTOR, 103, dim=4)])


def test_a_stored_value_that_is_no_bool_reads_as_off_and_can_be_changed():
    schema, stored = _schema(), {ISO: "on"}  # kept by a vecdb from before key_isolation
    key_isolation.check_search_filter(schema, stored, None)  # searchable as before, with no filter at all
    key_isolation.check_search_filter(schema, stored, compile_filter("x > 1", schema))
    key_isolation.check_alter("c", schema, stored, {ISO: "false"}, [], "v")  # off -> off: no index check
    key_isolation.check_alter("c", schema, stored, {}, [ISO], "v")
    with pytest.raises(IndexDuplicate, match="Please drop the index first"):
        key_isolation.check_alter("c", schema, stored, {ISO: "true"}, [], "v")  # off -> on, indexed
    with pytest.raises(InvalidParameter, match="failed to parse"):
        key_isolation.check_alter("c", schema, {}, {ISO: "on"}, [], None)  # a new value is still checked


def test_the_parse_error_quotes_the_lower_cased_value_as_milvus_does():
    assert key_isolation.enabled({ISO: "TRUE"}) and not key_isolation.enabled({ISO: "F"})
    with pytest.raises(InvalidParameter) as err:
        key_isolation.enabled({ISO: "YES"})
    assert err.value.message == 'failed to parse partition key isolation: strconv.ParseBool: parsing "yes": ' \
                                "invalid syntax"


def test_a_searchs_filter_is_checked_once_per_compiled_filter(monkeypatch):
    schema, on = _schema(), {ISO: "true"}
    parsed = []
    monkeypatch.setattr(key_isolation, "parse", lambda expr: parsed.append(expr) or parse(expr))
    good = compile_filter("k == 1 and x > 3", schema)
    bad = compile_filter("k in [1, 2] and x > 4", schema)
    for _ in range(3):
        key_isolation.check_search_filter(schema, on, compile_filter("k == 1 and x > 3", schema))
        with pytest.raises(InvalidParameter, match="does not support IN"):
            key_isolation.check_search_filter(schema, on, bad)
        with pytest.raises(InvalidParameter, match="partition key not found"):
            key_isolation.check_search_filter(schema, on, None)
    assert parsed == [good.expr, bad.expr]
    other = _schema()
    other.fields[1].is_partition_key, other.fields[2].is_partition_key = False, True  # another key: checked anew
    with pytest.raises(InvalidParameter, match="does not support GreaterThan"):  # x > 3, x the key now
        key_isolation.check_search_filter(other, on, good)


def test_a_proxy_that_publishes_nothing_is_not_waited_for():
    """A live proxy of a vecdb from before the fence (a rolling upgrade) holds ``session/proxy/<id>`` and
    no ``security/applied/<id>``; one of this version holds that key from before its session. Only the
    latter is waited for."""
    meta = MemoryMetaStore()
    a = Security(meta, SecuritySettings(authorization_enabled=True), node_id="a", ttl=5)
    try:
        meta.put("session/proxy/a", b"{}")
        meta.put("session/proxy/older", b"{}")
        a.view.fence_wait = 3
        t0 = time.monotonic()
        a.roles.create_role("upgrading")
        assert time.monotonic() - t0 < 1.5
        assert a.roles.role_exists("upgrading")
        meta.put(APPLIED_PREFIX + "older", b"0")  # now a proxy of this version that applies nothing: waited for
        t0 = time.monotonic()
        a.roles.create_role("waited")
        assert time.monotonic() - t0 >= 3
    finally:
        a.close()
        meta.close()

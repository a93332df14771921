"""Every implementation of a role contract (vecdb.roles) has every method of the Protocol with the
same parameter names and kinds, so the in-process roles and their remote clients are
interchangeable. Compared with inspect.signature: ``isinstance`` on a runtime Protocol checks names
only. Defaults may differ; an implementation may add trailing parameters that have defaults
(``RemoteQueryNode``'s ``wait``)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from vecdb import roles
from vecdb.coord.catalog import Catalog
from vecdb.coord.client import RemoteIdAllocator, RemoteTimestampOracle
from vecdb.coord.ddl import DdlManager
from vecdb.coord.ddl_rpc import RemoteDdl
from vecdb.coord.flush import FlushManager, RemoteFlush
from vecdb.coord.segment_moves import LocalSegmentMoves, RemoteSegmentMoves
from vecdb.coord.tso import IdAllocator, TimestampOracle
from vecdb.datanode.indexer import SegmentIndexer
from vecdb.datanode.node import DataNode
from vecdb.datanode.remote import ClusterIndexer
from vecdb.expr.filter import Filter, KeyFilter
from vecdb.node import LocalQueryNode
from vecdb.proxy.router import QueryNodeRouter
from vecdb.querynode.node import QueryNode
from vecdb.querynode.rpc import RemoteQueryNode

IMPLEMENTATIONS = [
    (roles.QueryNodeRole, QueryNode),
    (roles.QueryNodeRole, QueryNodeRouter),
    (roles.QueryNodeRole, RemoteQueryNode),
    (roles.QueryNodeRole, LocalQueryNode),
    (roles.DataNodeRole, DataNode),
    (roles.IndexBuilder, SegmentIndexer),
    (roles.IndexBuilder, ClusterIndexer),
    (roles.TimestampSource, TimestampOracle),
    (roles.TimestampSource, RemoteTimestampOracle),
    (roles.IdSource, IdAllocator),
    (roles.IdSource, RemoteIdAllocator),
    (roles.CatalogRole, Catalog),
    (roles.DdlRole, DdlManager),
    (roles.DdlRole, RemoteDdl),
    (roles.FlushRole, FlushManager),
    (roles.FlushRole, RemoteFlush),
    (roles.SegmentMover, LocalSegmentMoves),
    (roles.SegmentMover, RemoteSegmentMoves),
    (roles.RowFilter, Filter),
    (roles.RowFilter, KeyFilter),
]

# what a data member may be on the implementing class: set in __init__ (then it is checked on an
# instance, below), a property, or a slot
INSTANCE_ATTRIBUTES = {(DataNode, "indexer"), (KeyFilter, "fields")}


def _members(proto: type) -> dict[str, object]:
    return {name: value for name, value in vars(proto).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def _incompatible(want: inspect.Signature, have: inspect.Signature) -> str | None:
    """Why ``have`` cannot stand in for ``want``, or None: the positional parameters alike in order
    (more allowed after them, with defaults), each keyword-only one also keyword-only there, by name."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    wanted = [p for p in want.parameters.values() if p.kind != keyword]
    had = [p for p in have.parameters.values() if p.kind != keyword]
    if len(had) < len(wanted):
        return f"missing parameters: {have} for {want}"
    pairs = list(zip(wanted, had))
    for w in want.parameters.values():
        if w.kind == keyword:
            h = have.parameters.get(w.name)
            if h is None or h.kind != keyword:
                return f"no keyword-only parameter {w.name} in {have}"
            pairs.append((w, h))
    for w, h in pairs:
        if (w.name, w.kind) != (h.name, h.kind):
            return f"parameter {h.name} ({h.kind.description}) where {w.name} ({w.kind.description}) is wanted"
        if w.default is not inspect.Parameter.empty and h.default is inspect.Parameter.empty:
            return f"parameter {h.name} has no default"
    used = {h.name for _, h in pairs}
    extra = [p.name for p in have.parameters.values() if p.name not in used
             and p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return f"extra parameters without a default: {extra}" if extra else None


def test_every_protocol_has_an_implementation_listed():
    protocols = {obj for obj in vars(roles).values()
                 if isinstance(obj, type) and getattr(obj, "_is_protocol", False) and obj.__module__ == roles.__name__}
    assert protocols == {proto for proto, _ in IMPLEMENTATIONS}


@pytest.mark.parametrize(("proto", "impl"), IMPLEMENTATIONS,
                         ids=[f"{p.__name__}-{i.__name__}" for p, i in IMPLEMENTATIONS])
def test_implementation_has_every_member_with_a_compatible_signature(proto, impl):
    problems = []
    for name, member in _members(proto).items():
        have = inspect.getattr_static(impl, name, None)
        if isinstance(member, property):
            if have is None and (impl, name) not in INSTANCE_ATTRIBUTES:
                problems.append(f"{name}: no such attribute")
            continue
        if have is None:
            problems.append(f"{name}: missing")
            continue
        if isinstance(have, property) or not callable(getattr(impl, name)):
            problems.append(f"{name}: not a method")
            continue
        why = _incompatible(inspect.signature(member), inspect.signature(getattr(impl, name)))
        if why:
            problems.append(f"{name}: {why}")
    assert not problems, f"{impl.__name__} does not satisfy {proto.__name__}: {problems}"


def test_the_instance_attributes_are_there():
    from vecdb.storage.memory import MemoryLog, MemoryMetaStore, MemoryObjectStore

    meta = MemoryMetaStore()
    node = DataNode(MemoryLog(), meta, MemoryObjectStore(), IdAllocator(meta))
    try:
        assert isinstance(node.indexer, SegmentIndexer)
    finally:
        node.close()
    assert KeyFilter("id", np.arange(3)).fields == frozenset({"id"})


def test_the_check_catches_a_renamed_or_missing_parameter():
    class Renamed:
        def allocate(self, n: int = 1) -> int:
            return 0

    class NoDefault:
        def allocate(self, count: int) -> int:
            return 0

    class ExtraRequired:
        def allocate(self, count: int = 1, strict: bool = False, *, why: str) -> int:
            return 0

    want = inspect.signature(roles.IdSource.allocate)
    for impl in (Renamed, NoDefault, ExtraRequired):
        assert _incompatible(want, inspect.signature(impl.allocate)) is not None, impl.__name__

"""Resource groups, as Milvus 2.4's query coord has them: named sets of query nodes that replicas
are placed on (``load_collection(..., resource_groups=[...])``).

Keys (in the metadata store), every write a compare-and-set on the values read, so several
proxies and the coord agree:

- ``rg/<name>``: ``{"config": {"requests": n, "limits": n, "transfer_from": [...],
  "transfer_to": [...]}, "nodes": [node id, ...]}``. ``__default_resource_group`` holds every
  live query node no other group holds; its key, when present, only carries its config
  (requests 0, limits 1,000,000 until ``UpdateResourceGroups`` changes them).

Rules (``recover``, pure; the coord runs it on every change, the proxy after each call that
changes a config):

- A node whose session ended leaves its group. A node in no group is in the default group.
- A group with fewer nodes than ``requests`` takes nodes, one at a time, from the group with the
  most redundant nodes (more than its ``limits``), else from the one with the most nodes above its
  ``requests`` (a group named in its ``transfer_from`` first).
- A group with more nodes than ``limits`` gives them to a group missing nodes, else to one below
  its limits (one named in its ``transfer_to`` first), else to the default group.
- ``TransferNode(source, target, n)`` is a config change as in Milvus 2.4: the source's requests
  (and, unless it is the default group, its limits) go down by n, the target's requests up by n
  (limits at least as high); the rules above then move the nodes.

Replicas (``replica_groups``): a load names no group (every replica in the default group), one
group (every replica there) or one group per replica; each group needs at least as many nodes as
the replicas it gets. The catalog keeps each loaded collection's replica groups
(``CollectionInfo.resource_groups``); ``vecdb.coord.assignment`` places a replica's nodes only
from its group's live nodes.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vecdb import errors
from vecdb.storage.base import MetaStore

if TYPE_CHECKING:
    from vecdb.catalog_model import CollectionInfo

DEFAULT_RESOURCE_GROUP = "__default_resource_group"
DEFAULT_CAPACITY = 1_000_000  # the default group's limits (and reported capacity), as in Milvus
MAX_GROUPS = 1024  # Milvus's quotaAndLimits.limits.maxResourceGroupNumOfQueryNode
MAX_NAME_LENGTH = 255
RG_PREFIX = "rg/"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rg_key(name: str) -> str:
    return f"{RG_PREFIX}{name}"


@dataclass
class GroupConfig:
    requests: int = 0
    limits: int = 0
    transfer_from: list[str] = field(default_factory=list)
    transfer_to: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"requests": self.requests, "limits": self.limits, "transfer_from": list(self.transfer_from),
                "transfer_to": list(self.transfer_to)}

    @classmethod
    def from_dict(cls, d: dict) -> GroupConfig:
        return cls(int(d.get("requests", 0)), int(d.get("limits", 0)), list(d.get("transfer_from", [])),
                   list(d.get("transfer_to", [])))


def default_config() -> GroupConfig:
    return GroupConfig(0, DEFAULT_CAPACITY)


@dataclass
class Group:
    name: str
    config: GroupConfig
    nodes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return max(self.config.requests - len(self.nodes), 0)

    @property
    def oversized(self) -> int:
        return max(len(self.nodes) - self.config.requests, 0)

    @property
    def room(self) -> int:
        return max(self.config.limits - len(self.nodes), 0)

    @property
    def redundant(self) -> int:
        return max(len(self.nodes) - self.config.limits, 0)

    @property
    def capacity(self) -> int:
        """What Milvus reports as capacity (deprecated there): requests, or 1,000,000 for the default group."""
        return DEFAULT_CAPACITY if self.name == DEFAULT_RESOURCE_GROUP else self.config.requests

    def to_json(self) -> bytes:
        nodes = [] if self.name == DEFAULT_RESOURCE_GROUP else sorted(self.nodes)
        return json.dumps({"config": self.config.to_dict(), "nodes": nodes}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, name: str, raw: bytes) -> Group:
        d = json.loads(raw)
        return cls(name, GroupConfig.from_dict(d.get("config", {})), [str(n) for n in d.get("nodes", [])])


Groups = dict[str, Group]


def parse_groups(raw: dict[str, bytes], live: list[str]) -> Groups:
    """The groups from their keys (``name -> value``, without the prefix), the default one always
    there, holding the live nodes no other group holds (dead nodes are still listed by the others:
    ``recover`` takes them out)."""
    out: Groups = {name: Group.from_json(name, v) for name, v in raw.items()}
    default = out.get(DEFAULT_RESOURCE_GROUP)
    if default is None:
        default = out[DEFAULT_RESOURCE_GROUP] = Group(DEFAULT_RESOURCE_GROUP, default_config())
    held = {n for g in out.values() if g.name != DEFAULT_RESOURCE_GROUP for n in g.nodes}
    default.nodes = sorted(n for n in set(live) if n not in held)
    return out


def node_groups(groups: Groups) -> dict[str, str]:
    """node id -> the name of its group."""
    return {n: g.name for g in groups.values() for n in g.nodes}


# --- validation -------------------------------------------------------------------------
def validate_name(name: str) -> None:
    """Milvus's proxy check (ValidateResourceGroupName)."""
    if not name:
        raise errors.InvalidParameter("resource group name couldn't be empty")
    invalid = f"Invalid resource group name {name}."
    if len(name) > MAX_NAME_LENGTH:
        raise errors.InvalidParameter(
            f"{invalid} the length of a resource group name must be less than {MAX_NAME_LENGTH} characters")
    if not (name[0] == "_" or name[0].isascii() and name[0].isalpha()):
        raise errors.InvalidParameter(f"{invalid} the first character of a resource group name must be an "
                                      "underscore or letter")
    if not _NAME.fullmatch(name):
        raise errors.InvalidParameter(f"{invalid} resource group name can only contain numbers, letters and "
                                      "underscores")


def validate_config(name: str, cfg: GroupConfig, names: set[str]) -> None:
    def illegal(why: str) -> errors.ResourceGroupIllegalConfig:
        return errors.ResourceGroupIllegalConfig(f"resource group illegal config[rg={name}]: {why}")
    if cfg.requests < 0 or cfg.limits < 0:
        raise illegal("node num in `requests` or `limits` should not less than 0")
    if cfg.limits < cfg.requests:
        raise illegal("limits node num should not less than requests node num")
    for kind, targets in (("TransferFrom", cfg.transfer_from), ("TransferTo", cfg.transfer_to)):
        for t in targets:
            if t == name:
                raise illegal(f"resource group in `{kind}` {name} should not be itself")
            if t not in names:
                raise illegal(f"resource group in `{kind}` {t} not exist")


def not_found(name: str) -> errors.ResourceGroupNotFound:
    return errors.ResourceGroupNotFound(f"resource group not found[rg={name}]")


# --- the rules ----------------------------------------------------------------------------
def recover(groups: Groups, live: list[str]) -> Groups:
    """The groups once their members are what their configs ask (the module's rules). Pure."""
    alive = set(live)
    out: Groups = {name: Group(name, g.config, sorted(n for n in g.nodes if n in alive)) for name, g in groups.items()}
    default = out.setdefault(DEFAULT_RESOURCE_GROUP, Group(DEFAULT_RESOURCE_GROUP, default_config()))
    held = {n for g in out.values() if g.name != DEFAULT_RESOURCE_GROUP for n in g.nodes}
    default.nodes = sorted(alive - held)

    def move(node: str, src: Group, dst: Group) -> None:
        src.nodes.remove(node)
        dst.nodes = sorted([*dst.nodes, node])

    for _ in range(len(alive) * max(len(out), 1) + 1):  # every step fixes one node: bounded
        changed = False
        for target in sorted(out.values(), key=lambda g: (-g.missing, g.name)):
            if target.missing <= 0:
                continue
            sources = [g for g in out.values() if g is not target and g.oversized > 0]
            if not sources:
                continue

            def priority(g: Group, target: Group = target) -> tuple[int, int, int, str]:
                return (g.redundant, int(g.name in target.config.transfer_from), g.oversized, g.name)
            src = max(sources, key=priority)
            move(src.nodes[-1], src, target)
            changed = True
            break
        if changed:
            continue
        for source in sorted(out.values(), key=lambda g: (-g.redundant, g.name)):
            if source.redundant <= 0:
                continue
            targets = [g for g in out.values() if g is not source and (g.missing > 0 or g.room > 0)]

            def want(g: Group, source: Group = source) -> tuple[int, int, int, str]:
                return (g.missing, int(g.name in source.config.transfer_to), g.room, g.name)
            if targets:
                dst = max(targets, key=want)
            elif source.name != DEFAULT_RESOURCE_GROUP:
                dst = default
            else:
                continue
            move(source.nodes[-1], source, dst)
            changed = True
            break
        if not changed:
            break
    return out


def replica_groups(requested: list[str], replica_number: int, groups: Groups) -> list[str]:
    """The group of each of ``replica_number`` replicas for a load naming ``requested`` groups
    (Milvus's AssignReplica), checked against the groups' nodes."""
    requested = [g for g in requested if g]
    if len(requested) not in (0, 1) and len(requested) != replica_number:
        raise errors.InvalidParameter(
            f"replica=[{replica_number}] resource group=[{','.join(requested)}], resource group num can only be "
            "0, 1 or same as replica number")
    if not requested:
        out = [DEFAULT_RESOURCE_GROUP] * replica_number
    elif len(requested) == 1:
        out = requested * replica_number
    else:
        out = list(requested)
    for name, n in sorted(Counter(out).items()):
        if name not in groups:
            raise not_found(name)
        have = len(groups[name].nodes)
        if n > have:
            raise errors.ResourceGroupNodeNotEnough(
                f"resource group node not enough[rg={name}][currentNodeNum={have}][expectedNodeNum={n}]")
    return sorted(out)


def replica_groups_of(info: CollectionInfo) -> list[str]:
    """The resource group of each replica of a loaded collection."""
    if not info.loaded:
        return []
    if len(info.resource_groups) == max(info.replica_number, 1):
        return list(info.resource_groups)
    return [DEFAULT_RESOURCE_GROUP] * max(info.replica_number, 1)


def transfer_node_configs(groups: Groups, source: str, target: str, num: int) -> dict[str, GroupConfig]:
    """The configs TransferNode writes (Milvus 2.4: it is a declarative config change)."""
    if source == target:
        raise errors.InvalidParameter("source resource group and target resource group should not be the same, "
                                      f"resource group: {source}")
    if num <= 0:
        raise errors.InvalidParameter(f"invalid parameter[expected=NumNode > 0][actual=invalid NumNode {num}]")
    for name in (source, target):
        if name not in groups:
            raise not_found(name)
    src, dst = groups[source], groups[target]
    if len(src.nodes) < num:
        raise errors.ResourceGroupNodeNotEnough(
            f"resource group node not enough[rg={source}][currentNodeNum={len(src.nodes)}][expectedNodeNum={num}]")
    s = GroupConfig(**src.config.to_dict())
    t = GroupConfig(**dst.config.to_dict())
    s.requests = max(s.requests - num, 0)
    if source != DEFAULT_RESOURCE_GROUP:
        s.limits = max(s.limits - num, 0)
    t.requests += num
    t.limits = max(t.limits, t.requests)
    return {source: s, target: t}


def transfer_replicas(current: list[str], source: str, target: str, num: int) -> list[str]:
    """A loaded collection's replica groups after TransferReplica moved ``num`` of them."""
    if source == target:
        raise errors.InvalidParameter("source resource group and target resource group should not be the same, "
                                      f"resource group: {source}")
    if num <= 0:
        raise errors.InvalidParameter(f"invalid parameter[expected=NumReplica > 0][actual=invalid NumReplica {num}]")
    have = current.count(source)
    if have < num:
        raise errors.InvalidParameter(
            "invalid parameter[expected=NumReplica not greater than the number of replica in source resource group]"
            f"[actual=only found [{have}] replicas in source resource group [{source}], but {num} require]")
    out = list(current)
    for _ in range(num):
        out[out.index(source)] = target
    return sorted(out)


# --- the store ------------------------------------------------------------------------------
class ResourceGroups:
    """The groups in the metadata store, changed by compare-and-set on every ``rg/`` key read.

    ``nodes()``: the live query nodes, id -> address (a proxy: its router's sessions; standalone:
    its one node)."""

    def __init__(self, meta: MetaStore, nodes: Callable[[], dict[str, str]]):
        self.meta = meta
        self.nodes = nodes
        self._lock = threading.Lock()

    def _read(self) -> tuple[dict[str, bytes], list[str]]:
        raw = {k[len(RG_PREFIX):]: v for k, v in self.meta.scan(RG_PREFIX)}
        return raw, sorted(self.nodes())

    def snapshot(self) -> Groups:
        raw, live = self._read()
        return parse_groups(raw, live)

    def _change(self, fn: Callable[[Groups], Groups | None]) -> Groups:
        """``fn(groups)`` -> the groups to write (None: nothing), recovered and written by
        compare-and-set; tried again on a conflict."""
        for _ in range(50):
            raw, live = self._read()
            groups = parse_groups(raw, live)
            wanted = fn(groups)
            if wanted is None:
                return groups
            wanted = recover(wanted, live)
            puts = {rg_key(n): v for n, g in wanted.items()
                    if (v := g.to_json()) != raw.get(n) and not (n == DEFAULT_RESOURCE_GROUP and n not in raw
                                                                  and g.config == default_config())}
            deletes = [rg_key(n) for n in raw if n not in wanted]
            expect: dict[str, bytes | None] = {rg_key(n): raw.get(n) for n in set(raw) | set(wanted)}
            if not puts and not deletes:
                return wanted
            if self.meta.txn(puts=puts, deletes=deletes, expect=expect):
                return wanted
        raise errors.ServiceUnavailable("resource groups changed concurrently; retry")

    def reconcile(self) -> Groups:
        """Apply the rules to what is stored (the coord, on node joins and leaves)."""
        return self._change(lambda groups: groups)

    def create(self, name: str, cfg: GroupConfig | None) -> None:
        validate_name(name)
        cfg = cfg or GroupConfig()

        def fn(groups: Groups) -> Groups | None:
            if name in groups:
                if groups[name].config == cfg:
                    return None
                raise errors.ResourceGroupAlreadyExist(
                    f"resource group already exist, but create with different config[rg={name}]")
            if len(groups) >= MAX_GROUPS:
                raise errors.ResourceGroupReachLimit(f"resource group num reach limit[rg={name}][limit={MAX_GROUPS}]")
            validate_config(name, cfg, set(groups))
            return {**groups, name: Group(name, cfg)}
        self._change(fn)

    def update(self, configs: dict[str, GroupConfig]) -> None:
        for name in configs:
            validate_name(name)

        def fn(groups: Groups) -> Groups | None:
            out = dict(groups)
            for name, cfg in configs.items():
                if name not in groups:
                    raise not_found(name)
                validate_config(name, cfg, set(groups))
                out[name] = Group(name, cfg, list(groups[name].nodes))
            return out
        self._change(fn)

    def transfer_node(self, source: str, target: str, num: int) -> None:
        validate_name(source)
        validate_name(target)

        def fn(groups: Groups) -> Groups | None:
            out = dict(groups)
            for name, cfg in transfer_node_configs(groups, source, target, num).items():
                out[name] = Group(name, cfg, list(groups[name].nodes))
            return out
        self._change(fn)

    def drop(self, name: str, in_use: Callable[[str], str | None]) -> None:
        """``in_use(name)``: a collection with replicas in the group (refused then), or None."""
        validate_name(name)

        def fn(groups: Groups) -> Groups | None:
            if name not in groups:
                return None  # idempotent, as in Milvus
            if name == DEFAULT_RESOURCE_GROUP:
                raise errors.InvalidParameter(f"invalid parameter[expected=not default resource group][actual={name}]"
                                              ": default resource group is not deletable")
            user = in_use(name)
            if user is not None:
                raise errors.InvalidParameter(
                    f"some replicas still loaded in resource group[{name}], release it first: invalid parameter"
                    f"[expected=empty resource group][actual=resource group {name} has collection {user} loaded]")
            if groups[name].config.limits != 0:
                raise errors.InvalidParameter(
                    f"invalid parameter[expected=not empty resource group][actual={name}]: resource group's limits "
                    "node num is not 0")
            for g in groups.values():
                for kind, targets in (("TransferFrom", g.config.transfer_from), ("TransferTo", g.config.transfer_to)):
                    if name in targets:
                        raise errors.InvalidParameter(
                            f"invalid parameter[expected=not `{kind}` of resource group][actual={name}]: resource "
                            f"group {name} is used by {g.name}'s `{kind}`, remove that configuration first")
            out = {n: g for n, g in groups.items() if n != name}
            out[DEFAULT_RESOURCE_GROUP] = Group(DEFAULT_RESOURCE_GROUP, groups[DEFAULT_RESOURCE_GROUP].config,
                                                [*groups[DEFAULT_RESOURCE_GROUP].nodes, *groups[name].nodes])
            return out
        self._change(fn)

"""File resources (Milvus 3.0's ``AddFileResource`` / ``RemoveFileResource`` / ``ListFileResources``):
named files that analyzers read (a jieba ``extra_dict_file``, a stop filter's ``stop_words_file``, a
synonym filter's ``synonyms_file``, a decompounder's ``word_list_file``).

As in Milvus, a resource is a name and the ``path`` of one file in the deployment's object store (the
data dir's ``objects/`` on the embedded backends, the bucket and namespace on S3; never a path on the
server's own file system, which would let a client read any file the server can). An analyzer names a
file of a resource by ``{"type": "remote", "resource_name": <name>, "file_name": <the path's last
part>}`` (Milvus reads the file from ``<local resource dir>/<resource id>/<basename of path>``).

Records: ``file_resource/<name>`` in the metadata store (JSON ``{"id", "name", "path", "key"}``), so
every proxy and node sees them. Adding copies the file's bytes once, to the object ``key``
(``file_resources/<id>/<basename>``): what analyzers read is that copy, so a resource's content never
changes under a built analyzer, whatever later happens to the file at ``path`` (Milvus likewise
downloads each resource once, by id). Semantics (Milvus's, its file resource tests and PR #51339):

- add: the name must not be empty, nor the path; a path that names no file is refused
  (``file resource path not exist``; Milvus answers it with code 65535, vecdb with 1100, the input's
  fault, as every refusal here); adding the same name and path again is a no-op; the same name with
  another path is refused;
- remove: removing a name that does not exist succeeds; a resource an existing collection's analyzer
  uses is refused until the collection is dropped;
- list: every resource, ``id``, ``name``, ``path``.

An analyzer reads its files when it is built (``read_lines``, through the registry the process
installed: ``install``); a reference to a missing resource or file is refused (1100) when the
collection is created.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from vecdb import errors
from vecdb.storage.base import MetaStore, ObjectStore

META_PREFIX = "file_resource/"
OBJECT_PREFIX = "file_resources/"
# the analyzer params that name a file: (where the file reference sits) -> what Milvus calls it
FILE_KEYS = ("extra_dict_file", "stop_words_file", "synonyms_file", "word_list_file")
MAX_FILE_BYTES = 64 << 20


@dataclass(frozen=True)
class FileResource:
    id: int
    name: str
    path: str
    key: str  # the object holding the bytes added (file_resources/<id>/<basename>)

    @property
    def file_name(self) -> str:
        return basename(self.path)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FileResource:
        d = json.loads(raw)
        return cls(int(d["id"]), d["name"], d["path"], d["key"])


def basename(path: str) -> str:
    """The file name an analyzer gives for a resource of ``path`` (Milvus: ``path.Base``)."""
    return posixpath.basename(path.replace(os.sep, "/").rstrip("/"))


class FileResources:
    """The registry over one deployment's stores."""

    def __init__(self, meta: MetaStore, objects: ObjectStore):
        self.meta, self.objects = meta, objects

    def get(self, name: str) -> FileResource | None:
        raw = self.meta.get(META_PREFIX + name)
        return None if raw is None else FileResource.from_json(raw)

    def entries(self) -> list[FileResource]:
        out = [FileResource.from_json(v) for _, v in self.meta.scan(META_PREFIX)]
        return sorted(out, key=lambda r: r.id)

    def add(self, name: str, path: str, new_id: Callable[[], int]) -> FileResource:
        if not name:
            raise errors.InvalidParameter("file resource name should not be empty")
        if not path:
            raise errors.InvalidParameter("file resource path should not be empty")
        old = self.get(name)
        if old is not None:
            return _same(old, path)
        data = self._read_source(path)
        rid = new_id()
        rec = FileResource(rid, name, path, f"{OBJECT_PREFIX}{rid}/{basename(path) or 'file'}")
        self.objects.put(rec.key, data)
        if self.meta.txn(puts={META_PREFIX + name: rec.to_json()}, expect={META_PREFIX + name: None}):
            return rec
        self.objects.delete(rec.key)  # another proxy added the name first: its record stands
        old = self.get(name)
        if old is None:
            raise errors.ServiceUnavailable(f"file resource {name} changed concurrently, retry")
        return _same(old, path)

    def remove(self, name: str, users: Callable[[str], list[str]]) -> bool:
        """Remove ``name`` (no-op when absent: False); refused while ``users(name)`` names collections."""
        rec = self.get(name)
        if rec is None:
            return False
        used = users(name)
        if used:
            raise errors.InvalidParameter(
                f"file resource {name} is still in use by collection(s) {', '.join(sorted(used))}; drop them first")
        if not self.meta.txn(deletes=[META_PREFIX + name], expect={META_PREFIX + name: rec.to_json()}):
            raise errors.ServiceUnavailable(f"file resource {name} changed concurrently, retry")
        self.objects.delete_prefix(f"{OBJECT_PREFIX}{rec.id}/")
        return True

    def read(self, name: str, file_name: str, what: str) -> bytes:
        """The bytes of file ``file_name`` of resource ``name`` (an analyzer's ``what``); 1100 when missing."""
        rec = self.get(name)
        if rec is None:
            raise errors.InvalidParameter(f"file resource: {name} not found in resource list ({what})")
        if file_name != rec.file_name:
            raise errors.InvalidParameter(
                f"file {file_name} of {what} not found in file resource {name} (its file is {rec.file_name})")
        try:
            return self.objects.get(rec.key)
        except (errors.KeyNotFound, errors.InvalidParameter):
            raise errors.InvalidParameter(f"the file of file resource {name} is gone from the object store "
                                          f"({rec.key}, {what})") from None

    def _read_source(self, path: str) -> bytes:
        try:
            data = self.objects.get(path.lstrip("/"))
        except (errors.KeyNotFound, errors.InvalidParameter):
            pass
        else:
            if len(data) > MAX_FILE_BYTES:
                raise errors.InvalidParameter(f"file resource {path} is larger than {MAX_FILE_BYTES} bytes")
            return data
        raise errors.InvalidParameter(f"add file resource failed: file path {path} not exist (file resource path not "
                                      "exist)")


def _same(old: FileResource, path: str) -> FileResource:
    if old.path != path:
        raise errors.InvalidParameter(
            f"file resource {old.name} already exists with another path ({old.path}), not {path}")
    return old


# --- which collections use a resource ------------------------------------------------------------------
def file_refs(params) -> Iterable[tuple[str, str]]:
    """``(resource name, file name)`` of every remote file an analyzer params object (or JSON text, or a
    multi-analyzer's params) names, however deep."""
    if isinstance(params, str):
        if "resource_name" not in params:
            return
        try:
            params = json.loads(params)
        except (ValueError, RecursionError):
            return
    stack = [params]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("type") == "remote" and isinstance(v.get("resource_name"), str):
                yield v["resource_name"], str(v.get("file_name", ""))
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def schema_resources(schema) -> set[str]:
    """The names of the file resources a collection schema's analyzers use."""
    out: set[str] = set()
    for f in schema.fields:
        for key in ("analyzer_params", "multi_analyzer_params"):
            out.update(n for n, _ in file_refs(f.type_params.get(key, "")))
    return out


# --- the registry analyzers of this process read ---------------------------------------------------------
_LOCK = threading.Lock()
_INSTALLED: list[FileResources] = []


def install(meta: MetaStore, objects: ObjectStore) -> FileResources:
    """Make the registry over these stores the one this process's analyzers read (the node's own backends,
    opened at start: ``vecdb.storage.backends.open_backends``)."""
    reg = FileResources(meta, objects)
    with _LOCK:
        _INSTALLED[:] = [reg]
    return reg


def installed() -> FileResources | None:
    with _LOCK:
        return _INSTALLED[0] if _INSTALLED else None


def uninstall(reg: FileResources | None = None) -> None:
    """Forget the installed registry (``reg``: only if it is that one; a closing node's)."""
    with _LOCK:
        if _INSTALLED and (reg is None or _INSTALLED[0] is reg):
            _INSTALLED.clear()


def read_lines(spec, what: str, where: str = "") -> list[str]:
    """The lines of the file an analyzer param names (``spec``: ``{"type": "remote", "resource_name": ...,
    "file_name": ...}``), checked with Milvus's messages (1100). Lines as Rust's ``BufRead::lines``: split at
    ``\\n``, a trailing ``\\r`` dropped, no empty last line after a final newline."""
    if not isinstance(spec, dict):
        raise errors.InvalidParameter(f"file config of {what} must be object{where}")
    if "type" not in spec:
        raise errors.InvalidParameter(f"file type of {what} must be set{where}")
    kind = spec["type"]
    if not isinstance(kind, str):
        raise errors.InvalidParameter(f"file type of {what} must be string{where}")
    if kind == "local":
        raise errors.InvalidParameter(
            f"local file of {what}{where} is not supported by vecdb: add the file with add_file_resource and name "
            'it as {"type": "remote", "resource_name": ..., "file_name": ...}')
    if kind != "remote":
        raise errors.InvalidParameter(f"unsupported file type {kind} of {what}{where}")
    if "resource_name" not in spec:
        raise errors.InvalidParameter(f"resource name of remote file `{what}` must be set{where}")
    name = spec["resource_name"]
    if not isinstance(name, str):
        raise errors.InvalidParameter(f"remote file resource name of remote file `{what}` must be string{where}")
    if "file_name" not in spec:
        raise errors.InvalidParameter(f"file name of remote file `{what}` must be set{where}")
    file_name = spec["file_name"]
    if not isinstance(file_name, str):
        raise errors.InvalidParameter(f"remote file resource name of {what} must be string{where}")
    reg = installed()
    if reg is None:
        raise errors.InvalidParameter(f"file resource: {name} not found in resource list ({what}{where}: no "
                                      "file resource registry in this process)")
    try:
        data = reg.read(name, file_name, what + where)
    except errors.InvalidParameter:
        raise
    except errors.VecdbError as e:
        raise errors.InvalidParameter(f"read {what} file failed, error: {e.message}{where}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise errors.InvalidParameter(f"read {what} file failed, error: stream did not contain valid UTF-8 "
                                      f"({e.reason} at byte {e.start}){where}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def resource_key(params: str) -> tuple:
    """What the analyzer of ``params`` (JSON text) read besides them: ``(name, resource id)`` of each file
    resource it names (-1: none of that name), so that a cache of analyzers by params builds another one once
    a name was removed and added again. ``()`` without file references (no lookup)."""
    if not params or "resource_name" not in params:
        return ()
    reg = installed()
    if reg is None:
        return ()
    out = []
    for name in sorted({n for n, _ in file_refs(params)}):
        rec = reg.get(name)
        out.append((name, -1 if rec is None else rec.id))
    return tuple(out)

"""``Security``: who is calling (authentication) and whether they may (privileges), per request.

Authentication, as Milvus's proxy does it: the ``authorization`` metadata is base64 of
``user:password`` (pymilvus sends it for ``user=``/``password=`` and for
``token="user:password"``). A missing header, undecodable base64, a token without ``:``
(Milvus's API keys, which vecdb does not have) or a wrong user or password is refused with
Milvus's messages; ``vecdb.proxy.auth_interceptor`` answers them with gRPC UNAUTHENTICATED,
as Milvus does, before any handler runs.

The KDF (about 0.1 s) runs once per user, password and stored record: a verified login is
cached against the exact record it was checked with, so the next request costs one dict lookup
and a keyed hash, and a password change or a deletion (a new record, or none) takes effect on
the very next request that this proxy's view shows it for (``vecdb.security.view``: on every
live proxy before the call that made the change returns). Failed logins are not
cached: each costs a KDF run, an unknown user's too (a decoy record), so timing does not tell
which users exist. The cache holds HMACs of passwords under a per-process random
key, never the passwords.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import os
import threading
from collections.abc import Callable

from vecdb import errors
from vecdb.config import SecuritySettings
from vecdb.security.credentials import ROOT, CredentialStore, hash_password, password_matches, user_key
from vecdb.security.rbac import ANY, COLLECTION, REQUIRED, RoleStore
from vecdb.security.view import CredentialView
from vecdb.storage.base import MetaStore

MISSING = "missing authorization in header"
BAD_TOKEN = "invalid token format"
BAD_API_KEY = "auth check failure, please check api key is correct"
BAD_PASSWORD = "auth check failure, please check username and password are correct"

_CACHE_MAX = 10_000

# (db, collection name or alias, collection id) -> (db, collection name) of the collection a request reaches
Resolver = Callable[[str, str, int], tuple[str, str]]
# requests that can put a collection into another database: checked at db "*" when they do (Milvus 2.6)
_TARGET_DB = {"RenameCollection": "newDBName", "RestoreSnapshot": "target_db_name"}
_ID_FIELDS = ("collectionID", "collection_id")


def collection_resolver(catalog) -> Resolver:
    """``Resolver`` over a catalog (``CatalogRole``): an alias is checked as the collection it points at
    (Milvus 2.6's proxy.resolveAliasForPrivilege), a request naming its collection by id only in the
    collection's own database; a name the catalog does not know is checked as it is (the handler then
    answers that it does not exist)."""

    def resolve(db: str, name: str, collection_id: int) -> tuple[str, str]:
        try:
            info = catalog.get(db, name) if name else catalog.get_by_id(collection_id)
        except errors.VecdbError:
            return db, name
        return info.db, info.name

    return resolve


@functools.cache
def _decoy() -> bytes:
    """A record no password matches in practice, made on first use (a KDF run: not at import)."""
    return hash_password(os.urandom(16).hex())


class Security:
    """The credential and role stores of one proxy over ``meta``, its view of them, and the checks.

    The stores work whether or not ``enabled`` (as in Milvus, users and roles can be managed
    with authentication off); only ``enabled`` makes the server check requests. ``node_id`` and ``ttl``:
    the proxy's and its session's where several proxies share ``meta`` (``vecdb.security.view``)."""

    def __init__(self, meta: MetaStore, settings: SecuritySettings | None = None, node_id: str | None = None,
                 ttl: float = 10.0):
        settings = settings or SecuritySettings()
        self.enabled = settings.authorization_enabled
        self.view = CredentialView(meta, node_id=node_id, ttl=ttl)
        try:
            self.users = CredentialStore(meta, self.view.txn)
            self.roles = RoleStore(meta, self.view)
            self.users.ensure_root(settings.root_password.get_secret_value())
            self.roles.seed_public()
        except BaseException:
            self.view.close()
            raise
        self._mac_key = os.urandom(32)
        self._verified: dict[tuple[str, bytes], bytes] = {}  # (user, HMAC of password) -> record checked
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> str:
        """The user an ``authorization`` header value names, if its password is right; raises
        ``NotAuthenticated`` with Milvus's message otherwise."""
        if not authorization:
            raise errors.NotAuthenticated(MISSING)
        try:
            raw = base64.b64decode(authorization, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise errors.NotAuthenticated(BAD_TOKEN) from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise errors.NotAuthenticated(BAD_API_KEY)
        if not self.password_ok(user, password):
            raise errors.NotAuthenticated(BAD_PASSWORD)
        return user

    def password_ok(self, user: str, password: str) -> bool:
        """Checked against this process's view of the credentials; where that view may not have caught
        up with a change made through another proxy or worker (one that fell behind the bounded wait of
        ``vecdb.security.view``: a user it does not know yet, a password that does not match the record
        it holds), against the store itself. That costs a store read on failed logins only."""
        record = self.view.get(user_key(user)) or self.users.record(user)
        if record is None:
            password_matches(_decoy(), password)  # as slow as a wrong password: timing does not tell who exists
            return False
        mac = hmac.new(self._mac_key, password.encode("utf-8", "surrogatepass"), "sha256").digest()
        with self._lock:
            if self._verified.get((user, mac)) == record:
                return True
        if not password_matches(record, password):
            fresh = self.users.record(user)  # changed elsewhere a moment ago? (one more KDF only then)
            if fresh is None or fresh == record or not password_matches(fresh, password):
                return False
            record = fresh
        with self._lock:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified[(user, mac)] = record
        return True

    def authorize(self, user: str, method: str, request, db: str, resolve: Resolver | None = None) -> None:
        """Raise ``NotPermitted`` (Milvus's message) unless ``user`` may call ``method`` with
        ``request`` in database ``db`` (rules: ``vecdb.security.rbac``). ``resolve``: the collection a
        name reaches (``collection_resolver``); a grant counts on the collection a request reads or
        writes, never on the alias or id it was named by. An import of absolute local paths (which a
        standalone server reads from its own file system, ``vecdb.importer.read_object``) is root's and
        the admin role's only: the Import privilege on a collection must not read the server's files."""
        required = REQUIRED.get(method)
        if required is None or user == ROOT:
            return
        names = required.object_names(request)
        if required.object_type == "User" and names == [user]:
            return  # one's own user: update one's password, describe oneself
        if method == "SelectGrant" and request.entity.role.name in [*self.roles.user_roles(user), "public"]:
            return  # the grants of one's own roles
        targets = [(db, name) for name in names]
        if required.object_type == COLLECTION and resolve is not None:
            ids = _collection_id(request)
            targets = [resolve(db, n, 0 if n else ids) if n != ANY and (n or ids) else (db, n) for n in names]
        target_field = _TARGET_DB.get(method)
        if target_field and (getattr(request, target_field) or db) != db:
            targets = [(ANY, name) for _, name in targets]  # into another database: a grant on every one
        if targets and all(self.roles.allowed(user, target_db, required.object_type, name, required.privilege)
                           for target_db, name in targets):
            if method == "Import" and any(os.path.isabs(f) for f in request.files) and not self.roles.is_admin(user):
                raise errors.NotPermitted(f"PrivilegeImport: permission deny to {user}: absolute local file paths "
                                          "are for root and the admin role only (use object store keys)")
            return
        shown = targets[0][0] if targets else db
        raise errors.NotPermitted(f"Privilege{required.privilege}: permission deny to {user} in the `{shown}` database")

    def close(self) -> None:
        self.view.close()


def _collection_id(request) -> int:
    """The collection id of a request that names its collection by id alone (ManualCompaction's
    ``collectionID``); 0 when it has none."""
    fields = request.DESCRIPTOR.fields_by_name
    return next((getattr(request, f) for f in _ID_FIELDS if f in fields and getattr(request, f)), 0)

"""Users and their password hashes, in the metadata store under ``cred/user/<name>``.

A record is JSON: the KDF's name and parameters, a random 16-byte salt and the derived key.
The KDF is scrypt (``hashlib.scrypt``, from the standard library): N=2**15, r=8, p=1, 32 MiB
and about 0.1 s per derivation on one core (measured here), which is what makes a stolen
store slow to crack; ``vecdb.security.guard`` caches verified logins so requests do not pay
it. Parameters live in each record, so raising them later leaves old records readable.

Names and lengths follow Milvus: a user name starts with a letter, then letters, digits and
underscores, at most 32 characters; a password has 6 to 256 characters. ``root`` exists from
the first start (password from settings, Milvus's default ``Milvus``) and cannot be deleted.
A user's description (pymilvus 2.6's ``create_user(..., description=)`` and ``update_user``)
lives in its record beside the hash.

Every write is a compare-and-set transaction, so several proxies creating or changing the
same user at once end with one winner and clear errors for the others; it returns once every
proxy's copy of ``cred/`` shows it (``vecdb.security.view.CredentialView.txn``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable

from vecdb import errors
from vecdb.storage.base import MetaStore

PREFIX = "cred/"
USER_PREFIX = "cred/user/"
USER_ROLE_PREFIX = "cred/user-role/"  # cred/user-role/<user>/<role>: see vecdb.security.rbac
ROOT = "root"
DEFAULT_ROOT_PASSWORD = "Milvus"
MIN_PASSWORD, MAX_PASSWORD, MAX_NAME = 6, 256, 32

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
_SALT_BYTES, _KEY_BYTES = 16, 32
_NAME = re.compile(r"[A-Za-z0-9_]*")
_ROLE_NAME = re.compile(r"[A-Za-z0-9_$]*")  # Milvus's roleNameValidationAllowedChars adds the dollar
MAX_ROLE_NAME = 255  # Milvus's proxy.maxNameLength (a user name's limit is MAX_NAME)

# ``MetaStore.txn`` (its arguments, whether applied) that returns once the proxies' copies of ``cred/``
# show the change it applied (vecdb.security.view.CredentialView.txn)
Txn = Callable[..., bool]


def user_key(user: str) -> str:
    return USER_PREFIX + user


def hash_password(password: str, description: str = "") -> bytes:
    """A new record for ``password``, with a fresh salt."""
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    record = {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(), "key": key.hex()}
    return _with_description(record, description)


def _with_description(record: dict, description: str) -> bytes:
    if description:
        record["description"] = description
    else:
        record.pop("description", None)
    return json.dumps(record, sort_keys=True).encode()


def record_description(record: bytes) -> str:
    """The user's description kept in its record ("" when none, or the record is damaged)."""
    try:
        value = json.loads(record).get("description", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def password_matches(record: bytes, password: str) -> bool:
    """Whether ``password`` derives the record's key (constant-time comparison)."""
    try:
        r = json.loads(record)
        if r.get("kdf") != "scrypt":
            return False
        key = _scrypt(password, bytes.fromhex(r["salt"]), int(r["n"]), int(r["r"]), int(r["p"]))
        return hmac.compare_digest(key, bytes.fromhex(r["key"]))
    except (ValueError, KeyError, TypeError):  # a damaged record verifies nothing
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n, dklen=_KEY_BYTES)


def check_name(name: str, what: str = "username") -> str:
    """Milvus's rules for user, role and privilege group names, with its messages: role names also take
    dollars and up to ``MAX_ROLE_NAME`` characters."""
    role = what == "role name"
    max_len, allowed = (MAX_ROLE_NAME, _ROLE_NAME) if role else (MAX_NAME, _NAME)
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise errors.InvalidParameter(f"{what} should not be empty")
    invalid = f"Invalid {what}: {name}. "
    if len(name) > max_len:
        bound = "be not greater than" if role else "be less than"
        raise errors.InvalidParameter(f"{invalid}The length of {what} must {bound} {max_len} characters.")
    if not ("a" <= name[0].lower() <= "z" or (what != "username" and name[0] == "_")):
        first = "a letter" if what == "username" else "an underscore or a letter"
        raise errors.InvalidParameter(f"{invalid}The first character of {what} must be {first}.")
    if not allowed.fullmatch(name) or not name.isascii():
        chars = "numbers, letters, dollars and underscores" if role else "numbers, letters, and underscores"
        raise errors.InvalidParameter(f"{invalid}{what.capitalize()} should only contain {chars}.")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise errors.InvalidParameter(f"The length of password must be great than {MIN_PASSWORD} and less than "
                                      f"{MAX_PASSWORD} characters.")
    return password


class CredentialStore:
    """Create, change, delete and list users in ``meta`` (rules: the module docstring)."""

    def __init__(self, meta: MetaStore, txn: Txn | None = None):
        self.meta = meta
        self._txn = txn or meta.txn

    def ensure_root(self, password: str) -> bool:
        """Create ``root`` with ``password`` unless it exists; whether this call created it (of
        several proxies starting at once, exactly one does). No KDF run when it exists."""
        if self.record(ROOT) is not None:
            return False
        return self._txn(puts={user_key(ROOT): hash_password(password)}, expect={user_key(ROOT): None})

    def record(self, user: str) -> bytes | None:
        return self.meta.get(user_key(user))

    def create(self, user: str, password: str, description: str = "") -> None:
        user = check_name(user)
        record = hash_password(check_password(password), description)
        if not self._txn(puts={user_key(user): record}, expect={user_key(user): None}):
            raise errors.InvalidParameter(f"user already exists: {user}")

    def update(self, user: str, old_password: str, new_password: str, description: str | None = None) -> None:
        """Milvus's UpdateCredential: the old password must be right. With both passwords empty
        and a ``description`` (pymilvus's ``update_user``) only the description changes; a
        password change keeps the description unless it brings one."""
        only_description = description is not None and not old_password and not new_password
        if not only_description:
            check_password(new_password)
        old = self.record(user)
        if old is None and not only_description:  # as a wrong old password (Milvus: its proxy checks that first)
            raise errors.NotAuthenticated(f"old password not correct for {user}")
        if old is None:
            raise errors.InvalidParameter(f"found no credential: {user}")
        if only_description:
            record = _with_description(json.loads(old), description or "")
        elif not password_matches(old, old_password):
            raise errors.NotAuthenticated(f"old password not correct for {user}")
        else:
            record = hash_password(new_password, record_description(old) if description is None else description)
        if not self._txn(puts={user_key(user): record}, expect={user_key(user): old}):
            raise errors.CatalogConflict(f"the credential of {user} changed concurrently; retry")

    def delete(self, user: str) -> None:
        """Remove the user and its role links; no error if it does not exist (as Milvus)."""
        if user == ROOT:
            raise errors.NotPermitted("root user cannot be deleted")
        self._txn(deletes=[user_key(user)], delete_prefixes=[f"{USER_ROLE_PREFIX}{user}/"])

    def users(self) -> list[str]:
        return [key[len(USER_PREFIX):] for key, _ in self.meta.scan(USER_PREFIX)]

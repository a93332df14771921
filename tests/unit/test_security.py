"""vecdb.security on the memory metadata store: password records, the user store's rules
(Milvus's), the view two "proxies" share, the login cache, roles, grants and privilege checks."""

from __future__ import annotations

import base64
import json
import time

import pytest
from pydantic import SecretStr
from pymilvus.grpc_gen import milvus_pb2

from vecdb import errors
from vecdb.config import SecuritySettings
from vecdb.security import Security
from vecdb.security import credentials as cred
from vecdb.security.rbac import REQUIRED
from vecdb.storage.memory import MemoryMetaStore


def _token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def meta():
    m = MemoryMetaStore()
    yield m
    m.close()


@pytest.fixture
def sec(meta):
    s = Security(meta, SecuritySettings(authorization_enabled=True))
    yield s
    s.close()


def test_record_is_salted_scrypt_and_verifies_only_its_password():
    a, b = cred.hash_password("secret1"), cred.hash_password("secret1")
    assert a != b  # a fresh salt each time
    r = json.loads(a)
    assert r["kdf"] == "scrypt" and r["n"] >= 2 ** 14 and len(bytes.fromhex(r["salt"])) == 16
    assert "secret1" not in a.decode()
    assert cred.password_matches(a, "secret1") and cred.password_matches(b, "secret1")
    assert not cred.password_matches(a, "secret2")
    assert not cred.password_matches(b"not json", "secret1")


def test_root_exists_with_the_configured_password_and_only_the_first_start_sets_it(meta):
    s = Security(meta, SecuritySettings(root_password=SecretStr("first-pw")))
    s.close()
    s = Security(meta, SecuritySettings(root_password=SecretStr("second-pw")))
    try:
        assert s.password_ok("root", "first-pw")
        assert not s.password_ok("root", "second-pw")
        assert s.users.users() == ["root"]
    finally:
        s.close()


def test_default_root_password_is_milvus(sec):
    assert sec.authenticate(_token("root", "Milvus")) == "root"


def test_create_update_delete_list_with_milvus_rules(sec):
    sec.users.create("alice", "alice-pw")
    assert sec.users.users() == ["alice", "root"]
    with pytest.raises(errors.InvalidParameter, match="user already exists: alice"):
        sec.users.create("alice", "other-pw")
    with pytest.raises(errors.InvalidParameter, match="The length of password must be great than 6"):
        sec.users.create("bob", "12345")
    with pytest.raises(errors.InvalidParameter, match="The first character of username must be a letter"):
        sec.users.create("1bob", "bob-pass")
    with pytest.raises(errors.InvalidParameter, match="only contain numbers, letters, and underscores"):
        sec.users.create("bo/b", "bob-pass")
    with pytest.raises(errors.InvalidParameter, match="must be less than 32"):
        sec.users.create("b" * 33, "bob-pass")

    with pytest.raises(errors.NotAuthenticated, match="old password not correct for alice"):
        sec.users.update("alice", "wrong-pw", "alice-pw2")
    assert sec.password_ok("alice", "alice-pw")
    sec.users.update("alice", "alice-pw", "alice-pw2")
    assert not sec.password_ok("alice", "alice-pw")
    assert sec.password_ok("alice", "alice-pw2")

    with pytest.raises(errors.NotPermitted, match="root user cannot be deleted"):
        sec.users.delete("root")
    sec.users.delete("alice")
    sec.users.delete("alice")  # absent: no error, as Milvus
    assert sec.users.users() == ["root"]
    assert not sec.password_ok("alice", "alice-pw2")


def test_user_description_is_kept_through_password_changes_and_updated_alone(sec):
    sec.users.create("gina", "gina-pw1", "data team")
    assert cred.record_description(sec.users.record("gina")) == "data team"
    sec.users.update("gina", "gina-pw1", "gina-pw2")  # no description sent: the old one stays
    assert cred.record_description(sec.users.record("gina")) == "data team"
    assert sec.password_ok("gina", "gina-pw2")
    sec.users.update("gina", "", "", "search team")  # pymilvus update_user: the description alone
    assert cred.record_description(sec.users.record("gina")) == "search team"
    assert sec.password_ok("gina", "gina-pw2")  # the password is untouched
    sec.users.update("gina", "gina-pw2", "gina-pw3", "")  # a change that brings an empty description clears it
    assert cred.record_description(sec.users.record("gina")) == ""
    with pytest.raises(errors.InvalidParameter, match="The length of password"):
        sec.users.update("gina", "", "")  # no description: a password change, and "" is no password
    with pytest.raises(errors.InvalidParameter, match="found no credential: nobody"):
        sec.users.update("nobody", "", "", "x")
    assert cred.record_description(b"not json") == ""


def test_a_login_reads_the_store_where_this_process_view_lags(meta, sec, monkeypatch):
    """A user created, or a password changed, through another proxy or worker a moment ago logs in here
    although this process's view has not caught up (a lagging view: mocked, a watch cannot be made late
    on demand)."""
    other = Security(meta, SecuritySettings(authorization_enabled=True))  # another proxy on the same store
    try:
        old = {cred.user_key("root"): sec.view.get(cred.user_key("root"))}
        other.users.create("hana", "hana-pw-1")
        monkeypatch.setattr(sec.view, "get", lambda key: old.get(key))  # knows nothing of hana yet
        assert sec.authenticate(_token("hana", "hana-pw-1")) == "hana"
        first = meta.get(cred.user_key("hana"))
        other.users.update("hana", "hana-pw-1", "hana-pw-2")
        old[cred.user_key("hana")] = first  # the view still holds the first record
        assert sec.password_ok("hana", "hana-pw-2")  # (the old one holds until the view shows the change)
        assert not sec.password_ok("nobody", "whatever-pw")
    finally:
        other.close()


def test_authenticate_refuses_with_milvus_messages(sec):
    for header, message in [(None, "missing authorization in header"), ("", "missing authorization in header"),
                            ("%%%not-base64", "invalid token format"),
                            (base64.b64encode(b"no-colon").decode(), "api key is correct"),
                            (_token("root", "wrong"), "check username and password are correct"),
                            (_token("nobody", "Milvus"), "check username and password are correct")]:
        with pytest.raises(errors.NotAuthenticated, match=message):
            sec.authenticate(header)


def test_cached_login_skips_the_kdf_until_the_record_changes(sec, monkeypatch):
    sec.users.create("carol", "carol-pw")
    calls = []
    real = cred.password_matches
    monkeypatch.setattr("vecdb.security.guard.password_matches", lambda r, p: calls.append(1) or real(r, p))
    for _ in range(5):
        assert sec.authenticate(_token("carol", "carol-pw")) == "carol"
    assert len(calls) == 1  # one KDF run (about 0.1 s) for five logins
    sec.users.update("carol", "carol-pw", "carol-pw2")
    with pytest.raises(errors.NotAuthenticated):
        sec.authenticate(_token("carol", "carol-pw"))  # the next request after the change


def test_a_change_through_one_proxy_reaches_another_promptly(meta, sec):
    other = Security(meta, SecuritySettings(authorization_enabled=True))
    try:
        sec.users.create("dave", "dave-pw1")
        deadline = time.monotonic() + 2
        while not other.password_ok("dave", "dave-pw1"):
            assert time.monotonic() < deadline, "the other proxy never saw the new user"
            time.sleep(0.01)
        assert other.password_ok("dave", "dave-pw1")  # now cached there
        sec.users.delete("dave")
        t0 = time.monotonic()
        while other.password_ok("dave", "dave-pw1"):
            assert time.monotonic() < t0 + 2, "the other proxy kept accepting a deleted user"
            time.sleep(0.01)
    finally:
        other.close()


def test_required_privileges_are_milvus_table():
    assert (REQUIRED["Search"].object_type, REQUIRED["Search"].privilege) == ("Collection", "Search")
    assert REQUIRED["Search"].name_field == "collection_name"
    assert REQUIRED["Flush"].names_field == "collection_names"
    assert (REQUIRED["CreateCollection"].object_type, REQUIRED["CreateCollection"].privilege) == \
        ("Global", "CreateCollection")
    assert REQUIRED["CreateCredential"].privilege == "CreateOwnership"
    assert (REQUIRED["UpdateCredential"].object_type, REQUIRED["UpdateCredential"].name_field) == \
        ("User", "username")
    for free in ("Connect", "CheckHealth", "GetVersion", "HasCollection", "ShowCollections"):
        assert free not in REQUIRED
    # an entity field names its object by its first field (Milvus's GetObjectName); empty means any
    select = milvus_pb2.SelectUserRequest(user=milvus_pb2.UserEntity(name="erin"))
    assert REQUIRED["SelectUser"].object_names(select) == ["erin"]
    assert REQUIRED["SelectUser"].object_names(milvus_pb2.SelectUserRequest()) == ["*"]
    assert REQUIRED["Flush"].object_names(milvus_pb2.FlushRequest(collection_names=["a", "b"])) == ["a", "b"]


class _Req:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_roles_grants_and_checks(sec):
    sec.users.create("erin", "erin-pw1")
    search = _Req(collection_name="books")
    with pytest.raises(errors.NotPermitted, match="PrivilegeSearch: permission deny to erin in the `default` database"):
        sec.authorize("erin", "Search", search, "default")
    sec.authorize("root", "Search", search, "default")  # root may do anything
    sec.authorize("erin", "DescribeCollection", _Req(collection_name="books"), "default")  # public's
    sec.authorize("erin", "Connect", _Req(), "default")  # needs no privilege
    sec.authorize("erin", "UpdateCredential", _Req(username="erin"), "default")  # oneself
    sec.authorize("erin", "SelectUser", milvus_pb2.SelectUserRequest(user=milvus_pb2.UserEntity(name="erin")),
                  "default")  # describing oneself
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "SelectUser", milvus_pb2.SelectUserRequest(), "default")  # every user
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "UpdateCredential", _Req(username="root"), "default")

    sec.roles.create_role("reader")
    with pytest.raises(errors.InvalidParameter, match="already exists"):
        sec.roles.create_role("reader")
    with pytest.raises(errors.InvalidParameter, match="already exists"):
        sec.roles.create_role("admin")
    sec.roles.set_user_role("erin", "reader", add=True)
    sec.roles.operate("reader", "default", "Collection", "books", "Search", "root", grant=True)
    sec.authorize("erin", "Search", search, "default")
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "Search", _Req(collection_name="films"), "default")  # another collection
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "Search", search, "otherdb")  # another database
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "Insert", _Req(collection_name="books"), "default")  # another privilege
    with pytest.raises(errors.InvalidParameter, match="not found the privilege name"):
        sec.roles.operate("reader", "default", "Collection", "*", "CreateCollection", "root", grant=True)
    sec.roles.operate("reader", "default", "Collection", "books", "CreateSnapshot", "root", grant=True)
    sec.authorize("erin", "CreateSnapshot", search, "default")  # a Milvus 3.0 RPC's privilege, from its proto
    sec.roles.operate("reader", "default", "Collection", "books", "CreateSnapshot", "root", grant=False)
    sec.roles.operate("reader", "default", "Collection", "books", "Load", "root", grant=True)
    assert {g.privilege for g in sec.roles.grants("reader")} == {"Search", "Load", "GetLoadState",
                                                                  "GetLoadingProgress"}  # Milvus's related ones
    sec.roles.operate("reader", "default", "Collection", "books", "Search", "root", grant=False)
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "Search", search, "default")  # revoked

    sec.roles.set_user_role("erin", "admin", add=True)
    sec.authorize("erin", "DropCollection", _Req(collection_name="books"), "default")  # admin may do anything
    sec.roles.set_user_role("erin", "admin", add=False)
    with pytest.raises(errors.NotPermitted):
        sec.authorize("erin", "DropCollection", _Req(collection_name="books"), "default")

    with pytest.raises(errors.NotPermitted, match="default role"):
        sec.roles.drop_role("public")
    sec.roles.operate("reader", "default", "Collection", "books", "Query", "root", grant=True)
    with pytest.raises(errors.InvalidParameter, match="fail to drop the role that it has privileges"):
        sec.roles.drop_role("reader")  # Milvus 2.4+: revoke first, or force_drop
    assert sec.roles.grants("reader") and "reader" in sec.roles.roles()
    sec.roles.drop_role("reader", force=True)
    assert sec.roles.user_roles("erin") == [] and sec.roles.grants("reader") == []
    assert sec.roles.roles() == ["admin", "public"]


def test_deleting_a_user_drops_its_role_links(sec):
    sec.users.create("frank", "frank-pw")
    sec.roles.set_user_role("frank", "admin", add=True)
    sec.users.delete("frank")
    assert sec.roles.role_users("admin") == []
    sec.users.create("frank", "frank-pw")  # a new user of that name starts with no roles
    with pytest.raises(errors.NotPermitted):
        sec.authorize("frank", "DropCollection", _Req(collection_name="x"), "default")

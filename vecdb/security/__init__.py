"""Authentication and role-based access control, with Milvus's semantics (docs/security.md).

- ``credentials``: users and their salted password hashes in the metadata store, under
  ``cred/``. The KDF is scrypt from the standard library (``hashlib.scrypt``, OpenSSL's): no
  extra dependency, memory-hard, its parameters stored with each hash so they can be raised later.
- ``rbac``: roles, user-role links and grants, also under ``cred/``, and the table of which
  privilege each Milvus RPC needs (read from the ``privilege_ext_obj`` options of Milvus's own
  request messages, so it is Milvus's table).
- ``view``: every proxy's in-memory copy of ``cred/``, kept current by a watch, so that a check
  never waits on the store; a write to ``cred/`` returns once every live proxy's copy shows it.
- ``guard``: the checks themselves (who is calling, may they do this), with a cache that keeps
  the slow KDF off the request path.

No gRPC here: ``vecdb.proxy.auth_interceptor`` applies the checks to requests and
``vecdb.proxy.rpc_security`` serves the user and role RPCs.
"""

from __future__ import annotations

from vecdb.security.guard import Security

__all__ = ["Security"]

"""The database a Milvus API request is in, for every place that needs it (the handlers, the
privilege checks, the metrics' labels); free of the pymilvus stubs, which the metrics of every role
must not load."""

from __future__ import annotations

from collections.abc import Iterable


def database_of(request, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The request's ``db_name``, else the connection's ``dbname`` header (pymilvus sends it), else "default"."""
    name = getattr(request, "db_name", "")
    if name:
        return name
    for key, value in metadata or ():
        if key == "dbname" and value:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return "default"


def db_of(request, context) -> str:
    """``database_of`` for a gRPC call's context (None: no metadata)."""
    return database_of(request, context.invocation_metadata() if context is not None else None)


# requests whose ``db_name`` is the database they create or drop, not the one they run in: their privilege is
# checked in the connection's database, as Milvus 2.3's proxy does (a CreateDatabase grant in "default" creates any)
DB_IS_OBJECT = frozenset({"CreateDatabase", "DropDatabase"})


def privilege_database(method: str, request, metadata: Iterable[tuple[str, str | bytes]] | None,
                       connection: Iterable[tuple[str, str | bytes]] | None = None) -> str:
    """The database whose grants decide whether ``method`` may run with ``request`` (``database_of``), for
    the requests of ``DB_IS_OBJECT`` the connection's: ``connection``'s header where the caller's ``metadata``
    names another (a REST body's ``dbName``), else ``metadata``'s."""
    if method in DB_IS_OBJECT:
        return database_of(None, metadata if connection is None else connection)
    return database_of(request, metadata)

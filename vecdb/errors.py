"""One exception tree for all of vecdb, carrying Milvus error codes.

Every error a client can see is a ``VecdbError`` subclass. Each class has:

- ``code``: the Milvus 2.3+ error code (``Status.code``; pymilvus raises
  ``MilvusException(code=...)`` with it),
- ``legacy_code``: the name of the value in the legacy ``common.ErrorCode``
  enum (``Status.error_code``), for clients that still read that field,
- ``retriable``: whether retrying the same request may succeed,
- ``input_error``: True when the caller's request is at fault.

Only ``vecdb.proxy.status`` turns these into protobuf Status messages and gRPC
codes; the rest of the code base raises them and never builds a Status.
"""

from __future__ import annotations


class VecdbError(Exception):
    code: int = 65535
    legacy_code: str = "UnexpectedError"
    retriable: bool = False
    input_error: bool = False
    default_message: str = "unexpected error"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


# --- service (1-99) --------------------------------------------------------
class ServiceNotReady(VecdbError):
    code, legacy_code, retriable = 1, "NotReadyServe", True
    default_message = "service not ready"


class ServiceUnavailable(VecdbError):
    code, legacy_code, retriable = 2, "UnexpectedError", True
    default_message = "service unavailable"


class MemoryLimitExceeded(VecdbError):
    code, legacy_code = 3, "InsufficientMemoryToLoad"
    default_message = "memory limit exceeded"


class InternalError(VecdbError):
    code, legacy_code = 5, "UnexpectedError"
    default_message = "service internal error"


class CredentialRefused(InternalError):
    """An internal server refused this process's cluster credential (``security.cluster_secret``
    differs, or one of the two has none): ``vecdb.rpc.transport``."""


class RateLimited(VecdbError):
    """A call over a rate limit (``vecdb.proxy.quota``); pymilvus retries it with backoff."""

    code, legacy_code, retriable = 8, "RateLimit", True
    default_message = "rate limit exceeded"


class ForceDeny(VecdbError):
    """Writes refused while memory or disk is over its limit, and calls a database's force-deny
    properties refuse (``vecdb.proxy.quota``, ``vecdb.coord.properties``): Milvus's quota exceeded."""

    code, legacy_code = 9, "ForceDeny"
    default_message = "force deny"


class Unimplemented(VecdbError):
    code, legacy_code = 10, "UnexpectedError"
    default_message = "service unimplemented"


# --- collection (100-199) --------------------------------------------------
class CollectionNotFound(VecdbError):
    code, legacy_code, input_error = 100, "CollectionNotExists", True
    default_message = "collection not found"


class CollectionNotLoaded(VecdbError):
    code, legacy_code, input_error = 101, "CollectionNotExists", True
    default_message = "collection not loaded"


class CollectionLimitExceeded(VecdbError):
    code, legacy_code, input_error = 102, "IllegalArgument", True
    default_message = "exceeded the limit number of collections"


class CollectionOnRecovering(VecdbError):
    """Milvus's ErrCollectionOnRecovering: the collection exists but is not ready to serve yet (a snapshot
    restore still copying into it)."""
    code, legacy_code, input_error = 106, "UnexpectedError", True
    default_message = "collection on recovering"


class CollectionLoaded(VecdbError):
    code, legacy_code, input_error = 104, "IllegalArgument", True
    default_message = "collection already loaded"


class IllegalSchema(VecdbError):
    code, legacy_code, input_error = 105, "IllegalArgument", True
    default_message = "illegal collection schema"


class VectorClusteringKeyNotAllowed(VecdbError):
    code, legacy_code, input_error = 107, "IllegalArgument", True
    default_message = "vector clustering key not allowed"


# --- partition (200-299) ---------------------------------------------------
class SchemaMismatch(VecdbError):
    """A write made against an older schema than the collection's (the request's schema_timestamp is
    below the schema's last change): pymilvus 2.6 then reads the schema again and retries."""

    code, legacy_code, input_error = 109, "SchemaMismatch", True


class PartitionNotFound(VecdbError):
    code, legacy_code, input_error = 200, "UnexpectedError", True
    default_message = "partition not found"


class NamespaceNotFound(PartitionNotFound):
    default_message = "namespace not found"  # (a partition-mode namespace is a partition: vecdb.namespaces)


class PartitionNotLoaded(VecdbError):
    code, legacy_code, input_error = 201, "UnexpectedError", True
    default_message = "partition not loaded"


# --- resource group (300-399) ----------------------------------------------
class ResourceGroupNotFound(VecdbError):
    code, legacy_code, input_error = 300, "UnexpectedError", True
    default_message = "resource group not found"


class ResourceGroupAlreadyExist(VecdbError):
    code, legacy_code, input_error = 301, "UnexpectedError", True
    default_message = "resource group already exist, but create with different config"


class ResourceGroupReachLimit(VecdbError):
    code, legacy_code, input_error = 302, "UnexpectedError", True
    default_message = "resource group num reach limit"


class ResourceGroupIllegalConfig(VecdbError):
    code, legacy_code, input_error = 303, "IllegalArgument", True
    default_message = "resource group illegal config"


class ResourceGroupNodeNotEnough(VecdbError):
    code, legacy_code, input_error = 304, "UnexpectedError", True
    default_message = "resource group node not enough"


# --- segment (600-699) -----------------------------------------------------
class SegmentNotFound(VecdbError):
    code, legacy_code, input_error = 600, "UnexpectedError", True
    default_message = "segment not found"


# --- index (700-799) -------------------------------------------------------
class IndexNotFound(VecdbError):
    code, legacy_code, input_error = 700, "IndexNotExist", True
    default_message = "index not found"


class IndexNotSupported(VecdbError):
    code, legacy_code, input_error = 701, "IllegalIndexType", True
    default_message = "index type not supported"


class IndexDuplicate(VecdbError):
    code, legacy_code, input_error = 702, "IllegalArgument", True
    default_message = "index duplicates"


# --- database (800-899) ----------------------------------------------------
class DatabaseNotFound(VecdbError):
    code, legacy_code, input_error = 800, "UnexpectedError", True
    default_message = "database not found"


class DatabaseLimitExceeded(VecdbError):
    code, legacy_code, input_error = 801, "UnexpectedError", True
    default_message = "exceeded the limit number of database"


class InvalidDatabaseName(VecdbError):
    code, legacy_code, input_error = 802, "IllegalArgument", True
    default_message = "invalid database name"


# --- node (900-999) --------------------------------------------------------
class NodeNotFound(VecdbError):
    code, legacy_code, input_error = 901, "UnexpectedError", True
    default_message = "node not found"


# --- io (1000-1099) --------------------------------------------------------
class KeyNotFound(VecdbError):
    code, legacy_code = 1000, "UnexpectedError"
    default_message = "key not found"


class IoFailed(VecdbError):
    code, legacy_code = 1001, "UnexpectedError"
    default_message = "IO failed"


class DirectoryInUse(IoFailed):
    """A store's directory is locked by another process (or another instance in this one)."""


class LeaseExpired(IoFailed):
    """A metadata lease ran out (or never existed): its keys are gone, it cannot hold new ones."""

    default_message = "lease expired"


class CatalogConflict(ServiceUnavailable):
    """The catalog changed under a DDL call (another proxy changed the same collection, or kept
    winning): nothing was written; retry with fresh state."""

    default_message = "the catalog changed concurrently; retry"


class LogConflict(IoFailed):
    """An append that expected the channel to end at some position found it further along
    (another writer got there first); retry with fresh state."""

    retriable = True
    default_message = "log position conflict"


# --- parameters (1100-1199) ------------------------------------------------
class InvalidParameter(VecdbError):
    """Bad request content: wrong type, wrong dimension, bad expression..."""

    code, legacy_code, input_error = 1100, "IllegalArgument", True
    default_message = "invalid parameter"


class MissingParameter(VecdbError):
    code, legacy_code, input_error = 1101, "IllegalArgument", True
    default_message = "missing parameter"


class ParameterTooLarge(VecdbError):
    code, legacy_code, input_error = 1102, "IllegalArgument", True
    default_message = "parameter too large"


# --- privilege (1400-1499) -------------------------------------------------
class NotAuthenticated(VecdbError):
    code, legacy_code, input_error = 1400, "PermissionDenied", True
    default_message = "not authenticated"


class NotPermitted(VecdbError):
    code, legacy_code, input_error = 1401, "PermissionDenied", True
    default_message = "privilege not permitted"


# --- alias (1600-1699) -----------------------------------------------------
class AliasNotFound(VecdbError):
    code, legacy_code, input_error = 1600, "UnexpectedError", True
    default_message = "alias not found"


class AliasNameConflict(VecdbError):
    code, legacy_code, input_error = 1601, "UnexpectedError", True
    default_message = "alias and collection name conflict"


class AliasAlreadyExists(VecdbError):
    code, legacy_code, input_error = 1602, "UnexpectedError", True
    default_message = "alias already exist"


# --- field (1700-1799) -----------------------------------------------------
class FieldNotFound(VecdbError):
    code, legacy_code, input_error = 1700, "IllegalArgument", True
    default_message = "field not found"


class InvalidFieldName(VecdbError):
    code, legacy_code, input_error = 1701, "IllegalArgument", True
    default_message = "field name invalid"


# --- general ---------------------------------------------------------------
class OperationNotSupported(VecdbError):
    code, legacy_code, input_error = 3000, "UnexpectedError", True
    default_message = "unsupported operation"

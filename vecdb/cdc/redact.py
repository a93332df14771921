"""Credentials out of what the CDC API shows: a task's spec is kept whole in the service's store (the
task needs its tokens), and every answer of the API (``vecdb cdc task create/list/get``, pause, resume)
shows it with each secret replaced by ``***``, as external collections' specs and the replication API's
configuration are shown (``vecdb.external_spec.redacted_spec``)."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
# keys whose values are secrets: a Milvus token ("user:password" or an API key), a password, S3 keys
SECRET_KEYS = frozenset({"token", "password", "s3_secret_key", "s3_access_key", "secret", "api_key"})
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@/\s]+@", re.IGNORECASE)


def redact(value: Any) -> Any:
    """``value`` (a task spec, or any JSON value) with the values of ``SECRET_KEYS`` (non-empty ones) and
    the passwords of URLs (``etcd://user:pw@host`` -> ``etcd://user:***@host``) replaced by ``***``; a copy."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and k.lower() in SECRET_KEYS and value[k] else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + "@", value)
    return value

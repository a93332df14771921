"""External collections (Milvus 3.0): the checks of a collection's ``external_source`` (where its
files are) and ``external_spec`` (how to read them), as Milvus's proxy makes them, and what vecdb
reads from them: the S3 endpoint, bucket and prefix, and the credentials (``vecdb.external_tables``
runs the refresh jobs that read the files).

A source is ``s3://<endpoint host:port>/<bucket>/<prefix>/`` (Milvus's form: the endpoint, then the
bucket), or ``s3://<bucket>/<prefix>/`` when the spec's ``extfs.address`` gives the endpoint (or, with
neither an address nor a port, the bucket on AWS S3). The spec is a JSON object: ``format``
(``parquet``, the default; Milvus's other formats refused as not supported yet) and ``extfs``, a map of
string settings. Every refusal is InvalidParameter (1100).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from vecdb import errors

# Milvus's allowed schemes; vecdb reads the S3 ones (boto3)
S3_SCHEMES = ("s3", "s3a", "aws", "minio")
OTHER_SCHEMES = ("oss", "gs", "gcs")
ALLOWED_SCHEMES = tuple(sorted(S3_SCHEMES + OTHER_SCHEMES))
FORMATS = ("parquet",)
FORMATS_NOT_YET = ("lance-table", "vortex", "iceberg-table", "milvus-table")
EXTFS_KEYS = ("use_iam", "use_ssl", "use_virtual_host", "region", "cloud_provider", "iam_endpoint", "storage_type",
              "ssl_ca_cert", "access_key_id", "access_key_value", "role_arn", "session_name", "external_id",
              "load_frequency", "address", "bucket_name")
BOOL_KEYS = ("use_iam", "use_ssl", "use_virtual_host")
SECRET_KEYS = ("access_key_id", "access_key_value", "ssl_ca_cert")
REDACTED = "***"


@dataclass(frozen=True)
class ExternalTarget:
    """Where an external collection's files are, and how to reach them."""

    endpoint: str | None  # an http(s) URL; None: AWS S3's own endpoint (in ``region``)
    bucket: str
    prefix: str  # "" or ending in "/"
    format: str
    extfs: dict[str, str]

    @property
    def region(self) -> str:
        return self.extfs.get("region") or "us-east-1"

    @property
    def access_key(self) -> str | None:
        return self.extfs.get("access_key_id") or None

    @property
    def secret_key(self) -> str | None:
        return self.extfs.get("access_key_value") or None


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``external_spec``'s format (``parquet`` when empty) and ``extfs`` settings, checked."""
    if not spec.strip():
        return "parquet", {}
    try:
        doc = json.loads(spec)
    except ValueError as e:
        raise errors.InvalidParameter(f"invalid external spec JSON: {e}") from None
    if not isinstance(doc, dict):
        raise errors.InvalidParameter("invalid external spec JSON: expected an object")
    fmt = doc.get("format") or "parquet"
    if not isinstance(fmt, str):
        raise errors.InvalidParameter("invalid external spec JSON: format must be a string")
    fmt = fmt.strip().lower()
    if fmt in FORMATS_NOT_YET:
        raise errors.InvalidParameter(f"format {fmt} is not supported by vecdb yet")
    if fmt not in FORMATS:
        raise errors.InvalidParameter(
            f"unsupported format {json.dumps(fmt)}, supported formats: {', '.join(FORMATS + FORMATS_NOT_YET)}")
    extfs = doc.get("extfs") or {}
    if not isinstance(extfs, dict):
        raise errors.InvalidParameter("invalid external spec JSON: extfs must be an object")
    out: dict[str, str] = {}
    for key, value in extfs.items():
        if key not in EXTFS_KEYS:
            raise errors.InvalidParameter(
                f"extfs key {json.dumps(key)} is not allowed; allowed keys: {', '.join(EXTFS_KEYS)}")
        if not isinstance(value, str):
            raise errors.InvalidParameter(f"extfs.{key} must be a string, got {json.dumps(value)}")
        if key in BOOL_KEYS and value not in ("true", "false"):
            raise errors.InvalidParameter(f"extfs.{key} must be \"true\" or \"false\", got {json.dumps(value)}")
        out[key] = value
    return fmt, out


def check_source(source: str) -> tuple[str, str, str]:
    """``external_source``'s scheme, host part and path, checked (not yet split into endpoint and bucket)."""
    if not source.strip():
        raise errors.InvalidParameter("external_source is empty")
    parts = urlsplit(source.strip())
    if not parts.scheme or "://" not in source:
        raise errors.InvalidParameter(
            f"external_source {json.dumps(source)} must have an explicit scheme (e.g. s3://bucket/prefix/)")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise errors.InvalidParameter(f"external_source scheme {json.dumps(scheme)} is not allowed; "
                                      f"allowed schemes: {', '.join(ALLOWED_SCHEMES)}")
    if parts.username is not None or parts.password is not None:
        raise errors.InvalidParameter("external_source must not embed credentials in the URL "
                                      "(use extfs.access_key_id / extfs.access_key_value instead)")
    if scheme in OTHER_SCHEMES:
        raise errors.InvalidParameter(f"external_source scheme {json.dumps(scheme)} is not supported by vecdb yet "
                                      f"(vecdb reads {', '.join(S3_SCHEMES)})")
    if not parts.netloc:
        raise errors.InvalidParameter(f"external_source {json.dumps(source)} names no bucket")
    return scheme, parts.netloc, parts.path


def parse_external(source: str, spec: str) -> ExternalTarget:
    """The checked pair as what a refresh reads (see the module docstring for the forms)."""
    fmt, extfs = parse_spec(spec)
    _, host, path = check_source(source)
    segments = [s for s in path.split("/") if s]
    ssl = extfs.get("use_ssl", "false") == "true"
    address = extfs.get("address", "")
    if address:
        endpoint: str | None = address if "://" in address else f"{'https' if ssl else 'http'}://{address}"
        bucket = extfs.get("bucket_name") or host
    elif ":" in host:  # Milvus's form: s3://<endpoint host:port>/<bucket>/<prefix>/
        if not segments:
            raise errors.InvalidParameter(f"external_source {json.dumps(source)} names no bucket after the "
                                          "endpoint (s3://<host:port>/<bucket>/<prefix>/)")
        endpoint = f"{'https' if ssl else 'http'}://{host}"
        bucket, segments = segments[0], segments[1:]
    else:  # s3://<bucket>/<prefix>/ on AWS S3
        endpoint, bucket = None, host
    prefix = "/".join(segments)
    return ExternalTarget(endpoint=endpoint, bucket=bucket, prefix=prefix + "/" if prefix else "", format=fmt,
                          extfs=extfs)


def check_external(source: str, spec: str) -> None:
    """Refuses a source or spec that is not valid (InvalidParameter)."""
    parse_external(source, spec)


def redacted_spec(spec: str) -> str:
    """``spec`` with its credentials replaced by ``***`` (what a refresh job's record shows)."""
    try:
        doc = json.loads(spec) if spec.strip() else None
    except ValueError:
        return spec
    if not isinstance(doc, dict) or not isinstance(doc.get("extfs"), dict):
        return spec
    doc["extfs"] = {k: (REDACTED if k in SECRET_KEYS and v else v) for k, v in doc["extfs"].items()}
    return json.dumps(doc)

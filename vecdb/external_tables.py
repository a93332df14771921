"""External collections (Milvus 3.0): the refresh jobs' records, each collection's file state, and the
reading of the source files (parquet on an S3-compatible store, through boto3 and pyarrow).

A refresh job is a JSON record ``external/job/<id>`` in the metadata store (as bulk import's,
``vecdb.importer``), so every proxy answers for it; the finished ones kept are the newest
``KEEP_JOBS`` of the last ``KEEP_MS``. ``external/active/<collection id>`` names the collection's
running job (set with a compare-and-set: one job at a time). ``external/state/<collection id>``
holds what the collection holds: the source and spec a refresh last read (a refresh may name new
ones), and per file read its size, ETag and the ``__virtual_pk__`` ranges its rows got, so a
refresh reads only the files that are new (or changed) and deletes the rows of the files gone.
The job itself runs in the proxy that took the request (``vecdb.proxy.rpc_external``); it is a durable
job (``vecdb.jobs``): one whose runner ended is taken over by another process and carried to its end. A
file whose rows are being written is marked ``partial`` in the state first (with the keys its rows
get), so a refresh taken over deletes what was written of it and reads it again.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field

from vecdb import errors
from vecdb.external_spec import ExternalTarget, redacted_spec
from vecdb.jobs import JobStore, Record, from_record
from vecdb.schema import CollectionSchema, DataType
from vecdb.storage.base import MetaStore

JOB_PREFIX = "external/job/"
ACTIVE_PREFIX = "external/active/"
STATE_PREFIX = "external/state/"
PENDING, IN_PROGRESS, COMPLETED, FAILED = 0, 1, 2, 3  # milvus_pb2.RefreshExternalCollectionState
# collection properties that would name another source or spec: refused (a refresh names them)
EXTERNAL_PROPERTIES = ("collection.external_source", "collection.external_spec")
KEEP_JOBS = 100
KEEP_MS = 24 * 3600 * 1000


def refuse_write(schema: CollectionSchema, op: str, collection: str) -> None:
    """InvalidParameter (1100) for a write to an external collection: its rows come from its files."""
    if schema.is_external:
        raise errors.InvalidParameter(f"{op} operation is not supported for external collection {collection}")


@dataclass
class RefreshJob:
    id: int
    db: str
    collection: str
    collection_id: int
    external_source: str
    external_spec: str
    replace: bool = False  # the request named the pair: saved as the collection's on success
    state: int = PENDING
    progress: int = 0
    reason: str = ""
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_ms: int = 0
    updated_ms: int = 0
    rows_added: int = 0
    rows_deleted: int = 0
    owner: str = ""
    attempts: int = 0

    @property
    def done(self) -> bool:
        return self.state in (COMPLETED, FAILED)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RefreshJob:
        return from_record(cls, raw)

    def info(self) -> dict:
        """The fields of ``milvus_pb2.RefreshExternalCollectionJobInfo`` (credentials redacted)."""
        return {"job_id": self.id, "collection_name": self.collection, "state": self.state,
                "progress": self.progress, "reason": self.reason, "external_source": self.external_source,
                "external_spec": redacted_spec(self.external_spec), "start_time": self.start_ms,
                "end_time": self.end_ms}


class RefreshStore:
    """Refresh job records, the one-job-per-collection marker, and each collection's file state."""

    def __init__(self, meta: MetaStore):
        self.meta = meta
        self.jobs = JobStore(meta, JOB_PREFIX, lambda r: r.get("state") in (PENDING, IN_PROGRESS))

    def get(self, job_id: int) -> RefreshJob | None:
        raw = self.jobs.raw(job_id)
        return None if raw is None else RefreshJob.from_json(raw)

    def list(self, db: str, collection_id: int | None = None) -> list[RefreshJob]:
        """Newest first."""
        found = [RefreshJob.from_json(v) for _, v in self.jobs.scan()]
        found = [j for j in found if j.db == db and (collection_id is None or j.collection_id == collection_id)]
        return sorted(found, key=lambda j: -j.id)

    def start(self, job: RefreshJob) -> Record:
        """Record ``job`` as its collection's running one; InvalidParameter while another runs."""
        key = f"{ACTIVE_PREFIX}{job.collection_id}"
        mine = str(job.id).encode()
        while not self.meta.txn(puts={key: mine}, expect={key: None}):
            held = self.meta.get(key)
            if held is None:
                continue
            other = self.get(int(held))
            if other is not None and not other.done:
                raise errors.InvalidParameter(
                    f"a refresh job ({other.id}) of external collection {job.collection} is still running; "
                    "wait for it to finish")
            if self.meta.txn(puts={key: mine}, expect={key: held}):
                break
        rec = self.jobs.create(job)
        self._trim()
        return rec

    def finish(self, rec: Record) -> None:
        job = rec.job
        job.end_ms = int(time.time() * 1000)
        rec.put()
        key = f"{ACTIVE_PREFIX}{job.collection_id}"
        self.meta.txn(deletes=[key], expect={key: str(job.id).encode()})

    def _trim(self) -> None:
        now = time.time() * 1000
        jobs = sorted((RefreshJob.from_json(v) for _, v in self.meta.scan(JOB_PREFIX)), key=lambda j: -j.id)
        done = [j for j in jobs if j.done]
        for i, j in enumerate(done):
            if i >= KEEP_JOBS or now - (j.end_ms or j.start_ms) > KEEP_MS:
                self.meta.delete(f"{JOB_PREFIX}{j.id}")

    # --- the collection's state -------------------------------------------------------------
    def state(self, collection_id: int) -> dict:
        raw = self.meta.get(f"{STATE_PREFIX}{collection_id}")
        return json.loads(raw) if raw is not None else {"files": {}}

    def put_state(self, collection_id: int, state: dict) -> None:
        self.meta.put(f"{STATE_PREFIX}{collection_id}", json.dumps(state).encode())

    def forget_files(self, collection_id: int) -> None:
        """After a truncate: no file read (the next refresh reads them all), the source and spec kept."""
        state = self.state(collection_id)
        state["files"] = {}
        self.put_state(collection_id, state)

    def drop_state(self, collection_id: int) -> None:
        self.meta.delete(f"{STATE_PREFIX}{collection_id}")

    def pair(self, schema: CollectionSchema, collection_id: int) -> tuple[str, str]:
        """The collection's source and spec: the ones a refresh last named, else the schema's."""
        state = self.state(collection_id)
        return state.get("source") or schema.external_source, state.get("spec", schema.external_spec)


# --- the source files ----------------------------------------------------------------------
class SourceFiles:
    """The parquet files directly under an external collection's prefix (no sub-folders)."""

    def __init__(self, target: ExternalTarget):
        import boto3
        import botocore
        import botocore.config
        import botocore.exceptions

        self.target = target
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        # Only the spec's own keys sign: without them the requests go unsigned, never with the server's
        # own credentials (its environment, ~/.aws, an instance role), which would let a user read what
        # the server may read; use_iam asks for those explicitly.
        own = bool(target.access_key and target.secret_key) or target.extfs.get("use_iam") == "true"
        self._s3 = boto3.client(
            "s3", endpoint_url=target.endpoint, region_name=target.region, aws_access_key_id=target.access_key,
            aws_secret_access_key=target.secret_key,
            config=botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                          s3={"addressing_style": "virtual" if target.extfs.get(
                                              "use_virtual_host") == "true" else "path"},
                                          **({} if own else {"signature_version": botocore.UNSIGNED})))

    def _failed(self, what: str, e: Exception) -> errors.InvalidParameter:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404") and what == "list":
            return errors.InvalidParameter(f"bucket {self.target.bucket!r} does not exist")
        return errors.InvalidParameter(f"cannot {what} in bucket {self.target.bucket!r}: {e}")

    def list(self) -> dict[str, dict]:
        """``{key: {"size", "etag"}}`` of the ``.parquet`` files directly under the prefix."""
        out: dict[str, dict] = {}
        token = None
        try:
            while True:
                kw = {"Bucket": self.target.bucket, "Prefix": self.target.prefix, "Delimiter": "/"}
                if token:
                    kw["ContinuationToken"] = token
                page = self._s3.list_objects_v2(**kw)
                for obj in page.get("Contents", ()):
                    if obj["Key"].lower().endswith(".parquet"):
                        out[obj["Key"]] = {"size": obj["Size"], "etag": obj.get("ETag", "").strip('"')}
                if not page.get("IsTruncated"):
                    return out
                token = page["NextContinuationToken"]
        except self._errors as e:
            raise self._failed("list", e) from None

    def read(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.target.bucket, Key=key)["Body"].read()
        except self._errors as e:
            raise self._failed(f"read {key}", e) from None


def file_rows(schema: CollectionSchema, data: bytes, path: str) -> list[dict]:
    """A parquet file's rows as insert rows of ``schema``: each user field from its ``external_field``
    column (other columns ignored; a missing one refuses the file), JSON strings parsed for JSON fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise errors.InvalidParameter(f"failed to read the parquet file {path}: {e}") from None
    mapped = [f for f in schema.fields if f.external_field]
    for f in mapped:
        if f.external_field not in table.column_names:
            raise errors.InvalidParameter(f"the parquet file {path} has no column {f.external_field!r} "
                                          f"(the external_field of field {f.name})")
    for f in mapped:
        _check_type(f, table.schema.field(f.external_field).type, path)
    table = table.select([f.external_field for f in mapped]).rename_columns([f.name for f in mapped])
    rows = table.to_pylist()
    as_json = [f.name for f in mapped if f.dtype == DataType.JSON]
    for i, row in enumerate(rows):
        for name in as_json:
            if isinstance(row.get(name), str):
                try:
                    row[name] = json.loads(row[name])
                except ValueError as e:
                    raise errors.InvalidParameter(f"the parquet file {path}: row {i}: invalid JSON in field "
                                                  f"{name}: {e}") from None
    return rows


def _check_type(f, arrow_type, path: str) -> None:
    """Refuses a column whose parquet type cannot hold the values of field ``f``."""
    import pyarrow.types as pt

    dt = f.dtype
    if dt.is_vector:
        ok = (pt.is_list(arrow_type) or pt.is_large_list(arrow_type) or pt.is_fixed_size_list(arrow_type)) and (
            pt.is_integer(arrow_type.value_type) or pt.is_floating(arrow_type.value_type))
        ok = ok or (dt in (DataType.BINARY_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR)
                    and (pt.is_binary(arrow_type) or pt.is_large_binary(arrow_type)))
        need = "lists of numbers"
    elif dt.is_integer:
        ok, need = pt.is_integer(arrow_type), "integers"
    elif dt in (DataType.FLOAT, DataType.DOUBLE):
        ok, need = pt.is_integer(arrow_type) or pt.is_floating(arrow_type), "numbers"
    elif dt == DataType.BOOL:
        ok, need = pt.is_boolean(arrow_type), "booleans"
    elif dt in (DataType.VARCHAR, DataType.TEXT, DataType.GEOMETRY, DataType.TIMESTAMPTZ):
        ok, need = pt.is_string(arrow_type) or pt.is_large_string(arrow_type), "strings"
        ok = ok or (dt == DataType.TIMESTAMPTZ and (pt.is_timestamp(arrow_type) or pt.is_integer(arrow_type)))
    elif dt == DataType.ARRAY:
        ok, need = pt.is_list(arrow_type) or pt.is_large_list(arrow_type), "lists"
    else:  # JSON: a JSON string, or any nested value
        ok, need = True, ""
    if not ok:
        raise errors.InvalidParameter(f"the column {f.external_field!r} of the parquet file {path} holds {arrow_type}: "
                                      f"field {f.name} ({dt.name}) needs {need}")

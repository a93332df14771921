"""Bulk import (Milvus's ``Import`` / ``GetImportState`` / ``ListImportTasks`` and the REST v2
``jobs/import`` endpoints): the job records and the file readers.

A job is a JSON record ``import/<job id>`` in the metadata store, so every proxy answers for it
and it outlives the process that ran it: one whose runner ended is taken over and carried to its end
by another process (``vecdb.jobs``; a standalone server when it starts again, any proxy of a cluster).
Files are keys of the deployment's object store (the
data dir's ``objects/`` on the embedded backends, the configured bucket and namespace on S3);
a standalone server on the embedded object store also takes absolute local paths.

Formats, as Milvus 2.4 reads them: a row-based JSON file (``{"rows": [{...}, ...]}``, as
``LocalBulkWriter`` writes them, or a top-level list of row objects) or a JSON lines file
(``.jsonl``, one row object a line) is one file of a job; NumPy
column files (``<field>.npy``, one per field, ``$meta.npy`` for the dynamic field as JSON
strings) form one group together. A Parquet file (as pymilvus's ``BulkFileType.PARQUET`` writers
write it: vectors as lists, JSON, sparse vectors and the dynamic field ``$meta`` as JSON strings) is
one file of a job, read with pyarrow and then checked as JSON rows are. TIMESTAMPTZ values are ISO
8601 strings in every format, read as an insert reads them (one without an offset in the
collection's time zone). GEOMETRY values are WKT strings in every format, checked as an insert
checks them (a file holding a value that is no WKT fails the job).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vecdb import errors, jobs
from vecdb.proxy.fielddata import float32_to_bfloat16
from vecdb.schema import CollectionSchema, DataType, valid_key
from vecdb.storage.base import MetaStore, ObjectStore

JOB_PREFIX = "import/"

PENDING, IMPORTING, COMPLETED, FAILED = "Pending", "Importing", "Completed", "Failed"
# JSON rows per validated and written batch; NumPy columns are cut by bytes (BATCH_BYTES)
JSON_BATCH_ROWS = 10_000
BATCH_BYTES = 8 << 20
# validated rows a job keeps between its check of every file and its writes; groups past it are
# read and converted a second time when written (memory bounded by one group, not the job)
HOLD_BYTES = 1 << 30
# A test switch for the crash tests: "abort:<n>" kills the process running an import (SIGKILL; not one
# that took the job over) once the job's n-th batch is written, before the next one is recorded. Never
# set in production.
FAULT_ENV = "VECDB_FAULT_IMPORT"


@dataclass
class ImportJob:
    """An import job's record (``vecdb.jobs``: its runner, heartbeat and takeover). ``cursor`` is the
    write pass's progress, recorded BEFORE each batch is written: ``{"group", "batch", "rows", "pk"}``,
    the batch in flight (the ``batch``-th of file group ``group``; every batch before it is written),
    the rows written before it, and for an auto_id collection the first of the primary keys allocated
    to it (it holds the next ones). A job taken over writes the batch in flight again with the same
    keys (a row written twice under one key: the later timestamp wins, so it replaces, never
    duplicates) and goes on from there."""

    id: int
    db: str
    collection: str
    collection_id: int
    partition: str
    files: list[list[str]]
    state: str = PENDING
    progress: int = 0
    imported_rows: int = 0
    total_rows: int = 0
    reason: str = ""
    create_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    complete_ms: int = 0
    segment_ids: list[int] = field(default_factory=list)
    updated_ms: int = 0
    owner: str = ""
    attempts: int = 0
    cursor: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ImportJob:
        return jobs.from_record(cls, raw)


def unfinished(record: dict) -> bool:
    return record.get("state") in (PENDING, IMPORTING)


class JobStore(jobs.JobStore):
    """Import jobs in the metadata store (``import/<id>``)."""

    def __init__(self, meta: MetaStore):
        super().__init__(meta, JOB_PREFIX, unfinished)

    def put(self, job: ImportJob) -> None:
        """Write ``job`` whatever its record holds (tests; a running job writes through its ``jobs.Record``)."""
        job.updated_ms = int(time.time() * 1000)
        self.meta.put(self.key(job.id), job.to_json())

    def get(self, job_id: int) -> ImportJob | None:
        raw = self.meta.get(self.key(job_id))
        return None if raw is None else ImportJob.from_json(raw)

    def list(self, db: str, collection_id: int | None = None) -> list[ImportJob]:
        found = [ImportJob.from_json(v) for _, v in self.scan()]
        found = [j for j in found if j.db == db and (collection_id is None or j.collection_id == collection_id)]
        return sorted(found, key=lambda j: j.id)


def fault_after() -> int | None:
    """The batch count after which the crash tests' switch kills the process (None: off)."""
    value = os.environ.get(FAULT_ENV, "")
    return int(value.split(":", 1)[1]) if value.startswith("abort:") else None


# --- files --------------------------------------------------------------------------------
def file_kind(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".json", ".jsonl", ".npy", ".parquet"):
        return ext[1:]
    raise errors.InvalidParameter(f"unexpected file type, files={path}: .json, .jsonl, .parquet or .npy files only")


def group_files(files: list[str]) -> list[list[str]]:
    """``Import``'s flat file list as the groups a job reads: each JSON file alone, all NumPy files
    together (the column files of one set of rows)."""
    files = [f for f in files if f]
    if not files:
        raise errors.InvalidParameter("import request is empty")
    kinds = [file_kind(f) for f in files]
    npy = [f for f, k in zip(files, kinds) if k == "npy"]
    return [[f] for f, k in zip(files, kinds) if k != "npy"] + ([npy] if npy else [])


def check_groups(groups: list[list[str]]) -> list[list[str]]:
    """REST ``files`` (a list of lists): each group one JSON file or NumPy files."""
    if not groups or not all(isinstance(g, list) and g and all(isinstance(p, str) and p for p in g)
                             for g in groups):
        raise errors.InvalidParameter("import request is empty: files must be a non-empty list of lists of paths")
    for g in groups:
        kinds = {file_kind(p) for p in g}
        if kinds & {"json", "jsonl", "parquet"} and len(g) > 1:
            raise errors.InvalidParameter(f"for JSON or parquet import, accepts only one file, files={g}")
        if len(kinds) > 1:
            raise errors.InvalidParameter(f"mixed file types in one group, files={g}")
    return groups


def read_object(objects: ObjectStore, path: str, local_files: bool) -> bytes:
    """A file's bytes: an object store key, or (``local_files``) an absolute local path."""
    if local_files and os.path.isabs(path) and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    try:
        return objects.get(path.lstrip("/"))
    except (errors.KeyNotFound, errors.InvalidParameter):
        raise errors.InvalidParameter(f"the file {path} does not exist in the object store") from None


def json_rows(data: bytes, path: str) -> list[dict]:
    """A row-based JSON file's rows. A ``.json`` file is decoded row by row (``_json_array``): one
    ``json.loads`` of a whole file holds the GIL for as long as it parses (56 s for a 500 MB file of
    200,000 128-dim rows on a loaded machine), which starved the session's renewal thread and stopped
    the server ("the storage session was lost"); between two rows other threads run."""
    try:
        text = data.decode("utf-8-sig")
        del data
        if path.lower().endswith(".jsonl"):  # JSON lines: one row object a line
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = _json_rows_doc(text, path)
    except ValueError as e:
        raise errors.InvalidParameter(f"failed to parse the JSON file {path}: {e}") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise errors.InvalidParameter(f"the JSON file {path}: row {i} is not an object")
    return rows


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip_ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m else pos


def _json_rows_doc(text: str, path: str) -> list:
    """The rows of a JSON document: a top-level list, or the list under ``"rows"`` of an object (its
    other keys decoded whole)."""
    pos = _skip_ws(text, 0)
    rows: Any
    if text.startswith("[", pos):
        rows, pos = _json_array(text, pos)
    elif text.startswith("{", pos):
        rows, pos = _json_object_rows(text, pos + 1)
    else:
        rows, pos = _DECODER.raw_decode(text, pos)  # a scalar: not rows (or a JSON error)
        rows = None
    if _skip_ws(text, pos) != len(text):
        raise ValueError(f"Extra data: char {pos}")
    if not isinstance(rows, list):
        raise errors.InvalidParameter(f"the JSON file {path} holds no rows: expected {{\"rows\": [...]}} or a list")
    return rows


def _json_array(text: str, pos: int) -> tuple[list, int]:
    """The JSON array starting at ``text[pos]`` (``[``), decoded one element at a time; and the end."""
    out: list = []
    pos = _skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        return out, pos + 1
    while True:
        value, pos = _DECODER.raw_decode(text, pos)
        out.append(value)
        done, pos = _after_item(text, pos, "]")
        if done:
            return out, pos


def _json_object_rows(text: str, pos: int) -> tuple[list | None, int]:
    """The ``"rows"`` list of the JSON object whose body starts at ``text[pos]`` (after ``{``); and the end."""
    rows = None
    pos = _skip_ws(text, pos)
    if text.startswith("}", pos):
        return rows, pos + 1
    while True:
        key, pos = _DECODER.raw_decode(text, pos)
        if not isinstance(key, str):
            raise ValueError(f"Expecting property name enclosed in double quotes: char {pos}")
        pos = _skip_ws(text, pos)
        if not text.startswith(":", pos):
            raise ValueError(f"Expecting ':' delimiter: char {pos}")
        pos = _skip_ws(text, pos + 1)
        if key == "rows" and text.startswith("[", pos):
            rows, pos = _json_array(text, pos)
        else:
            value, pos = _DECODER.raw_decode(text, pos)
            rows = value if key == "rows" else rows
        done, pos = _after_item(text, pos, "}")
        if done:
            return rows, pos


def _after_item(text: str, pos: int, close: str) -> tuple[bool, int]:
    """After an array's element or an object's member at ``pos``: (True, the end) at the ``close``
    bracket, else (False, where the next one starts)."""
    pos = _skip_ws(text, pos)
    if text.startswith(close, pos):
        return True, pos + 1
    if not text.startswith(",", pos):
        raise ValueError(f"Expecting ',' delimiter: char {pos}")
    return False, _skip_ws(text, pos + 1)


DYNAMIC = "$meta"


def parquet_rows(schema: CollectionSchema, data: bytes, path: str) -> list[dict]:
    """A Parquet file's rows as JSON import rows: the columns pymilvus's writers store as JSON
    strings (JSON fields, sparse vectors) parsed; ``$meta`` as the writers left it (``merge_dynamic``
    spreads it into the row), a null one dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
        rows: list[dict] = []
        for start in range(0, table.num_rows, JSON_BATCH_ROWS):  # (one to_pylist holds the GIL throughout)
            rows.extend(table.slice(start, JSON_BATCH_ROWS).to_pylist())
    except (pa.ArrowException, OSError, ValueError) as e:
        raise errors.InvalidParameter(f"failed to read the parquet file {path}: {e}") from None
    as_json = [f.name for f in schema.fields if f.dtype in (DataType.JSON, DataType.SPARSE_FLOAT_VECTOR)
               and not f.is_dynamic]
    for i, row in enumerate(rows):
        try:
            for name in as_json:
                if isinstance(row.get(name), str):
                    row[name] = json.loads(row[name])
        except ValueError as e:
            raise errors.InvalidParameter(f"failed to import the file {path}: row {i}: invalid JSON: {e}") from None
        if row.get(DYNAMIC, 0) is None:  # the writers' $meta column holds a null for a row without keys
            del row[DYNAMIC]
    return rows


def merge_dynamic(schema: CollectionSchema, rows: list[dict], path: str) -> list[dict]:
    """Rows with a ``$meta`` key (JSON and Parquet files) as an insert takes them: its object (or JSON
    string of one) spread into the row beside the keys outside the schema, as Milvus's JSON import
    combines them (``combineDynamicRow``; a key in both is refused, a ``$meta`` that is no object too).
    Without a dynamic field the key stays, and the row is refused as one with a field not in the schema."""
    if schema.dynamic_field is None:
        return rows
    static = {f.name for f in schema.fields}
    for i in [i for i, row in enumerate(rows) if DYNAMIC in row]:
        row = rows[i]
        meta = row.pop(DYNAMIC)
        where = f"failed to import the file {path}: row {i}"
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                raise errors.InvalidParameter(f"{where}: illegal value for dynamic field, not a JSON format "
                                              "string") from None
        if not isinstance(meta, dict):
            raise errors.InvalidParameter(f"{where}: illegal value for dynamic field, not a JSON object")
        for key, value in meta.items():
            if key in row and key not in static:
                raise errors.InvalidParameter(f"{where}: duplicated key is not allowed, key={key}")
            if key not in static:  # (a schema field's name inside $meta would shadow the field)
                row[key] = value
    return rows


def numpy_columns(schema: CollectionSchema, files: dict[str, bytes]) -> tuple[dict[str, np.ndarray], int]:
    """NumPy column files (``{path: bytes}``, each named after its field) as insert columns: VARCHAR
    as str objects, JSON and the dynamic field parsed; checked against the schema (every field
    that needs a value present, vector dims, one row count)."""
    columns: dict[str, np.ndarray] = {}
    n = None
    for path, data in files.items():
        name = os.path.splitext(os.path.basename(path))[0]
        f = schema.field(name)
        if f is None:
            raise errors.InvalidParameter(f"the field {name} of the numpy file {path} is not in the schema")
        if f.is_function_output:
            raise errors.InvalidParameter(f"the function output field {name} cannot be imported ({path})")
        if f.is_primary and f.auto_id:
            raise errors.InvalidParameter(f"the primary key '{name}' is auto-generated, no need to provide ({path})")
        if f.name in columns:  # (two files of one field, e.g. from two directories: which rows?)
            raise errors.InvalidParameter(f"duplicated numpy file for the field {f.name}: {path}")
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # EOFError: an empty file
            raise errors.InvalidParameter(f"failed to read the numpy file {path}: {e}") from None
        columns[f.name] = _numpy_column(f, arr, path)
        if f.nullable:  # numpy has no nulls: every row holds a value
            columns[valid_key(f.name)] = np.ones(len(arr), np.bool_)
        if n is None:
            n = len(arr)
        elif len(arr) != n:
            raise errors.InvalidParameter(
                f"the numpy file {path} has {len(arr)} rows, other files of the same import have {n}")
    for f in schema.fields:
        if f.name in columns or f.is_function_output or f.is_dynamic or f.nullable or f.has_default:
            continue
        if f.is_primary and f.auto_id:
            continue
        raise errors.InvalidParameter(f"no numpy file for the field {f.name} ({f.name}.npy)")
    return columns, n or 0


_INTS: dict[DataType, type[np.signedinteger]] = {
    DataType.INT8: np.int8, DataType.INT16: np.int16, DataType.INT32: np.int32, DataType.INT64: np.int64}


def _numpy_column(f, arr: np.ndarray, path: str) -> np.ndarray:
    dt = f.dtype
    if dt in (DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR) and arr.dtype == np.uint8:
        # pymilvus's writers store half-precision vectors as their bytes (dim * 2 uint8 per row)
        if arr.ndim != 2 or arr.shape[1] != 2 * f.dim:
            raise errors.InvalidParameter(
                f"the numpy file {path} holds {arr.shape[1:]} bytes per row, the field {f.name} needs {2 * f.dim}")
        return np.ascontiguousarray(arr).view(np.float16 if dt == DataType.FLOAT16_VECTOR else np.uint16)
    if dt.is_vector and dt != DataType.SPARSE_FLOAT_VECTOR:
        width = f.dim // 8 if dt == DataType.BINARY_VECTOR else f.dim
        if arr.ndim != 2 or arr.shape[1] != width:
            raise errors.InvalidParameter(
                f"the dim of the numpy file {path} is {arr.shape[1:] or '()'}, the field {f.name} has dim {f.dim}")
        if dt in (DataType.BINARY_VECTOR, DataType.INT8_VECTOR):
            need = np.uint8 if dt == DataType.BINARY_VECTOR else np.int8
            if arr.dtype != need:
                raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs "
                                              f"{np.dtype(need).name}")
            return arr
        if not np.issubdtype(arr.dtype, np.floating):
            raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs floats")
        if dt == DataType.BFLOAT16_VECTOR:
            return float32_to_bfloat16(arr)
        return arr.astype(np.float16 if dt == DataType.FLOAT16_VECTOR else np.float32, copy=False)
    if arr.ndim != 1:
        raise errors.InvalidParameter(f"the numpy file {path} of the scalar field {f.name} must be 1-dimensional")
    # TIMESTAMPTZ: ISO 8601 strings, GEOMETRY: WKT, both read as an insert's
    if dt in (DataType.VARCHAR, DataType.TEXT, DataType.TIMESTAMPTZ, DataType.GEOMETRY):
        if arr.dtype.kind != "U":
            raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs strings")
        return arr.astype(object)
    if dt == DataType.JSON or f.is_dynamic:
        if arr.dtype.kind not in "US":
            raise errors.InvalidParameter(f"the numpy file {path} of the JSON field {f.name} must hold JSON strings")
        out = np.empty(len(arr), object)
        try:
            out[:] = [json.loads(s) for s in arr.tolist()]
        except ValueError as e:
            raise errors.InvalidParameter(f"the numpy file {path}: invalid JSON: {e}") from None
        return out
    if dt == DataType.BOOL:
        if arr.dtype != np.bool_:
            raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs bool")
        return arr
    if dt in (DataType.FLOAT, DataType.DOUBLE):
        if arr.dtype.kind not in "fiu":
            raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs numbers")
        return arr.astype(np.float32 if dt == DataType.FLOAT else np.float64)
    if dt in (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64):
        if arr.dtype.kind not in "iu":
            raise errors.InvalidParameter(f"the numpy file {path} holds {arr.dtype}, the field {f.name} needs integers")
        target = _INTS[dt]
        info = np.iinfo(target)
        if len(arr) and (arr.min() < info.min or arr.max() > info.max):
            raise errors.InvalidParameter(f"the numpy file {path}: a value of the field {f.name} is out of the "
                                          f"range of {np.dtype(target).name}")
        return arr.astype(target)
    raise errors.InvalidParameter(f"the field {f.name} of type {dt.name} cannot be imported from numpy ({path})")


def row_batches(n: int, row_bytes: int) -> Iterator[tuple[int, int]]:
    step = max(1, min(n, BATCH_BYTES // max(1, row_bytes)))
    for start in range(0, n, step):
        yield start, min(n, start + step)

"""``S3ObjectStore``: the distributed ``ObjectStore`` on any S3-compatible server (boto3).

Key "a/b" is the object ``<prefix>a/b`` in one bucket, so several clusters (or test
runs) can share a bucket under different prefixes. ``put`` streams its parts: small
objects are one PutObject, larger ones a multipart upload of ``part_bytes`` pieces
(S3 makes the object visible only when the upload completes, so a reader sees the
whole object or none; a failed upload is aborted). Unlike the local store, a key may
also be a "directory" of other keys, as S3 allows.

``local_path`` needs a ``cache_dir``: it downloads the object once into the cache (named by
a hash of the key and the object's ETag, so a replaced object is fetched again) and returns
that file, which ``np.load(mmap_mode='r')`` or an index loader can map: this is how mmap works
on S3. Without a cache dir it returns None and readers ``get`` the bytes. ``put`` and the
deletes drop the key's cached copies.

Errors of the server or the network raise ``IoFailed``; a missing key on ``get``
raises ``KeyNotFound``. The boto3 client is thread-safe and shared by all threads.
"""

from __future__ import annotations

import glob
import hashlib
import os
import uuid

from vecdb.errors import IoFailed, KeyNotFound
from vecdb.storage.keys import check_object_key, check_prefix, payload_parts

_MIN_PART = 5 << 20  # S3's smallest multipart part (all but the last)
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


class S3ObjectStore:
    """The distributed ``ObjectStore`` (see module docstring). Thread-safe."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, prefix: str = "",
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None,
                 create_bucket: bool = True, part_bytes: int = 8 << 20, cache_dir: str | None = None,
                 client=None):
        import boto3
        import botocore.config
        import botocore.exceptions

        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket, self.prefix = bucket, prefix
        self._part_bytes = max(int(part_bytes), _MIN_PART)
        self._closed = False
        self.cache_dir = os.path.abspath(cache_dir) if cache_dir else None
        self._s3 = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                          max_pool_connections=32))
        if create_bucket:
            self._ensure_bucket()

    # --- helpers -------------------------------------------------------------
    def _ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except self._errors as e:
            if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise IoFailed(f"cannot reach bucket {self.bucket!r}: {e}") from e
        try:
            self._s3.create_bucket(Bucket=self.bucket)
        except self._errors as e:
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise IoFailed(f"cannot create bucket {self.bucket!r}: {e}") from e

    def _key(self, key: str) -> str:
        check_object_key(key)
        self._check_open()
        return self.prefix + key

    def _check_open(self) -> None:
        if self._closed:
            raise IoFailed("object store is closed")

    # --- ObjectStore -----------------------------------------------------------
    def put(self, key: str, data) -> None:
        k = self._key(key)
        self._evict(key)
        pending: list[memoryview] = []
        size = 0
        upload = None  # multipart upload id, once the object outgrows one part
        etags: list[dict] = []
        try:
            for part in payload_parts(data):
                while len(part):
                    take = part[: self._part_bytes - size]
                    pending.append(take)
                    size += len(take)
                    part = part[len(take):]
                    if size == self._part_bytes:
                        if upload is None:
                            upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=k)["UploadId"]
                        self._upload_part(k, upload, etags, pending)
                        pending, size = [], 0
            if upload is None:
                self._s3.put_object(Bucket=self.bucket, Key=k, Body=b"".join(pending))
                return
            if pending:
                self._upload_part(k, upload, etags, pending)
            self._s3.complete_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload,
                                               MultipartUpload={"Parts": etags})
            upload = None
        except self._errors as e:
            raise IoFailed(f"cannot write object {key!r}: {e}") from e
        finally:
            if upload is not None:
                try:
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload)
                except self._errors:
                    pass

    def _upload_part(self, k: str, upload: str, etags: list[dict], pending: list[memoryview]) -> None:
        n = len(etags) + 1
        r = self._s3.upload_part(Bucket=self.bucket, Key=k, UploadId=upload, PartNumber=n, Body=b"".join(pending))
        etags.append({"ETag": r["ETag"], "PartNumber": n})

    def get(self, key: str) -> bytes:
        k = self._key(key)
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=k)["Body"].read()
        except self._errors as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise KeyNotFound(f"object not found: {key}") from None
            raise IoFailed(f"cannot read object {key!r}: {e}") from e

    def exists(self, key: str) -> bool:
        k = self._key(key)
        try:
            self._s3.head_object(Bucket=self.bucket, Key=k)
            return True
        except self._errors as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise IoFailed(f"cannot stat object {key!r}: {e}") from e

    def local_path(self, key: str) -> str | None:
        k = self._key(key)
        if self.cache_dir is None:
            return None
        for attempt in range(3):  # the object may be replaced between the HEAD and the download
            try:
                etag = self._s3.head_object(Bucket=self.bucket, Key=k)["ETag"].strip('"')
            except self._errors as e:
                if _code(e) in ("NoSuchKey", "404", "NotFound"):
                    raise KeyNotFound(f"object not found: {key}") from None
                raise IoFailed(f"cannot stat object {key!r}: {e}") from e
            stem = self._cache_stem(key)
            path = f"{stem}-{etag}"
            if os.path.isfile(path):
                return path
            tmp = f"{stem}.tmp-{uuid.uuid4().hex}"
            try:
                os.makedirs(os.path.dirname(stem), exist_ok=True)
                body = self._s3.get_object(Bucket=self.bucket, Key=k, IfMatch=f'"{etag}"')["Body"]
                with open(tmp, "wb") as f:
                    for chunk in body.iter_chunks(1 << 20):
                        f.write(chunk)
                os.replace(tmp, path)
            except self._errors as e:
                if _code(e) in ("PreconditionFailed", "412") and attempt < 2:
                    continue
                raise IoFailed(f"cannot fetch object {key!r} into the cache: {e}") from e
            except OSError as e:
                raise IoFailed(f"cannot write the cache copy of {key!r}: {e}") from e
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            for old in glob.glob(glob.escape(stem) + "-*"):
                if old != path:
                    _unlink(old)
            return path
        raise IoFailed(f"object {key!r} kept changing while it was fetched")

    def _cache_stem(self, key: str) -> str:
        assert self.cache_dir is not None, "only with a cache"
        h = hashlib.sha1(key.encode()).hexdigest()
        return os.path.join(self.cache_dir, h[:2], h)

    def evict_local(self, keys) -> None:
        """Drop the cached copies of ``keys`` (no error for those not cached), which stay in S3: a
        reader that is done with them (a query node's compacted-away segments). Mappings already
        open on a copy stay valid (the file goes when the last one closes)."""
        for key in keys:
            self._evict(key)

    def _evict(self, key: str) -> None:
        if self.cache_dir is not None:
            for old in glob.glob(glob.escape(self._cache_stem(key)) + "-*"):
                _unlink(old)

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        self._check_open()
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                keys.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", ()))
        except self._errors as e:
            raise IoFailed(f"cannot list objects under {prefix!r}: {e}") from e
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        k = self._key(key)
        self._evict(key)
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=k)
        except self._errors as e:
            if _code(e) not in ("NoSuchKey", "404"):
                raise IoFailed(f"cannot delete object {key!r}: {e}") from e

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for key in keys:
            self._evict(key)
        try:
            for i in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": self.prefix + k} for k in keys[i:i + _DELETE_BATCH]]
                r = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if r.get("Errors"):
                    raise IoFailed(f"cannot delete objects under {prefix!r}: {r['Errors'][:3]}")
        except self._errors as e:
            raise IoFailed(f"cannot delete objects under {prefix!r}: {e}") from e

    def close(self) -> None:
        self._closed = True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)  # a reader that mapped it keeps its pages
    except OSError:
        pass


def _code(e) -> str | None:
    return getattr(e, "response", {}).get("Error", {}).get("Code")

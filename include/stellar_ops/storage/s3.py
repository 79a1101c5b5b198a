"""The backups bucket, over a boto3 S3 client (from ``S3Hook.get_conn()`` or the CLI's own).

Errors are translated into one-line messages that name the bucket and the key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stellar_ops.core.errors import BackupError, PrerequisiteError

if TYPE_CHECKING:
    from botocore.config import Config

log = logging.getLogger(__name__)

MIB = 1 << 20


def client_config(base: Config | None = None) -> Config:
    """``base`` (a botocore ``Config``, say the connection's) with the options backups upload with.

    Every part carries a ``Content-MD5`` that the client signs and the server checks, so the
    payload's SHA-256 (which botocore computes for every request body over plain HTTP, and the
    server recomputes) and botocore's default CRC32 only hash each byte again on both sides.
    The connection's other ``s3`` options, such as ``addressing_style``, are kept.
    """
    from botocore.config import Config

    base = base if base is not None else Config()
    s3: Any = {**(getattr(base, "s3", None) or {}), "payload_signing_enabled": False}
    return base.merge(Config(request_checksum_calculation="when_required", s3=s3))


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def describe_error(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return " ".join(str(exc).split())


class S3Store:
    """One bucket; ``encryption`` is ``none``, ``AES256`` or ``aws:kms`` (with ``kms_key_id``)."""

    def __init__(
        self, client: Any, bucket: str, *, encryption: str = "none", kms_key_id: str | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self._bucket_seen = False  # check_bucket passed once: a 404 is then a missing object
        self.write_args: dict[str, str] = {}
        if encryption != "none":
            self.write_args["ServerSideEncryption"] = encryption
        if encryption == "aws:kms" and kms_key_id:
            self.write_args["SSEKMSKeyId"] = kms_key_id

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _fail(self, action: str, key: str | None, exc: Exception) -> BackupError:
        where = self.url(key) if key else f"bucket {self.bucket!r}"
        return BackupError(f"S3 {action} of {where} failed: {describe_error(exc)}")

    def check_bucket(self) -> None:
        """The bucket exists and we may read it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise PrerequisiteError(
                    f"S3 bucket {self.bucket!r} does not exist: create it or fix backup.bucket"
                ) from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise PrerequisiteError(
                    f"S3 bucket {self.bucket!r} refused our credentials ({code}): check the S3 connection"
                ) from None
            raise PrerequisiteError(
                f"cannot reach S3 bucket {self.bucket!r}: {describe_error(exc)}"
            ) from None

    def check_writable(self, probe_key: str) -> None:
        """Write and delete a small probe object."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe_key, Body=b"probe", **self.write_args)
            self.client.delete_object(Bucket=self.bucket, Key=probe_key)
        except Exception as exc:
            raise PrerequisiteError(
                f"S3 bucket {self.bucket!r} is not writable ({describe_error(exc)}): check the "
                "connection's permissions and backup.server_side_encryption"
            ) from None

    def list_objects(self, prefix: str, *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix``; with ``recursive=False``, only those directly under it."""
        paginator = self.client.get_paginator("list_objects_v2")
        options = {} if recursive else {"Delimiter": "/"}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **options):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], int(item["Size"]), item["LastModified"])
        except Exception as exc:
            raise self._fail("listing", prefix, exc) from None

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata; None when there is no such object. A HEAD answers a missing
        bucket with the same bare 404 as a missing object: the first 404 checks the bucket, so a
        wrong ``backup.bucket`` fails naming it instead of reading as "nothing stored yet"."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                if not self._bucket_seen:
                    self.check_bucket()
                    self._bucket_seen = True
                return None
            raise self._fail("HEAD", key, exc) from None

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def put_bytes(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ContentMD5=_content_md5(body),
                **self.write_args,
            )
        except Exception as exc:
            raise self._fail("upload", key, exc) from None

    def put_json(self, key: str, document: Any) -> None:
        body = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        self.put_bytes(key, body, "application/json")

    def get_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:
            raise self._fail("download", key, exc) from None

    def get_json(self, key: str) -> Any:
        try:
            return json.loads(self.get_bytes(key))
        except json.JSONDecodeError as exc:
            raise BackupError(f"{self.url(key)} is not valid JSON: {exc.msg}") from None

    def iter_chunks(self, key: str, chunk_size: int = 4 * MIB) -> Iterator[bytes]:
        """Stream an object's bytes without holding it in memory."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            raise self._fail("download", key, exc) from None

    def copy(self, source: str, destination: str, metadata: dict[str, str] | None = None) -> None:
        """Server-side copy (multipart for large objects), replacing ``destination``'s metadata."""
        extra: dict[str, Any] = dict(self.write_args)
        if metadata is not None:
            extra["Metadata"] = metadata
            extra["MetadataDirective"] = "REPLACE"
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, destination, ExtraArgs=extra
            )
        except Exception as exc:
            raise self._fail(f"copy to {destination!r}", source, exc) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._fail("delete", key, exc) from None

    def unfinished_uploads(self, prefix: str) -> list[dict[str, Any]]:
        try:
            response = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        except Exception as exc:
            raise self._fail("listing multipart uploads", prefix, exc) from None
        return list(response.get("Uploads", []))

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            raise self._fail("abort of the multipart upload", key, exc) from None

    def multipart(
        self, key: str, *, part_size: int, max_in_flight: int, metadata: dict[str, str] | None = None
    ) -> MultipartUpload:
        return MultipartUpload(self, key, part_size=part_size, max_in_flight=max_in_flight, metadata=metadata)


def _content_md5(body: bytes | bytearray) -> str:
    """The ``Content-MD5`` header of ``body``: the server refuses the request if they differ."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


class MultipartUpload:
    """Write bytes as they come; parts go up on background threads, at most ``max_in_flight`` at once.

    Parts are filled in place in a small pool of reused buffers (``max_in_flight + 1`` of them),
    so memory stays flat at about ``part_size * (max_in_flight + 1)`` whatever the backup's size,
    and a writer that outruns S3 waits for a buffer to come back. Nothing is visible under the key
    until :meth:`complete`; :meth:`abort` discards every uploaded part.

    The stored bytes are the bytes sent: every part carries its ``Content-MD5``, which the server
    checks before it accepts the part (a part changed on the way is refused with ``BadDigest``),
    and :meth:`complete` first compares the server's list of parts (numbers, sizes, ETags) with
    what was sent, then the completed object's size.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        *,
        part_size: int,
        max_in_flight: int,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if part_size < 5 * MIB:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.store = store
        self.key = key
        self.part_size = part_size
        self._buffers_made = 0
        self._max_buffers = max_in_flight + 1
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._current: bytearray | None = None
        self._fill = 0
        self._parts: dict[int, str] = {}
        self._sent: dict[int, tuple[int, str]] = {}  # part number -> (size, md5 hex)
        self._futures: list[Future[None]] = []
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="s3-part")
        self._error: Exception | None = None
        self.bytes_written = 0
        try:
            response = store.client.create_multipart_upload(
                Bucket=store.bucket,
                Key=key,
                ContentType="application/octet-stream",
                Metadata=metadata or {},
                **store.write_args,
            )
        except Exception as exc:
            self._pool.shutdown(wait=False)
            raise store._fail("start of the multipart upload", key, exc) from None
        self.upload_id: str = response["UploadId"]

    def _buffer(self) -> bytearray:
        if self._buffers_made < self._max_buffers and self._free.empty():
            self._buffers_made += 1
            return bytearray(self.part_size)
        while True:  # every buffer is in flight: wait for one, but notice a failed upload
            try:
                return self._free.get(timeout=1)
            except queue.Empty:
                if self._error:
                    raise self._error from None

    def write(self, data: bytes) -> None:
        if self._error:
            raise self._error
        view = memoryview(data)
        self.bytes_written += len(view)
        while view:
            if self._current is None:
                self._current = self._buffer()
                self._fill = 0
            taken = min(len(view), self.part_size - self._fill)
            self._current[self._fill : self._fill + taken] = view[:taken]
            self._fill += taken
            view = view[taken:]
            if self._fill == self.part_size:
                self._submit(self._current)
                self._current = None

    def _submit(self, buffer: bytearray) -> None:
        if self._error:
            raise self._error
        number = len(self._futures) + 1
        self._futures.append(self._pool.submit(self._upload_part, number, buffer))

    def _upload_part(self, number: int, buffer: bytearray) -> None:
        try:
            md5 = hashlib.md5(buffer, usedforsecurity=False).digest()
            response = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=buffer,
                ContentMD5=base64.b64encode(md5).decode(),
            )
            self._sent[number] = (len(buffer), md5.hex())
            self._parts[number] = response["ETag"]
        except Exception as exc:
            self._error = self.store._fail(f"upload of part {number}", self.key, exc)
            raise
        finally:
            self._free.put(buffer)

    def complete(self) -> None:
        if self._current is not None and (self._fill or not self._futures):
            # The short last part goes up from its own buffer, cut to length in place: no copy.
            del self._current[self._fill :]
            self._submit(self._current)
            self._current = None
        elif not self._futures:
            self._submit(bytearray())
        for future in self._futures:
            future.exception()
        self._pool.shutdown(wait=True)
        if self._error:
            raise self._error
        self._check_part_list()
        parts = [{"PartNumber": n, "ETag": self._parts[n]} for n in sorted(self._parts)]
        try:
            self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            raise self.store._fail("completion of the multipart upload", self.key, exc) from None
        head = self.store.head(self.key)
        if head is None or int(head["ContentLength"]) != self.bytes_written:
            size = None if head is None else int(head["ContentLength"])
            raise BackupError(
                f"the completed {self.store.url(self.key)} holds {size} bytes, {self.bytes_written} were sent"
            )

    def _check_part_list(self) -> None:
        """The server holds exactly the parts sent: the same numbers and sizes, and the same MD5s
        where its ETags are MD5s (with SSE-KMS they are not)."""
        listed: dict[int, tuple[int, str]] = {}
        try:
            paginator = self.store.client.get_paginator("list_parts")
            pages = paginator.paginate(Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id)
            for page in pages:
                for part in page.get("Parts", []):
                    listed[int(part["PartNumber"])] = (int(part["Size"]), str(part["ETag"]).strip('"'))
        except Exception as exc:
            raise self.store._fail("listing of the uploaded parts", self.key, exc) from None
        compare_md5 = self.store.write_args.get("ServerSideEncryption") != "aws:kms"
        for number in sorted(set(listed) | set(self._sent)):
            sent, held = self._sent.get(number), listed.get(number)
            if sent is None or held is None or sent[0] != held[0] or (compare_md5 and sent[1] != held[1]):
                raise BackupError(
                    f"part {number} of {self.store.url(self.key)} differs on the server ({held}) from what "
                    f"was sent ({sent}): the upload is not completed"
                )

    def abort(self) -> str | None:
        """Discard the upload; returns a message if the server could not be told (it may be down)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
        except Exception as exc:
            return (
                f"could not abort multipart upload {self.upload_id} of {self.store.url(self.key)} "
                f"({describe_error(exc)}); the next try or retention aborts it"
            )
        return None

"""The images bucket: each method is one S3 call, or none (presigning is local)."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from app.config import Settings
from app.domain.errors import Unavailable
from app.domain.records import ImageRecord, VariantState
from app.domain.variants import VariantSpec
from app.storage.clients import (
    MISSING_KEYS,
    PRECONDITION_FAILED,
    AwsClients,
    aws_call,
    error_code,
    unless_refused,
)
from app.storage.items import (
    PENDING_TAGGING,
    image_of,
    object_key,
    variant_key,
    variant_keys,
)
from app.storage.resources import PENDING_TAG, USERS_PREFIX
from app.storage.signing import GetUrlSigner

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import TagTypeDef

_CONTENT_RANGE = re.compile(r"^bytes \d+-\d+/(\d+)$")
# A single-part object's ETag is the MD5 of its bytes; S3 sends none with the InvalidRange
# it answers for a ranged GET of an empty object.
EMPTY_ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'


@dataclass(frozen=True, slots=True)
class UploadedObject:
    """An uploaded original as read: its bytes (`whole`, or only the first ones), and what
    S3 says about all of it. The ETag names exactly these bytes: a delete conditioned on
    it can never remove bytes uploaded since."""

    data: bytes
    total_size: int
    content_type: str
    etag: str
    whole: bool


class ImageObjects:
    """Every "is it there?" goes through `_missing`: S3 answers 403 rather than 404 for a
    key that does not exist unless the caller may list the bucket."""

    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._bucket = settings.bucket
        self._variants = settings.variants
        self._browser_cache_seconds = settings.download_url_ttl_seconds
        self._signer = GetUrlSigner(clients, settings.bucket, settings.variant_url_window_seconds)

    def _missing(self, image_id: str, exc: ClientError) -> bool:
        """Whether a failed call on an image's object means the object is not there.
        404 says so. 403 is what S3 answers for a missing key to a caller without
        s3:ListBucket, and nothing shows the policy's s3:prefix condition holds for that
        implicit check: so ask, with a listing under the key's exact prefix (which the
        condition allows). Present, or not allowed to list: a real refusal, re-raised."""
        code = error_code(exc)
        if code in MISSING_KEYS:
            return True
        if code not in ("AccessDenied", "403"):
            return False
        key = object_key(image_id)
        listed = self._clients.s3.list_objects_v2(Bucket=self._bucket, Prefix=key, MaxKeys=1)
        return all(found["Key"] != key for found in listed.get("Contents", []))

    def variant_urls(self, keys: Sequence[str], expires_in: int) -> list[str]:
        """Presigned GET URLs of variants' objects, cheap enough for a whole page."""
        return self._signer.urls(list(keys), expires_in)

    def read_prefix(self, image_id: str, max_bytes: int) -> UploadedObject | None:
        """The object's first `max_bytes`, its total size, type and ETag; None if not
        uploaded.

        One ranged GET does the work of HeadObject + GetObject: Content-Range carries the
        total size, and the whole object is never read.
        """
        with aws_call():
            try:
                response = self._clients.s3.get_object(
                    Bucket=self._bucket, Key=object_key(image_id), Range=f"bytes=0-{max_bytes - 1}"
                )
            except ClientError as exc:
                if error_code(exc) == "InvalidRange":  # a zero-byte object has no byte 0
                    return UploadedObject(b"", 0, "", EMPTY_ETAG, whole=True)
                if self._missing(image_id, exc):
                    return None
                raise
            with response["Body"] as body:
                data = body.read(max_bytes)
        match = _CONTENT_RANGE.fullmatch(response.get("ContentRange", ""))
        total = int(match.group(1)) if match else response["ContentLength"]
        return UploadedObject(
            data, total, response.get("ContentType", ""), response["ETag"], len(data) == total
        )

    def read_range(self, image_id: str, etag: str, offset: int, length: int) -> bytes | None:
        """Bytes [offset, offset + length) of the original, only if it still holds the
        bytes with this ETag (If-Match): None if it does not, or is gone."""
        with aws_call():
            try:
                response = self._clients.s3.get_object(
                    Bucket=self._bucket,
                    Key=object_key(image_id),
                    Range=f"bytes={offset}-{offset + length - 1}",
                    IfMatch=etag,
                )
            except ClientError as exc:
                if error_code(exc) in MISSING_KEYS | {PRECONDITION_FAILED}:
                    return None
                raise
            with response["Body"] as body:
                data: bytes = body.read(length)
        return data

    def read(self, image_id: str, max_bytes: int, prefix_bytes: int) -> UploadedObject | None:
        """The whole object (for the worker, which decodes it); past `max_bytes`, only its
        first `prefix_bytes` (enough to verify it, never to decode it). None if it is
        not there."""
        with aws_call():
            try:
                response = self._clients.s3.get_object(
                    Bucket=self._bucket, Key=object_key(image_id)
                )
            except ClientError as exc:
                if self._missing(image_id, exc):
                    return None
                raise
            with response["Body"] as body:
                size = response["ContentLength"]
                data = body.read() if size <= max_bytes else body.read(prefix_bytes)
        return UploadedObject(
            data, size, response.get("ContentType", ""), response["ETag"], len(data) == size
        )

    def originals(self, after: str, most: int) -> tuple[list[tuple[str, str]], str | None]:
        """The originals (image id, ETag) among up to `most` objects in key order after
        the key `after` (variants are listed too, and skipped), and the key to go on after
        (None: there are no more). One listing call."""
        with aws_call():
            listed = self._clients.s3.list_objects_v2(
                Bucket=self._bucket, Prefix=USERS_PREFIX, StartAfter=after, MaxKeys=most
            )
        found = [
            (image_id, item["ETag"])
            for item in listed.get("Contents", [])
            if (image_id := image_of(item["Key"]))
        ]
        contents = listed.get("Contents", [])
        return found, contents[-1]["Key"] if listed.get("IsTruncated") and contents else None

    def put_variant(self, image_id: str, name: str, spec: VariantSpec, data: bytes) -> None:
        with aws_call():
            self._clients.s3.put_object(
                Bucket=self._bucket,
                Key=variant_key(image_id, name, spec),
                Body=data,
                ContentType=spec.content_type,
                # A variant never changes under its key, but a browser must not keep it
                # longer than the URL that fetched it lives: every URL handed out (S3's
                # or CloudFront's) lives at least this long from any moment it is served.
                CacheControl=f"private, max-age={self._browser_cache_seconds}",
            )

    def tag_ready(self, image_id: str, also: tuple[str, str] | None = None) -> bool:
        """Retag the object `state=ready`, out of the lifecycle rule's reach, keeping the
        tag `also` (PutObjectTagging replaces the whole set). Called only once the record
        is ready (a refused confirm must leave it reapable); if this never happens, the
        sweep does it. False if the object is gone (deleted meanwhile)."""
        key, _ = PENDING_TAG
        tags: list[TagTypeDef] = [{"Key": key, "Value": "ready"}]
        if also is not None:
            tags.append({"Key": also[0], "Value": also[1]})
        with aws_call():
            try:
                self._clients.s3.put_object_tagging(
                    Bucket=self._bucket, Key=object_key(image_id), Tagging={"TagSet": tags}
                )
            except ClientError as exc:
                if self._missing(image_id, exc):
                    return False
                raise
        return True

    def put(self, image_id: str, data: bytes, content_type: str) -> bool:
        """What a client's presigned PUT does, for bytes the service received itself.
        False if the object already exists: bytes are written once, never replaced."""
        written = unless_refused(
            lambda: self._clients.s3.put_object(
                Bucket=self._bucket,
                Key=object_key(image_id),
                Body=data,
                ContentType=content_type,
                Tagging=PENDING_TAGGING,
                IfNoneMatch="*",
            ),
            PRECONDITION_FAILED,
        )
        return written is not None

    def delete_original(self, image_id: str, etag: str) -> bool:
        """Delete the original only if it still holds the bytes with this ETag: a verdict on
        bytes read earlier can never remove a newer upload. False if it does not (or is
        gone), or if this S3 cannot delete conditionally: LocalStack answers If-Match on
        a delete with NotImplemented (AWS takes it since 2025-09). The bytes then stay,
        refused, until the upload is given up; never deleted unchecked."""
        deleted = unless_refused(
            lambda: self._clients.s3.delete_object(
                Bucket=self._bucket, Key=object_key(image_id), IfMatch=etag
            ),
            MISSING_KEYS | {PRECONDITION_FAILED, "NotImplemented"},
        )
        return deleted is not None

    def delete(self, record: ImageRecord) -> None:
        """The original and every variant it may have, in one call. Deleting a missing key
        succeeds, which makes retries free of special cases."""
        self._delete_keys(
            [object_key(record.id), *variant_keys(record.id, record.variants, self._variants)]
        )

    def delete_made(self, image_id: str, made: Mapping[str, VariantState]) -> None:
        """The objects of these variants as made (their definitions recorded with them)."""
        keys = variant_keys(image_id, made, {})
        if keys:
            self._delete_keys(keys)

    def delete_variants(self, record: ImageRecord | None, image_id: str) -> None:
        """The variants alone: all an image (or, with no record, its id) may have."""
        made = record.variants if record is not None else {}
        self._delete_keys(variant_keys(image_id, made, self._variants))

    def _delete_keys(self, keys: list[str]) -> None:
        with aws_call():
            response = self._clients.s3.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        errors = response.get("Errors", [])
        if errors:  # DeleteObjects answers 200 and lists what it could not delete
            codes = ",".join(sorted({str(error.get("Code")) for error in errors}))
            raise Unavailable(f"Storage could not delete every object, retry ({codes})")

    def presign_put(
        self, image_id: str, content_type: str, size: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A PUT URL and exactly the headers it is signed with (no round trip).

        S3 itself refuses a PUT of another type or size (both are signed), one that drops
        the pending tag, and, through the signed `If-None-Match: *`, any PUT once the
        object exists: the bytes confirm verified can never be replaced, by a client's
        retry or anyone holding the URL, and a ready object is never retagged pending.
        """
        url = self._clients.s3_upload.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": object_key(image_id),
                "ContentType": content_type,
                "ContentLength": size,
                "Tagging": PENDING_TAGGING,
                "IfNoneMatch": "*",
            },
            ExpiresIn=expires_in,
        )
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(size),
            "x-amz-tagging": PENDING_TAGGING,
            "If-None-Match": "*",
        }
        return url, headers

    def original_url(
        self, image_id: str, content_type: str, content_disposition: str, expires_in: int
    ) -> str:
        # The response's type is fixed to the verified one, whatever the object says.
        return self._clients.s3_presign.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": object_key(image_id),
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition,
            },
            ExpiresIn=expires_in,
        )

"""The images bucket: each method is one S3 call, or none (presigning is local)."""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from botocore.exceptions import ClientError

from app.config import Settings
from app.errors import Unavailable
from app.storage.clients import ALREADY_EXISTS, AwsClients, aws_call, error_code, unless_refused
from app.storage.items import PENDING_TAGGING, every_key, object_key, variant_key
from app.storage.resources import PENDING_TAG
from app.storage.signing import GetUrlSigner

_CONTENT_RANGE = re.compile(r"^bytes \d+-\d+/(\d+)$")


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """The first bytes of an uploaded object and what S3 says about the whole."""

    data: bytes
    total_size: int
    content_type: str


class ImageObjects:
    """Every "is it there?" goes through `_missing`: S3 answers 403 rather than 404 for a
    key that does not exist unless the caller may list the bucket."""

    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._bucket = settings.bucket
        self._signer = GetUrlSigner(clients, settings.bucket, settings.variant_url_window_seconds)

    def _missing(self, image_id: str, exc: ClientError) -> bool:
        """Whether a failed call on an image's object means the object is not there.
        404 says so. 403 is what S3 answers for a missing key to a caller without
        s3:ListBucket, and nothing shows the policy's s3:prefix condition holds for that
        implicit check: so ask, with a listing under the key's exact prefix (which the
        condition allows). Present, or not allowed to list: a real refusal, re-raised."""
        code = error_code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return True
        if code not in ("AccessDenied", "403"):
            return False
        key = object_key(image_id)
        listed = self._clients.s3.list_objects_v2(Bucket=self._bucket, Prefix=key, MaxKeys=1)
        return all(found["Key"] != key for found in listed.get("Contents", []))

    def variant_urls(self, wanted: Sequence[tuple[str, str]], expires_in: int) -> list[str]:
        """GET URLs of (image id, variant name) pairs, cheap enough for a whole page."""
        return self._signer.urls([variant_key(*pair) for pair in wanted], expires_in)

    def read_head(self, image_id: str, max_bytes: int) -> ObjectHead | None:
        """The object's first `max_bytes`, its total size and type; None if not uploaded.

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
                    return ObjectHead(b"", 0, "")
                if self._missing(image_id, exc):
                    return None
                raise
            with response["Body"] as body:
                data = body.read(max_bytes)
        match = _CONTENT_RANGE.match(response.get("ContentRange", ""))
        total = int(match.group(1)) if match else response["ContentLength"]
        return ObjectHead(data, total, response.get("ContentType", ""))

    def read(self, image_id: str, max_bytes: int) -> ObjectHead | None:
        """The whole object (for the worker, which decodes it), refused past `max_bytes`
        before a byte is read; None if it is not there."""
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
                data = body.read(max_bytes + 1) if size <= max_bytes else b""
        return ObjectHead(data, size, response.get("ContentType", ""))

    def put_variant(self, image_id: str, name: str, data: bytes) -> None:
        with aws_call():
            self._clients.s3.put_object(
                Bucket=self._bucket,
                Key=variant_key(image_id, name),
                Body=data,
                ContentType="image/webp",
                # A variant never changes under its key: browsers may keep it.
                CacheControl="private, max-age=31536000, immutable",
            )

    def tag_ready(self, image_id: str) -> bool:
        """Retag the object `state=ready`, out of the lifecycle rule's reach. Called only
        once the record is ready (a refused confirm must leave it reapable); if this never
        happens, the sweep does it. False if the object is gone (deleted meanwhile)."""
        key, _ = PENDING_TAG
        with aws_call():
            try:
                self._clients.s3.put_object_tagging(
                    Bucket=self._bucket,
                    Key=object_key(image_id),
                    Tagging={"TagSet": [{"Key": key, "Value": "ready"}]},
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
            ALREADY_EXISTS,
        )
        return written is not None

    def delete(self, image_id: str) -> None:
        """The original and its variants, in one call. Deleting a missing key succeeds,
        which makes retries free of special cases."""
        with aws_call():
            response = self._clients.s3.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in every_key(image_id)], "Quiet": True},
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
        url = self._clients.s3_presign.generate_presigned_url(
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

    def presign_get(
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

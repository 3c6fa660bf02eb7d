"""What can go wrong, as the service reports it: a message for people (`detail`) and a
stable code for programs (`code`). These know nothing of HTTP: app/http/problems.py is
the one place that turns them into answers, and the worker and the commands raise and
catch them just the same."""

from enum import StrEnum


class Code(StrEnum):
    """Every error code the API answers with, each with its HTTP status in
    app/http/problems.py. Codes are a contract: add one, never rename one."""

    NOT_FOUND = "not_found"  # no such image (or not yours: the two look the same)
    NOT_UPLOADED = "not_uploaded"  # confirm before the bytes were PUT
    NOT_READY = "not_ready"  # a download of an image not confirmed yet
    REJECTED = "rejected"  # a download of an upload whose bytes were refused
    VARIANT_NOT_READY = "variant_not_ready"  # a variant not made yet (retry), or failed
    IMAGE_DELETED = "image_deleted"  # an Idempotency-Key replay of an image deleted since
    UPLOAD_EXPIRED = "upload_expired"  # an Idempotency-Key replay past the upload deadline
    INVALID_IMAGE = "invalid_image"  # the bytes are not the image they were declared as
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # the same key with another body
    INVALID_REQUEST = "invalid_request"  # a field, parameter or header out of bounds
    INVALID_BODY = "invalid_body"  # a body that is not what the route reads (not JSON)
    INVALID_CURSOR = "invalid_cursor"  # a cursor this API did not issue for this query
    TOO_LARGE = "too_large"  # a file over the size limit
    BODY_TOO_LARGE = "body_too_large"  # a request body over its limit, refused unread
    QUOTA_IMAGES = "quota_images"  # the user's image quota is used up
    QUOTA_BYTES = "quota_bytes"  # the user's storage quota has no room for it
    RATE_LIMITED = "rate_limited"  # too many unconfirmed uploads at once: wait, retry
    UNAUTHORIZED = "unauthorized"  # a missing, invalid or expired token
    METHOD_NOT_ALLOWED = "method_not_allowed"  # the path exists, not with this method
    UNAVAILABLE = "unavailable"  # storage is busy or unreachable: retry after a while
    CDN_COOKIES_OFF = "cdn_cookies_off"  # this deployment offers no CDN cookies: use URLs
    NOT_SCANNED = "not_scanned"  # its malware scan has not passed yet: wait, retry
    SCAN_FAILED = "scan_failed"  # the scanner could not judge the bytes: never served
    INFECTED = "infected"  # a scan found malware in the bytes: removed, never served
    INTERNAL = "internal"  # a bug: logged, never explained to the caller


class ServiceError(Exception):
    """Base of every error the service reports on purpose. `retry_after`: seconds a
    client should wait before trying again, when waiting helps."""

    code = Code.INTERNAL
    retry_after: int | None = None

    def __init__(
        self, detail: str, *, code: Code | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after


class NotFound(ServiceError):
    code = Code.NOT_FOUND


class Conflict(ServiceError):
    """The request is fine, the image is not in a state that allows it (yet)."""

    code = Code.NOT_READY


class InvalidImage(ServiceError):
    code = Code.INVALID_IMAGE


class InvalidRequest(ServiceError):
    """A value the route's schema could not check (it depends on the configuration)."""

    code = Code.INVALID_REQUEST


class IdempotencyMismatch(ServiceError):
    """An Idempotency-Key reused with a different request (Stripe's convention: 422)."""

    code = Code.IDEMPOTENCY_KEY_REUSED


class TooLarge(ServiceError):
    code = Code.TOO_LARGE


class TooMany(ServiceError):
    """A per-user count is used up: images, or unconfirmed uploads at once."""

    code = Code.QUOTA_IMAGES


class BadCursor(ServiceError):
    code = Code.INVALID_CURSOR


class Unauthorized(ServiceError):
    code = Code.UNAUTHORIZED


class Unavailable(ServiceError):
    """AWS throttled us or could not be reached; the client should retry later."""

    code = Code.UNAVAILABLE
    retry_after = 1


def image_not_found() -> NotFound:
    # One message for "missing" and "someone else's": the two must be indistinguishable.
    return NotFound("Image not found")


def image_infected(reason: str | None) -> Conflict:
    # Whatever is asked of an infected image but a delete: never "PUT the bytes again".
    return Conflict(
        f"{reason or 'Malware found'}: the bytes were removed and are never served; "
        "delete the image",
        code=Code.INFECTED,
    )

"""The image API: thin routes over ImageService. Every route needs a bearer token.

Routes are `async` and hand only the blocking service call (boto3) to the threadpool:
a plain `def` route costs a second thread hop, FastAPI validating its response there
too, which measured as most of the service's per-request overhead (docs/benchmarks.md).
Under Lambda even that hop goes: see `_images`.
"""

from collections.abc import Callable
from typing import Annotated, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

import orjson
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from app.domain.errors import Code
from app.domain.formats import FORMATS, guess
from app.http.auth import UserId
from app.http.problems import responses
from app.images.models import (
    CreateImageRequest,
    CreateImageResponse,
    DownloadLink,
    Image,
    ImageId,
    ImageList,
    ListQuery,
)
from app.images.service import ORIGINAL, ImageService

P = ParamSpec("P")
R = TypeVar("R")


class Blocking(Protocol):
    async def __call__(self, call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...


async def _inline(call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    return call(*args, **kwargs)


class ServiceCalls:
    """The image service, each blocking call run the way this server must: `await
    images(ImageService.get, user, image_id)`. One dependency rather than the service
    and the runner apart: each dependency costs FastAPI about 9 us a request."""

    __slots__ = ("_run", "service")

    def __init__(self, service: ImageService, run: Blocking) -> None:
        self.service = service
        self._run = run

    async def __call__(
        self, method: Callable[Concatenate[ImageService, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        # Looked up on the service by name, as `service.get(...)` would be: a method
        # replaced on the object (a test's patch) is the one called.
        bound: Callable[P, R] = getattr(self.service, method.__name__)
        return await self._run(bound, *args, **kwargs)


# async: FastAPI runs a plain `def` dependency in its threadpool, one thread hop each.
async def _images(request: Request) -> ServiceCalls:
    """Under Lambda (Mangum puts the event in the scope) an environment serves one request
    at a time, so nothing could use the event loop meanwhile; and anyio starts a new
    worker thread for every invocation there (its threads end with their root task),
    which measured as most of a warm request's cost: calls run inline. Under uvicorn,
    the threadpool keeps the loop serving other requests."""
    service: ImageService = request.app.state.services.images
    if "aws.event" in request.scope:
        return ServiceCalls(service, _inline)
    # Starlette's signature is Blocking's; mypy cannot match a generic callable to it.
    return ServiceCalls(service, run_in_threadpool)  # type: ignore[arg-type]


FORMAT_LABELS = ", ".join(format_.label for format_ in FORMATS)
# What a client sends when it does not know (or say) the type of a file part.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def _declared_type(part_type: str | None, data: bytes) -> str:
    """The part's type, or, when it is missing or generic, the type its bytes carry (the
    same header checks confirm runs decide; anything else stays as sent and is refused)."""
    if (part_type or "") in GENERIC_TYPES:
        return guess(data) or (part_type or "")
    return part_type or ""


def _field_error(loc: tuple[str, ...], message: str) -> RequestValidationError:
    """The same 422 FastAPI answers for a field out of range."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def _located(exc: ValidationError, where: Literal["body", "query"]) -> RequestValidationError:
    """A model's validation errors as the 422 FastAPI answers for that part of a request."""
    return RequestValidationError(
        [{**error, "loc": (where, *error["loc"])} for error in exc.errors(include_url=False)]
    )


async def _list_query(request: Request) -> ListQuery:
    """The list filters, validated as one model. FastAPI's own query-model path inspects
    every field's annotation again on each request: 40-50 us of a list page, most of
    what its own code costs (docs/benchmarks.md). Duplicate keys: the last one wins, as
    there. The OpenAPI parameters are the model's fields (LIST_PARAMETERS)."""
    try:
        return ListQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _located(exc, "query") from exc


# What FastAPI would document for `Annotated[ListQuery, Query()]`: one optional query
# parameter per field, with the field's schema, and its 422 answer.
LIST_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": schema}
    | ({"description": schema["description"]} if "description" in schema else {})
    for name, schema in ListQuery.model_json_schema()["properties"].items()
]


Images = Annotated[ServiceCalls, Depends(_images)]
PathId = Annotated[ImageId, Path(description="Image id as returned by POST /images")]
IDEMPOTENCY_HEADER = "Idempotency-Key"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string per logical upload (a UUID): a retry with the same key "
        "and body answers the first response again (for 24 hours) instead of creating a "
        "second image; the same key with another body is 422",
    ),
]
REPLAYED = "Idempotent-Replayed"

# What every route may answer: a token refused, a request out of bounds (FastAPI's
# validation shape, with its code), storage busy. Each route adds its own.
_EVERY = (Code.UNAUTHORIZED, Code.INVALID_REQUEST, Code.UNAVAILABLE)

router = APIRouter(tags=["images"], responses=responses(*_EVERY))


def _follow(image_id: str, *operations: str) -> dict[str, Any]:
    """OpenAPI links: where a client (or a stateful fuzzer, or a generated client) goes
    next with the image id this response carries (a runtime expression)."""
    return {
        operation: {"operationId": f"images-{operation}", "parameters": {"image_id": image_id}}
        for operation in operations
    }


@router.post(
    "/images",
    name="create",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {
            "description": "The pending image, and where to PUT its bytes",
            "links": _follow("$response.body#/image/id", "confirm", "get", "download", "delete"),
        },
        **responses(
            *_EVERY,
            Code.INVALID_BODY,
            Code.IMAGE_DELETED,
            Code.UPLOAD_EXPIRED,
            Code.INFECTED,
            Code.QUOTA_BYTES,
            Code.BODY_TOO_LARGE,
            Code.IDEMPOTENCY_KEY_REUSED,
            Code.QUOTA_IMAGES,
            Code.RATE_LIMITED,
        ),
    },
)
async def create_image(
    *,
    body: CreateImageRequest,
    user: UserId,
    images: Images,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CreateImageResponse:
    """Register an image and get a presigned PUT URL to upload its bytes to."""
    limit = images.service.settings.largest_upload
    if body.size > limit:  # the schema's maximum: a field out of range, like any other
        raise _field_error(("body", "size"), f"Input should be less than or equal to {limit}")
    created, replayed = await images(ImageService.create, user, body, idempotency_key)
    if replayed:
        response.headers[REPLAYED] = "true"
    return created


@router.post(
    "/images/direct",
    name="upload-direct",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {
            "description": "The image, verified and ready",
            "links": _follow("$response.body#/id", "get", "download", "delete"),
        },
        **responses(
            *_EVERY,
            Code.INVALID_BODY,
            Code.IMAGE_DELETED,
            Code.INFECTED,
            Code.TOO_LARGE,
            Code.QUOTA_BYTES,
            Code.BODY_TOO_LARGE,
            Code.INVALID_IMAGE,
            Code.IDEMPOTENCY_KEY_REUSED,
            Code.QUOTA_IMAGES,
            Code.RATE_LIMITED,
        ),
    },
)
async def upload_direct(
    *,
    file: Annotated[UploadFile, File(description=f"One of: {FORMAT_LABELS}")],
    user: UserId,
    images: Images,
    title: Annotated[str | None, Form()] = None,
    description: Annotated[str | None, Form()] = None,
    tags: Annotated[list[str] | None, Form(description="Repeat the field per tag")] = None,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Image:
    """Upload a small image in one multipart request; verified like confirm, answered ready."""
    data = await file.read()  # bounded by the body size limit before we get here
    try:
        declared = CreateImageRequest(
            filename=file.filename or "",
            content_type=_declared_type(file.content_type, data),
            size=len(data) or 1,  # an empty file fails verification with a clear message
            title=title,
            description=description,
            tags=tags or [],
        )
    except ValidationError as exc:
        # Same 422 shape as a bad JSON body: the form is the body here.
        raise _located(exc, "body") from exc
    image, replayed = await images(
        ImageService.upload_direct, user, declared, data, idempotency_key
    )
    if replayed:
        response.headers[REPLAYED] = "true"
    return image


@router.post(
    "/images/{image_id}/confirm",
    name="confirm",
    responses=responses(
        *_EVERY, Code.NOT_FOUND, Code.NOT_UPLOADED, Code.INFECTED, Code.INVALID_IMAGE
    ),
)
async def confirm_image(image_id: PathId, user: UserId, images: Images) -> Image:
    """Verify the uploaded bytes and make the image ready; safe to repeat."""
    return await images(ImageService.confirm, user, image_id)


@router.get("/images/{image_id}", name="get", responses=responses(*_EVERY, Code.NOT_FOUND))
async def get_image(image_id: PathId, user: UserId, images: Images) -> Image:
    """Return one image's metadata."""
    return await images(ImageService.get, user, image_id)


@router.get(
    "/images/{image_id}/download",
    name="download",
    response_model=DownloadLink,
    responses={
        307: {"description": "Redirect to the presigned URL"},
        **responses(
            *_EVERY,
            Code.NOT_FOUND,
            Code.NOT_READY,
            Code.REJECTED,
            Code.VARIANT_NOT_READY,
            Code.NOT_SCANNED,
            Code.SCAN_FAILED,
            Code.INFECTED,
        ),
    },
)
async def download_image(
    *,
    image_id: PathId,
    user: UserId,
    images: Images,
    variant: Annotated[
        str,
        Query(
            description="The uploaded bytes, or a configured variant (IMAGES_VARIANTS) once "
            "it is ready"
        ),
    ] = ORIGINAL,
    redirect: Annotated[bool, Query(description="Answer 307 to the URL instead of JSON")] = False,
) -> DownloadLink | RedirectResponse:
    """Return a short-lived presigned GET URL for the image's bytes or one of its variants."""
    link = await images(ImageService.download, user, image_id, variant)
    if redirect:
        return RedirectResponse(link.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return link


@router.get(
    "/images",
    name="list",
    response_model=ImageList,
    responses=responses(*_EVERY, Code.INVALID_CURSOR),
    openapi_extra={"parameters": LIST_PARAMETERS},
)
async def list_images(
    query: Annotated[ListQuery, Depends(_list_query)], user: UserId, images: Images
) -> Response:
    """List your images, newest first, one page at a time (follow `next_cursor`)."""
    page = await images(ImageService.list, user, query)
    # Serialized as built, by orjson: validating a page again measured as most of its
    # cost, and pydantic_core's to_json takes four times orjson's time on a page.
    return Response(orjson.dumps(page), media_type="application/json")


@router.delete(
    "/images/{image_id}",
    name="delete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*_EVERY),
)
async def delete_image(image_id: PathId, user: UserId, images: Images) -> Response:
    """Delete an image's bytes and record; 204 whether or not it existed."""
    await images(ImageService.delete, user, image_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/cdn-cookies",
    name="cdn-cookies",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*_EVERY, Code.CDN_COOKIES_OFF),
)
async def cdn_cookies(user: UserId, images: Images) -> Response:
    """Set CloudFront signed cookies that let this browser read your images, and only yours."""
    signed = await images(ImageService.cdn_cookies, user)
    answer = Response(status_code=status.HTTP_204_NO_CONTENT)
    for name, value in signed.values.items():
        answer.set_cookie(
            name,
            value,
            max_age=signed.max_age,
            path=signed.path,
            domain=images.service.settings.cdn_cookie_domain,
            secure=True,
            httponly=True,
            samesite="lax",
        )
    return answer

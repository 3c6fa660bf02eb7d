"""Who is calling: the `sub` of a verified HS256 bearer token, and nothing else."""

import time
from functools import lru_cache
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from app.config import Settings
from app.domain.errors import Unauthorized

ALGORITHM = "HS256"
MAX_SUBJECT_LENGTH = 256
# Verified tokens remembered (whole token, signature included, as the key): a client sends
# the same token with every request, and verifying it again measured as a quarter of a
# warm request's own cost. Expiry is checked again on every use.
VERIFIED_TOKENS = 4096


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        if self.mode == "apigateway":
            return  # API Gateway verified the token; see subject_from_authorizer
        if settings.jwt_secret is None:
            # Fail closed: an API that started without a secret would accept nothing
            # today and, after a careless default, everything tomorrow.
            raise RuntimeError("IMAGES_JWT_SECRET must be set (make run sets a dev secret)")
        self._secret = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._max_lifetime = settings.jwt_max_lifetime_seconds
        # Configured means required: a token without the claim is refused, not excused.
        self._required = ["exp", "sub"]
        self._required += ["iss"] if self._issuer else []
        self._required += ["aud"] if self._audience else []
        self._required += ["iat"] if self._max_lifetime else []
        # Only successes are remembered: lru_cache does not keep what raised.
        self._verified = lru_cache(maxsize=VERIFIED_TOKENS)(self._verify)

    def subject(self, token: str) -> str:
        subject, expires = self._verified(token)
        if expires <= time.time():
            raise Unauthorized("Invalid or expired token")
        return subject

    def _verify(self, token: str) -> tuple[str, float]:
        """The token's subject and expiry, or Unauthorized."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                # A fixed list: the token's own `alg` header never chooses, so `none`
                # and RS/HS confusion are refused.
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": self._required, "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid or expired token") from exc
        if self._max_lifetime and claims["exp"] - claims["iat"] > self._max_lifetime:
            # A token minted to last for years is a leaked password waiting to happen.
            raise Unauthorized("Token lifetime exceeds the allowed maximum")
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
            raise Unauthorized("Invalid or expired token")
        return subject, float(claims["exp"])


def subject_from_authorizer(event: object) -> str:
    """The `sub` claim API Gateway's authorizer verified and put in the Lambda event:
    HTTP API at requestContext.authorizer.jwt.claims, REST API (Cognito) at
    requestContext.authorizer.claims. Only the event counts: it is written by API
    Gateway, while any header could have been written by the client."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    authorizer = (context or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or authorizer.get("claims") or {}
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise Unauthorized("No verified identity in the request")
    return subject


def issue_token(settings: Settings, subject: str, ttl_seconds: int) -> str:
    """A token this service accepts; for `python -m app token` and tests."""
    if settings.jwt_secret is None:
        raise RuntimeError("IMAGES_JWT_SECRET is not set")
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


class _BearerUser(HTTPBearer):
    """The caller's user id, as one dependency that OpenAPI documents as the bearer
    scheme: the credentials as a dependency of their own measured 15 us a request.
    async: a `def` dependency would cost a threadpool hop per request; this never
    blocks."""

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        verifier: TokenVerifier = request.app.state.verifier
        if verifier.mode == "apigateway":
            return subject_from_authorizer(request.scope.get("aws.event"))
        credentials = await super().__call__(request)
        if credentials is None:
            raise Unauthorized("Missing bearer token")
        return verifier.subject(credentials.credentials)


current_user = _BearerUser(
    scheme_name="HTTPBearer", auto_error=False, description="HS256 JWT; the owner is its `sub`"
)


UserId = Annotated[str, Depends(current_user)]

"""Bearer API keys → roles; the ``pii`` scope decides whether personal data is shown; each
authenticated request counts against its key's rate limit (:mod:`api.http.rate_limit`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from api.http import deps
from api.http.rate_limit import KeyRateLimiter, RateLimited
from domain.personal import masked
from infra.api_keys import ApiKey, Role
from projections.profile_fold import PERSONAL


class AuthFailed(Exception):
    """401 (no or bad credentials) or 403 (valid key, wrong role)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


_LOOKED_UP = "clientele_api_key"  # request.state: the key (or AuthFailed) of this request


def _authenticate(request: Request, authorization: str | None) -> ApiKey:
    key = _key(request, authorization)
    if getattr(request.state, "counted", None) != key.key_id:  # not yet, by :func:`counts`
        limiter: KeyRateLimiter = request.app.state.rate_limiter
        limiter.admit(key.key_id)
    return key


def _key(request: Request, authorization: str | None) -> ApiKey:
    """The live key of ``authorization``, not yet counted against its rate limit; looked up
    once per request: the hot path's check and the route's share its key or its failure."""
    known: ApiKey | AuthFailed | None = getattr(request.state, _LOOKED_UP, None)
    if isinstance(known, AuthFailed):
        raise known
    if known is not None:
        return known
    try:
        key = _lookup(request, authorization)
    except AuthFailed as failure:
        setattr(request.state, _LOOKED_UP, failure)
        raise
    setattr(request.state, _LOOKED_UP, key)
    return key


def _lookup(request: Request, authorization: str | None) -> ApiKey:
    if authorization is None:
        raise AuthFailed(401, "unauthenticated", "send Authorization: Bearer <api key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailed(401, "unauthenticated", "Authorization must be 'Bearer <api key>'")
    key = deps.services(request).keys.authenticate(token.strip())
    if key is None:
        raise AuthFailed(401, "unauthenticated", "unknown or revoked API key")
    return key


def _grant(request: Request, key: ApiKey, roles: tuple[Role, ...]) -> None:
    """403 unless ``key`` has one of ``roles``; else who asks, and whether they see pii."""
    if not any(key.allows(role) for role in roles):
        named = " or ".join(role.value for role in roles)
        raise AuthFailed(403, "forbidden", f"this route needs the {named} role")
    request.state.actor = f"key:{key.name}"
    request.state.pii = key.pii or key.allows(Role.ADMIN)


def require(*roles: Role) -> Any:
    """A dependency admitting keys with one of ``roles`` (admin admits everything)."""

    async def check(  # no I/O but a stat of the key file: no thread hop
        request: Request,
        authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
    ) -> ApiKey:
        key = _authenticate(request, authorization)
        _grant(request, key, roles)
        return key

    return Depends(check)


def admitted(request: Request, *roles: Role) -> ApiKey | None:
    """What :func:`require` would admit, without raising and without counting the request
    against the key's rate limit (the caller :func:`counts` it before it reads): the key,
    with ``request.state`` set as :func:`require` sets it, or None where :func:`require`
    would refuse (it then does, on the full route)."""
    try:
        key = _key(request, request.headers.get("authorization"))
        _grant(request, key, roles)
    except AuthFailed:
        return None
    return key


def counts(request: Request, key: ApiKey) -> bool:
    """Count a request of ``key`` admitted by :func:`admitted` against its rate limit, before
    any read; False (not counted) when the key is over a limit (the full route then answers
    429). A counted request that goes on to the full route is not counted again there."""
    limiter: KeyRateLimiter = request.app.state.rate_limiter
    try:
        limiter.admit(key.key_id)
    except RateLimited:
        return False
    request.state.counted = key.key_id
    return True


def optional() -> Any:
    """A dependency for open routes that show more to a key: None without ``Authorization``,
    else the key (401 when it is bad: a caller who sends credentials learns they failed)."""

    async def check(  # no I/O but a stat of the key file: no thread hop
        request: Request,
        authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
    ) -> ApiKey | None:
        if authorization is None:
            return None
        key = _authenticate(request, authorization)
        request.state.actor = f"key:{key.name}"
        return key

    return Depends(check)


def mask(document: dict[str, Any]) -> dict[str, Any]:
    """A profile's personal fields masked as their shape says (text: a hint such as the first
    character; attribute values: ``***``) for keys without the pii scope."""
    return masked(PERSONAL, document)


def privacy(request: Request) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The identity for pii-scoped callers, :func:`mask` for the rest."""
    return (lambda d: d) if getattr(request.state, "pii", False) else mask

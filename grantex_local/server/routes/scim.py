"""SCIM 2.0 (SDK-SURFACE §6): ``/v1/scim/tokens`` (developer API key, the app's JSON errors)
and ``/scim/v2/*`` (SCIM tokens or the API key, SCIM errors and ``application/scim+json``).

Why the ``/scim/v2`` routes read the raw body and authenticate by hand instead of using a
pydantic body and :data:`~..auth.CallerDep`: both would fail in the app's ``{message, code}``
shape, and a provisioning client only understands the SCIM error shape (RFC 7644 §3.12).
Every ``/scim/v2`` answer, errors included, is built in :func:`_scim`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ... import errors, scim
from ...developers import developer_for_api_key, hash_secret
from ..auth import CallerDep, server_state
from ..errors import SafeJSONResponse, request_id_of
from ..middleware import RATE_KEY
from ..schemas import Body
from . import created, no_content, ok

log = logging.getLogger("grantex_local.server")

router = APIRouter(tags=["scim"])

SCIM_MEDIA = "application/scim+json"
_REALM = {"WWW-Authenticate": 'Bearer realm="grantex-local-scim"'}


class CreateScimToken(Body):
    """``label`` is checked by the library, so a missing one gets its message."""

    label: str | None = None


@router.post("/v1/scim/tokens", status_code=201, summary="Create a SCIM bearer token (shown only here)")
def create_token(body: CreateScimToken, caller: CallerDep) -> JSONResponse:
    return created(scim.create_token(caller.ledger(), caller.developer_id, body.label).to_dict())


@router.get("/v1/scim/tokens", summary="List SCIM tokens (never the tokens themselves)")
def list_tokens(caller: CallerDep) -> JSONResponse:
    return ok({"tokens": [t.to_dict() for t in scim.list_tokens(caller.ledger(), caller.developer_id)]})


@router.delete("/v1/scim/tokens/{token_id}", status_code=204, summary="Revoke a SCIM token")
def revoke_token(token_id: str, caller: CallerDep) -> Response:
    scim.revoke_token(caller.ledger(), caller.developer_id, token_id)
    return no_content()


# ── /scim/v2 ────────────────────────────────────────────────────────────────

def _respond(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return SafeJSONResponse(data, status_code=status, headers=headers, media_type=SCIM_MEDIA)


def _error(status: int, detail: str, scim_type: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return _respond(scim.error_body(status, detail, scim_type), status, headers)


async def raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


def _parse(raw: bytes) -> object:
    if not raw.strip():
        raise scim.ScimError(400, "the request body is empty: send a JSON object", "invalidSyntax")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise scim.ScimError(400, "the request body is not valid JSON", "invalidSyntax") from None


def _scim(request: Request, action: Callable[[Any, str, str], Response]) -> Response:
    """Authenticate (a SCIM token, else a developer API key: the SDK sends the key), then run
    ``action(ledger, developer_id, base_url)``; every failure in the SCIM error shape."""
    state = server_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return _error(401, "missing bearer token: send 'Authorization: Bearer <SCIM token>'",
                      None, _REALM)
    try:
        ledger = state.ledgers.get()
        developer_id = scim.developer_for_token(ledger, secret)
        if developer_id is None:
            try:
                developer_id = developer_for_api_key(ledger, secret).id
            except errors.NotFound:
                return _error(401, "unknown or revoked SCIM token", None,
                              {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        decision = state.limiter.hit(hash_secret(secret))
        request.scope[RATE_KEY] = decision
        if not decision.allowed:
            wait = max(1, min(decision.reset, 60))
            return _error(429, f"rate limit reached; retry in {wait} s", None, {"Retry-After": str(wait)})
        return action(ledger, developer_id, state.issuer)
    except errors.GrantexLocalError as exc:
        failure = scim.as_scim_error(exc)
        if failure.status >= 500:
            log.error("request %s failed: %s: %s", request_id_of(request.scope), exc.code, exc.message)
        headers = {"Retry-After": "1"} if failure.status == 503 else None
        return _respond(failure.body(), failure.status, headers)


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise scim.ScimError(400, f"{name} must be an integer", "invalidValue") from None


@router.get("/scim/v2/ServiceProviderConfig", summary="What this SCIM server supports (public)")
def service_provider_config() -> Response:
    return _respond(scim.service_provider_config())


@router.get("/scim/v2/Users", summary="List users (startIndex, count 1-200, filter userName/externalId eq)")
def list_users(request: Request) -> Response:
    query = request.query_params

    def act(ledger: Any, developer_id: str, base: str) -> Response:
        users, total, start = scim.list_users(
            ledger, developer_id, start_index=_int(query.get("startIndex"), "startIndex", 1),
            count=_int(query.get("count"), "count", scim.DEFAULT_COUNT), filter=query.get("filter"))
        return _respond(scim.list_response(users, total, start, base))

    return _scim(request, act)


@router.post("/scim/v2/Users", status_code=201, summary="Provision a user")
def create_user(request: Request, raw: RawBody) -> Response:
    def act(ledger: Any, developer_id: str, base: str) -> Response:
        user = scim.create_user(ledger, developer_id, _parse(raw))
        body = user.to_dict(base)
        return _respond(body, 201, {"Location": body["meta"]["location"]})

    return _scim(request, act)


@router.get("/scim/v2/Users/{user_id}", summary="Get a user")
def get_user(user_id: str, request: Request) -> Response:
    return _scim(request, lambda ledger, dev, base: _respond(
        scim.get_user(ledger, dev, user_id).to_dict(base)))


@router.put("/scim/v2/Users/{user_id}", summary="Replace a user")
def replace_user(user_id: str, request: Request, raw: RawBody) -> Response:
    return _scim(request, lambda ledger, dev, base: _respond(
        scim.replace_user(ledger, dev, user_id, _parse(raw)).to_dict(base)))


@router.patch("/scim/v2/Users/{user_id}", summary="Patch a user (add/replace of active, userName, "
              "displayName, externalId)")
def patch_user(user_id: str, request: Request, raw: RawBody) -> Response:
    return _scim(request, lambda ledger, dev, base: _respond(
        scim.patch_user(ledger, dev, user_id, _parse(raw)).to_dict(base)))


@router.delete("/scim/v2/Users/{user_id}", status_code=204, summary="Deprovision a user")
def delete_user(user_id: str, request: Request) -> Response:
    def act(ledger: Any, developer_id: str, base: str) -> Response:
        scim.delete_user(ledger, developer_id, user_id)
        return Response(status_code=204)

    return _scim(request, act)


_KNOWN = ("/scim/v2/ServiceProviderConfig", "/scim/v2/Users")


@router.api_route("/scim/v2/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
def scim_fallback(rest: str, request: Request) -> Response:
    """Unknown SCIM endpoints (Groups, Schemas, ...) and wrong methods, in the SCIM shape too."""
    path = request.url.path.rstrip("/")
    if path in _KNOWN or path.startswith("/scim/v2/Users/"):
        return _error(405, f"method {request.method} is not allowed on {path}")
    return _error(404, f"no SCIM endpoint {path[:100]}: this server has /scim/v2/Users and "
                  "/scim/v2/ServiceProviderConfig", "noTarget")
